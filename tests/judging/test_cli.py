"""The judging commands, as a user runs them: `judge RUN`, `judges`, `check`; and a SIGKILL."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import evalharness.cli
from evalharness.errors import UserError
from evalharness.judging.cli import register
from evalharness.judging.config import default_judges_root
from evalharness.schema import Judgment
from evalharness.store import JUDGMENTS, JsonlLog
from tests.fakes.openai_server import Call, FakeOpenAIServer, Reply, answers_in
from tests.judging.conftest import SECRET, MakeRun, binary

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def app() -> typer.Typer:
    local = typer.Typer(pretty_exceptions_enable=False, add_completion=False)
    register(local)
    return local


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("COLUMNS", "200")
    return SECRET


def _games(n: int) -> dict[str, dict[str, str]]:
    return {"lora": {f"p{i}": f"lora answer {i} q=2" for i in range(n)},
            "baseline": {f"p{i}": f"base answer {i} q=1" for i in range(n)}}


def test_judge_command_prints_games_invalid_tokens_cost_and_run_dir(
        app: typer.Typer, key: str, server: FakeOpenAIServer, make_run: MakeRun) -> None:
    def garbage_on_p0(call: Call) -> Reply:
        a, b = answers_in(call)
        return Reply("no idea") if "answer 0 " in a + b else binary(call)

    server.responder = garbage_on_p0
    run = make_run(_games(3))
    args = ["judge", str(run.path), "--judge", "pairwise-binary", "--judge-url",
            server.base_url, "--judge-model", "fake-judge", "--runs-root", str(run.path.parent)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "judgments: 6 needed, 0 already in the run, 0 reused from other runs, 6 computed" in out
    assert "games judged: 6 (2 invalid" in out and "never as ties" in out
    assert f"judge calls now: {server.n_calls}" in out and "$0.00" in out
    assert str(run.path) in out
    row = next(line for line in out.splitlines() if line.lstrip("│┃ ").startswith("lora"))
    assert row.replace("│", " ").split() == ["lora", "baseline", "4", "0", "0", "2"]

    calls = server.n_calls
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and server.n_calls == calls
    assert "6 already in the run" in again.output
    manifest = json.loads((run.path / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["command"] == "generate"


def test_judge_command_bad_input_is_a_user_error_naming_the_fix(
        app: typer.Typer, key: str, server: FakeOpenAIServer, make_run: MakeRun,
        monkeypatch: pytest.MonkeyPatch) -> None:
    run = make_run(_games(1), baseline=None)
    base = ["judge", str(run.path), "--judge-url", server.base_url]

    def error_of(*extra: str) -> str:
        result = CliRunner().invoke(app, [*base, *extra])
        assert isinstance(result.exception, UserError), result.output
        return str(result.exception)

    assert "no baseline recorded" in error_of() and "--baseline" in error_of()
    assert "unknown judge 'nope'" in error_of("--baseline", "baseline", "--judge", "nope")
    assert "no answers in this run for ghost" in error_of("--baseline", "baseline",
                                                          "--candidate", "ghost")
    monkeypatch.delenv("OPENAI_API_KEY")
    assert "OPENAI_API_KEY" in error_of("--baseline", "baseline")
    source = json.loads((run.path / "manifest.json").read_text())["prompts"]["source"]
    Path(source).write_text('{"id": "p0", "prompt": "A different question?"}\n')
    assert "changed since" in error_of("--baseline", "baseline")
    assert server.n_calls == 0


def test_judges_lists_the_shipped_judges_and_check_validates_everything(
        app: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    listed = CliRunner().invoke(app, ["judges"])
    assert listed.exit_code == 0
    for name in ("pairwise-binary", "pairwise-5level", "pairwise-logprob", "reference"):
        assert name in listed.output
    assert "A>>B / A>B / A=B / B>A / B>>A" in listed.output

    checked = CliRunner().invoke(app, ["check"])
    assert checked.exit_code == 0, checked.output
    assert "ok   judge pairwise-5level" in checked.output and "league-50.jsonl" in checked.output

    judges = tmp_path / "judges"
    shutil.copytree(default_judges_root(), judges)
    (judges / "pairwise-binary" / "user.txt").write_text("{question} {answer_a}\n")
    bad_prompts = tmp_path / "bad.jsonl"
    bad_prompts.write_text('{"id": "a"}\n')
    broken = CliRunner().invoke(app, ["check", str(bad_prompts), "--judges-dir", str(judges)])
    assert isinstance(broken.exception, UserError)
    message = str(broken.exception)
    assert "2 invalid input(s)" in message
    assert "never show {answer_b}" in message and "bad.jsonl:1" in message


def _wired() -> bool:
    return "judge" in [c.name for c in evalharness.cli.app.registered_commands]


@pytest.mark.skipif(not _wired(), reason="evalharness.cli does not register the judging "
                    "commands yet")
def test_evalharness_judge_runs_as_a_program(key: str, server: FakeOpenAIServer,
                                             make_run: MakeRun, tmp_path: Path) -> None:
    run = make_run(_games(2))
    done = subprocess.run(
        [sys.executable, "-m", "evalharness.cli", "judge", str(run.path), "--judge-url",
         server.base_url, "--judge-model", "fake-judge"],
        cwd=tmp_path, env={**os.environ}, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "games judged: 4 (0 invalid" in done.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "evalharness.cli", "judge", str(run.path), "--judge", "nope"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert missing.returncode == 2 and "unknown judge 'nope'" in missing.stderr
    assert "Traceback" not in missing.stderr


_CHILD = ("import typer; from evalharness.judging.cli import register; "
          "app = typer.Typer(add_completion=False); register(app); app(prog_name='evalharness')")


def test_a_judging_process_killed_mid_run_resumes_to_exactly_one_record_per_order(
        key: str, server: FakeOpenAIServer, make_run: MakeRun, tmp_path: Path) -> None:
    n_prompts, concurrency = 40, 4
    server.latency = 0.03
    run = make_run(_games(n_prompts))
    command = [sys.executable, "-c", _CHILD, "judge", str(run.path), "--judge-url",
               server.base_url, "--judge-model", "fake-judge", "--concurrency",
               str(concurrency), "--runs-root", str(run.path.parent)]
    log = run.path / JUDGMENTS
    child = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if log.exists() and log.read_bytes().count(b"\n") >= 20:
            break
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    written = log.read_bytes().count(b"\n")
    assert 20 <= written < 2 * n_prompts  # killed mid-run, not after it

    resumed = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=60,
                             check=False)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{written} already in the run" in resumed.stdout
    records = JsonlLog(log, Judgment).read()
    games = Counter((r.prompt_id, r.first, r.second) for r in records)
    assert len(games) == 2 * n_prompts and set(games.values()) == {1}
    # Only the calls in flight at the kill were made twice.
    assert 2 * n_prompts <= server.n_calls <= 2 * n_prompts + concurrency
