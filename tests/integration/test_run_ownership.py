"""One writer per run directory, one command and one set of inputs per run directory, and no
refused command ever changes a run's files (checked by hashing every file before and after).

Models are the kit's adapters served by the scripted ``fake`` backend (no model is loaded),
so every command runs in seconds; judges are the offline reference judge or an LLM judge
behind the loopback OpenAI server.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.openai_server import Call, FakeOpenAIServer, Reply
from tests.helpers import judge_folder, write_jsonl

KEY_ENV = "EVALHARNESS_OWNERSHIP_KEY"
FAST = ("--backend", "fake", "--no-verify", "--max-new-tokens", "8")


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _manifest(run: Path) -> dict[str, object]:
    loaded: dict[str, object] = json.loads((run / "manifest.json").read_text())
    return loaded


def _run_dir(output: str) -> Path:
    flat = output.replace("\n", " ")
    return Path(flat[flat.index("run directory: ") + len("run directory: "):].split()[0])


def _prompts(folder: Path, n: int = 4) -> Path:
    return write_jsonl(folder / "questions.jsonl", [
        {"id": f"q{i}", "prompt": f"Question {i}?", "reference": f"answer {i}"}
        for i in range(n)])


@pytest.fixture
def judge_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAIServer]:
    monkeypatch.setenv(KEY_ENV, "sk-ownership-test")
    with FakeOpenAIServer(lambda call: Reply("Reason.\n[[A]]")) as server:
        yield server


@pytest.fixture
def llm_judge(tmp_path: Path) -> Path:
    """pairwise-binary, its key read from a test variable."""
    return judge_folder(tmp_path / "judges" / "own-binary", KEY_ENV)


def _program(*args: object) -> list[str]:
    return [sys.executable, "-m", "evalharness", *(str(a) for a in args)]


def _env() -> dict[str, str]:
    return {**os.environ, "COLUMNS": "200", "HF_HUB_OFFLINE": "1"}


def test_a_second_writer_exits_2_naming_the_first_and_the_judge_is_called_once_per_game(  # type: ignore[no-untyped-def]
        kit, tmp_path: Path, judge_server: FakeOpenAIServer, llm_judge: Path) -> None:
    n_prompts = 6
    gate = threading.Event()  # the first process's judge calls wait until the second is done

    def held(call: Call) -> Reply:
        gate.wait(90)
        return Reply("Reason.\n[[A]]")

    judge_server.responder = held
    command = _program("compare", kit.adapter("qv-r8"), "--prompts", _prompts(tmp_path, n_prompts),
                       *FAST, "--judge", llm_judge, "--judge-url", judge_server.base_url,
                       "--judge-model", "fake-judge", "--judge-concurrency", "1",
                       "--run-dir", tmp_path / "run")
    first = subprocess.Popen(command, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while judge_server.n_calls == 0 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert judge_server.n_calls >= 1, "the first process never reached its judge"

    second = subprocess.run(command, cwd=tmp_path, env=_env(), capture_output=True, text=True,
                            timeout=60, check=False)
    gate.set()
    assert second.returncode == 2, second.stderr
    message = " ".join(second.stderr.split())
    assert f"pid {first.pid}" in message and "compare" in message and "qv-r8" in message
    assert "Fix:" in message and "Traceback" not in second.stderr

    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert judge_server.n_calls == 2 * n_prompts  # every game once: nothing judged twice
    manifest = _manifest(tmp_path / "run")
    assert manifest["status"] == "complete"
    assert [i["command"] for i in manifest["invocations"]] == ["compare"]  # type: ignore[index]
    assert (tmp_path / "run" / ".lock").read_text() == ""  # released: names no process


def test_a_lock_left_by_a_killed_run_is_taken_over(  # type: ignore[no-untyped-def]
        kit, tmp_path: Path, judge_server: FakeOpenAIServer, llm_judge: Path) -> None:
    judge_server.latency = 0.3
    command = _program("compare", kit.adapter("qv-r8"), "--prompts", _prompts(tmp_path), *FAST,
                       "--judge", llm_judge, "--judge-url", judge_server.base_url,
                       "--judge-model", "fake-judge", "--judge-concurrency", "1",
                       "--run-dir", tmp_path / "run")
    killed = subprocess.Popen(command, cwd=tmp_path, env=_env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while judge_server.n_calls < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=10)
    assert f'"pid": {killed.pid}' in (tmp_path / "run" / ".lock").read_text()

    rerun = subprocess.run(command, cwd=tmp_path, env=_env(), capture_output=True, text=True,
                           timeout=120, check=False)
    assert rerun.returncode == 0, rerun.stderr
    assert _manifest(tmp_path / "run")["status"] == "complete"
    assert judge_server.n_calls <= 2 * 4 + 1  # only the call in flight at the kill repeated
    assert (tmp_path / "run" / ".lock").read_text() == ""


def test_a_run_directory_belongs_to_one_command_and_one_set_of_inputs(  # type: ignore[no-untyped-def]
        cli, kit, tmp_path: Path, judge_server: FakeOpenAIServer, llm_judge: Path) -> None:
    prompts = _prompts(tmp_path)
    made = cli("compare", kit.adapter("qv-r8"), "--prompts", prompts, *FAST)
    assert made.code == 0, made.text
    run = _run_dir(made.out)
    first_argv = _manifest(run)["argv"]
    ppl = cli("ppl", "baseline", "--base", kit.base, "--data", kit.eval_data, "--backend",
              "fake")
    assert ppl.code == 0, ppl.text
    ppl_run = _run_dir(ppl.out)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    (tmp_path / "a-file").write_text("not a folder")
    before = {folder: _hashes(folder) for folder in (run, ppl_run, tmp_path / "notes")}

    refused = {
        "another adapter": (("compare", kit.adapter("all-r16"), "--prompts", prompts, *FAST,
                             "--run-dir", run), "models: baseline, qv-r8 vs baseline, all-r16"),
        "other settings": (("compare", kit.adapter("qv-r8"), "--prompts", prompts,
                            "--backend", "fake", "--no-verify", "--max-new-tokens", "9",
                            "--run-dir", run), "max_new_tokens=8 vs max_new_tokens=9"),
        "another judge": (("compare", kit.adapter("qv-r8"), "--prompts", prompts, *FAST,
                           "--judge", llm_judge, "--judge-url", judge_server.base_url,
                           "--run-dir", run), "judge: reference"),
        "another command": (("league", kit.adapter("qv-r8"), "--prompts", prompts, *FAST,
                             "--run-dir", run), "holds a `compare` run"),
        "compare into a ppl run": (("compare", kit.adapter("qv-r8"), "--prompts", prompts,
                                    *FAST, "--run-dir", ppl_run), "holds a `ppl` run"),
        "a folder of other files": (("compare", kit.adapter("qv-r8"), "--prompts", prompts,
                                     *FAST, "--run-dir", tmp_path / "notes"),
                                    "not a run directory"),
        "a file as --run-dir": (("compare", kit.adapter("qv-r8"), "--prompts", prompts, *FAST,
                                 "--run-dir", tmp_path / "a-file"), "is a file, not a folder"),
        "a file as --runs-root": (("generate", kit.adapter("qv-r8"), "--prompts", prompts,
                                   "--backend", "fake", "--runs-root", tmp_path / "a-file"),
                                  "is a file, not a folder"),
        "judge with another judge": (("judge", run, "--judge", llm_judge, "--judge-url",
                                      judge_server.base_url), "mix two judges' verdicts"),
        "judge an unknown candidate": (("judge", run, "--judge", "reference", "--candidate",
                                        "ghost"), "no answers in this run for ghost"),
        "judge a ppl run": (("judge", ppl_run, "--judge", "reference"), "no answers to judge"),
    }
    for case, (args, expected) in refused.items():
        result = cli(*args)
        assert result.code == 2, (case, result.text)
        flat = " ".join(result.err.split())
        assert expected in flat and "Fix:" in flat, (case, flat)
        assert "Traceback" not in result.text, case
        for folder, hashes in before.items():
            assert _hashes(folder) == hashes, (case, folder)
    assert judge_server.n_calls == 0
    assert not (tmp_path / "a-file" / "run").exists()
    assert (tmp_path / "a-file").read_text() == "not a folder"

    again = cli("compare", kit.adapter("qv-r8"), "--prompts", prompts, *FAST)  # resumes
    assert again.code == 0, again.text
    judged = cli("judge", run, "--judge", "reference")  # the run's own judge: allowed
    assert judged.code == 0, judged.text
    manifest = _manifest(run)
    assert manifest["command"] == "compare" and manifest["status"] == "complete"
    assert manifest["argv"] == first_argv  # the run's own command line, not judge's
    assert [i["command"] for i in manifest["invocations"]] == [  # type: ignore[index]
        "compare", "compare", "judge"]


def test_judge_run_works_from_another_directory_with_a_relative_prompt_path(  # type: ignore[no-untyped-def]
        cli, kit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _prompts(tmp_path)  # cli runs in tmp_path: "questions.jsonl" is a relative path here
    made = cli("generate", "baseline", kit.adapter("qv-r8"), "--prompts", "questions.jsonl",
               "--backend", "fake", "--max-new-tokens", "8")
    assert made.code == 0, made.text
    run = _run_dir(made.out).resolve()
    source = _manifest(run)["prompts"]["source"]  # type: ignore[index]
    assert source == str(tmp_path / "questions.jsonl")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    judged = cli("judge", run, "--judge", "reference")
    assert judged.code == 0, judged.text
    assert "games judged: 8 (0 invalid" in " ".join(judged.out.split())
    manifest = _manifest(run)
    assert manifest["command"] == "generate" and manifest["judge"] == "reference"


def _read_only(folder: Path) -> list[str]:
    """A command prefix that runs its command with ``folder`` read-only.

    Root writes through file modes, so as root the folder is bind-mounted read-only onto
    itself in a private mount namespace; as anyone else, its modes are cleared.
    """
    if os.geteuid() != 0:
        for path in (folder, *folder.rglob("*")):
            path.chmod(path.stat().st_mode & ~0o222)
        return []
    if shutil.which("unshare") is None:
        pytest.skip("running as root without unshare: cannot make a folder read-only")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip("running as root without mount namespaces: cannot make a folder read-only")
    quoted = str(folder).replace("'", "'\\''")
    return ["unshare", "-m", "sh", "-c",
            f"mount --bind '{quoted}' '{quoted}' && mount -o remount,bind,ro '{quoted}' "
            '&& exec "$@"', "read-only"]


def test_a_read_only_run_is_refused_with_its_path_and_fix_and_left_unchanged(  # type: ignore[no-untyped-def]
        cli, kit, tmp_path: Path) -> None:
    prompts = _prompts(tmp_path)
    compare = ("compare", kit.adapter("qv-r8"), "--prompts", prompts, *FAST)
    made = cli(*compare)
    assert made.code == 0, made.text
    run = _run_dir(made.out).resolve()
    before = _hashes(run)
    prefix = _read_only(run)
    try:
        for args, expected in (
                ((*compare, "--run-dir", run), "cannot write the run directory"),
                (("report", run, "--format", "html"), "cannot write the report"),
                (("judge", run, "--judge", "reference"), "cannot write the run directory")):
            done = subprocess.run([*prefix, *_program(*args)], cwd=tmp_path, env=_env(),
                                  capture_output=True, text=True, timeout=120, check=False)
            flat = " ".join(done.stderr.split())
            assert done.returncode == 2, (args[0], done.stderr)
            assert expected in flat and str(run) in flat and "Fix:" in flat, (args[0], flat)
            assert "Traceback" not in done.stderr
            assert _hashes(run) == before, args[0]
    finally:
        for path in (run, *run.rglob("*")):
            path.chmod(path.stat().st_mode | 0o200)
