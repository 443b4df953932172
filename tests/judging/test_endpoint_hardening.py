"""The judge endpoint as a new user meets it: capped Retry-After waits, a probe before any
work, refused requests never stored as finished, and credentials in the URL never sent or
written. Everything runs against the real fake server on 127.0.0.1 with the real client."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from evalharness.errors import JudgeError, UserError
from evalharness.evaluate import judge_existing_run
from evalharness.judging.llm import probe_judge
from evalharness.judging.stage import judge_run
from evalharness.progress import RichProgress
from evalharness.schema import Judgment
from evalharness.store import JUDGMENTS, JsonlLog, RunDir
from tests.fakes.openai_server import Call, FakeOpenAIServer, Fault, Reply, answers_in
from tests.judging.conftest import KEY_ENV, SECRET, JudgeFactory, MakeRun, binary


def _games(prompts: int) -> dict[str, dict[str, str]]:
    return {"lora": {f"p{i}": f"candidate answer {i} q=2" for i in range(prompts)},
            "baseline": {f"p{i}": f"baseline answer {i} q=1" for i in range(prompts)}}


def _records(run: RunDir) -> list[Judgment]:
    return JsonlLog(run.path / JUDGMENTS, Judgment).read()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- Retry-After ----------------------------------------------------------------------------


def test_retry_after_an_hour_waits_only_backoff_max_s_and_the_bar_says_why(
        server: FakeOpenAIServer, judge_for: JudgeFactory, make_run: MakeRun) -> None:
    server.inject({0: Fault.rate_limited(retry_after=3600)})
    run = make_run(_games(1))
    screen = io.StringIO()
    started = time.monotonic()
    with RichProgress(Console(file=screen, width=200)) as progress:
        counts = judge_run(run, judge_for(backoff_max_s=5.5, concurrency=1), "baseline",
                           progress=progress)
    elapsed = time.monotonic() - started

    assert 5.5 <= elapsed < 15, elapsed  # the cap, not an hour
    assert counts.computed == 2 and len(_records(run)) == 2
    assert all(r.winner is not None for r in _records(run))
    shown = " ".join(screen.getvalue().split())
    assert ("judge 'pairwise-binary': waiting 6 s: the endpoint asked to retry after 3600 s "
            "(HTTP 429), capped at backoff.max_s = 5.5 s") in shown


def test_short_waits_are_not_shown(server: FakeOpenAIServer, judge_for: JudgeFactory,
                                   make_run: MakeRun) -> None:
    server.inject({0: Fault.rate_limited(retry_after=0.2)})
    screen = io.StringIO()
    with RichProgress(Console(file=screen, width=200)) as progress:
        judge_run(make_run(_games(1)), judge_for(backoff_max_s=1.0), "baseline",
                  progress=progress)
    assert "waiting" not in screen.getvalue()


# -- the probe ------------------------------------------------------------------------------


def _probe_error(config: object) -> tuple[str, float]:
    started = time.monotonic()
    with pytest.raises(UserError) as info:
        probe_judge(config)  # type: ignore[arg-type]
    return str(info.value), time.monotonic() - started


def test_probe_nothing_listening_fails_fast_naming_the_endpoint_and_fix(
        judge_for: JudgeFactory) -> None:
    url = f"http://127.0.0.1:{_free_port()}/v1"
    message, seconds = _probe_error(judge_for(base_url=url))
    assert seconds < 3
    assert f"cannot reach the judge endpoint {url}" in message
    assert "Fix: check --judge-url" in message


def test_probe_wrong_model_lists_what_the_endpoint_serves(judge_for: JudgeFactory,
                                                          api_key: str) -> None:
    with FakeOpenAIServer(binary, models=["judge-7b", "judge-70b"]) as strict:
        message, seconds = _probe_error(judge_for(base_url=strict.base_url, model="judeg-7b"))
        assert seconds < 3
        assert ("does not serve model 'judeg-7b' (it serves: judge-7b, judge-70b). Fix: pass "
                "--judge-model") in message
        # The listing, then one 1-token completion to be sure (an alias may be unlisted).
        assert [r.method for r in strict.requests] == ["GET", "POST"]
        probe_judge(judge_for(base_url=strict.base_url, model="judge-70b"))
        assert [r.method for r in strict.requests] == ["GET", "POST", "GET"]


def test_probe_rejected_key_names_the_variable_never_the_key(judge_for: JudgeFactory,
                                                             api_key: str) -> None:
    with FakeOpenAIServer(binary, api_key="the-right-key") as guarded:
        url = guarded.base_url
        message, seconds = _probe_error(judge_for(base_url=url))
    assert seconds < 3
    assert f"the judge endpoint {url} refused the API key (HTTP 401" in message
    assert f"Fix: check the key in ${KEY_ENV}" in message
    assert SECRET not in message


def test_probe_accepts_a_model_the_list_does_not_show(server: FakeOpenAIServer,
                                                      judge_for: JudgeFactory) -> None:
    # Hosted APIs answer aliases they do not list; the completion settles it.
    probe_judge(judge_for(model="an-alias"))
    assert server.n_calls == 1 and server.calls[0].body["max_tokens"] == 1


def test_judge_command_probes_before_touching_the_run(judge_for: JudgeFactory,
                                                      make_run: MakeRun) -> None:
    run = make_run(_games(2))
    manifest = (run.path / "manifest.json").read_bytes()
    url = f"http://127.0.0.1:{_free_port()}/v1"
    with pytest.raises(UserError, match="cannot reach the judge endpoint"):
        judge_existing_run(run, judge_for(base_url=url, retries=6, backoff_max_s=60.0))
    assert (run.path / "manifest.json").read_bytes() == manifest
    assert not (run.path / JUDGMENTS).exists()


# -- refused requests ---------------------------------------------------------------------


def test_refused_requests_are_not_stored_and_a_rerun_judges_them(
        server: FakeOpenAIServer, judge_for: JudgeFactory, make_run: MakeRun) -> None:
    def too_long_on_p0(call: Call) -> Reply | Fault:
        a, b = answers_in(call)
        if "answer 0 " in a + b:
            return Fault.server_error(413, "prompt is too long for this model")
        return binary(call)

    server.responder = too_long_on_p0
    run = make_run(_games(3))
    judge = judge_for()
    with pytest.raises(JudgeError) as info:
        judge_run(run, judge, "baseline")
    message = str(info.value)
    assert f"at {server.base_url} rejected 2 request(s)" in message
    assert "HTTP 413: prompt is too long for this model" in message
    assert "not saved" in message and "rerun" in message
    records = _records(run)
    assert len(records) == 4 and {r.prompt_id for r in records} == {"p1", "p2"}
    assert all(r.winner is not None for r in records)

    server.responder = binary  # the endpoint is fixed
    calls = server.n_calls
    counts = judge_run(run, judge, "baseline")
    assert server.n_calls - calls == 2 and counts.computed == 2 and counts.on_disk == 4
    assert len(_records(run)) == 6 and counts.invalid == 0


def test_a_game_timing_out_past_its_retries_is_not_stored(
        server: FakeOpenAIServer, judge_for: JudgeFactory, make_run: MakeRun) -> None:
    server.responder = lambda call: Fault.hang(2.0)
    run = make_run(_games(1))
    with pytest.raises(JudgeError, match=r"failed 2 times.*APITimeoutError"):
        judge_run(run, judge_for(timeout_s=0.3, retries=1, concurrency=1), "baseline")
    assert _records(run) == []


# -- credentials in the URL ---------------------------------------------------------------

PASSWORD = "pw-PLANTED-7c1e9"


def _judge_cli(run: RunDir, url: str, env: dict[str, str], cwd: Path
               ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "evalharness", "judge", str(run.path), "--judge-url", url,
         "--judge-model", "fake-judge", "--runs-root", str(run.path.parent)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_credentials_in_the_judge_url_are_never_sent_written_or_printed(
        server: FakeOpenAIServer, make_run: MakeRun, tmp_path: Path) -> None:
    run = make_run(_games(2))
    url = server.base_url.replace("http://", f"http://alice:{PASSWORD}@")
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    env["COLUMNS"] = "200"

    # No key variable: refused before any request, naming the variable to use instead.
    refused = _judge_cli(run, url, env, tmp_path)
    assert refused.returncode == 2, refused.stderr
    assert "OPENAI_API_KEY" in refused.stderr and "user:password@" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert server.requests == []

    # With the key: judged, with the key as the Bearer header and nothing from the URL.
    done = _judge_cli(run, url, {**env, "OPENAI_API_KEY": SECRET}, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "games judged: 4" in done.stdout
    auth = [r.headers.get("authorization", "") for r in server.requests]
    assert auth and all(value == f"Bearer {SECRET}" for value in auth)

    for output in (refused.stdout, refused.stderr, done.stdout, done.stderr):
        assert PASSWORD not in output
    for path in run.path.rglob("*"):
        if path.is_file():
            assert PASSWORD not in path.read_text(errors="replace"), path
    recorded = json.dumps(json.loads((run.path / "manifest.json").read_text()))
    assert "alice" not in recorded and "http://***@127.0.0.1" in recorded  # the command line


def test_credentials_in_the_url_with_no_key_variable_at_all(
        judge_for: JudgeFactory, server: FakeOpenAIServer) -> None:
    url = server.base_url.replace("http://", f"http://alice:{PASSWORD}@")
    message, _ = _probe_error(judge_for(base_url=url, api_key_env=None))
    assert "holds credentials" in message and "api_key_env" in message
    assert PASSWORD not in message and "http://***@127.0.0.1" in message
    assert server.requests == []
