"""Batch judging against the loopback fake of the Files and Batches endpoints.

What is checked: a batch gives the judgments the online judge gives (verdicts, winners,
weights, raw text, tokens) at the batch price; a run killed while polling, rerun, submits
nothing again (request counts by route); failed, expired and refused items are judged
online; batch mode where no Batch API exists is refused before any request.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evalharness.errors import UserError
from evalharness.judging.batch import BATCHES, BatchRecord, BatchRunner
from evalharness.judging.config import JudgeConfig
from evalharness.judging.llm import request_body
from evalharness.judging.stage import JudgeCounts, judge_run
from evalharness.schema import Judgment
from evalharness.store import JUDGMENTS, JsonlLog, RunDir
from tests.fakes.batch_api import ROUTES, FakeBatchServer
from tests.fakes.openai_server import Call, Fault, Reply, answers_in
from tests.judging.conftest import (
    KEY_ENV,
    JudgeFactory,
    MakeRun,
    binary,
    quality,
)

REPO = Path(__file__).resolve().parents[2]
PRICED = {"price_input_per_1k": 0.01, "price_output_per_1k": 0.03}


@pytest.fixture
def server() -> Iterator[FakeBatchServer]:
    """The fake with the batch routes, in place of the judging tests' chat-only fake."""
    with FakeBatchServer(binary, polls=2) as fake:
        yield fake


def _games(prompts: int) -> dict[str, dict[str, str]]:
    return {"lora": {f"p{i}": f"candidate answer {i} q={2 + i % 3}" for i in range(prompts)},
            "baseline": {f"p{i}": f"baseline answer {i} q=3" for i in range(prompts)}}


def _records(run: RunDir) -> list[Judgment]:
    return JsonlLog(run.path / JUDGMENTS, Judgment).read()


def _by_game(run: RunDir) -> dict[tuple[str, str, str], Judgment]:
    return {(r.key, r.first, r.second): r for r in _records(run)}


def _counts(server: FakeBatchServer) -> dict[str, int]:
    return {route: server.count(route) for route in (*ROUTES, "chat")}


def _batch(judge: JudgeConfig, **changes: Any) -> JudgeConfig:
    return dataclasses.replace(judge, mode="batch", batch_poll_s=0.01, **changes)


def _judge(run: RunDir, judge: JudgeConfig) -> JudgeCounts:
    return judge_run(run, judge, "baseline", runs_root=run.path.parent)


def _same_judgment(batch: Judgment, online: Judgment) -> None:
    fields = ("key", "prompt_id", "first", "second", "verdict", "winner", "weight_a", "raw",
              "usage", "error", "first_length", "second_length", "category")
    assert {f: getattr(batch, f) for f in fields} == {f: getattr(online, f) for f in fields}


def logprob_judge(call: Call) -> Reply:
    """A logprob judge: the better answer's letter, at probability .6 / .9."""
    a, b = answers_in(call)
    better, worse = ("A", "B") if quality(a) >= quality(b) else ("B", "A")
    return Reply(better, top_logprobs=[[(better, math.log(0.6)), (worse, math.log(0.3)),
                                        ("Both", math.log(0.1))]])


@pytest.mark.parametrize("name", ["pairwise-binary", "pairwise-logprob"])
def test_batch_judgments_equal_online_ones_at_the_batch_price(
        server: FakeBatchServer, judge_for: JudgeFactory, make_run: MakeRun, tmp_path: Path,
        name: str) -> None:
    server.responder = binary if name == "pairwise-binary" else logprob_judge
    online_run = make_run(_games(5), root=tmp_path / "online")
    batch_run = make_run(_games(5), root=tmp_path / "batch")
    online = judge_for(name, **PRICED)

    online_counts = _judge(online_run, online)
    online_bodies = [c.body for c in server.calls]
    assert server.n_calls == 10
    batched = _judge(batch_run, _batch(online))

    assert _counts(server) == {"files.create": 1, "batches.create": 1, "batches.retrieve": 2,
                               "batches.list": 0, "files.content": 1, "chat": 10}
    assert len(server.batch_calls) == 10
    # A batch line's body is exactly the online request for the same game.
    lines = server.input_lines(server.batch_ids[0])
    assert sorted(map(json.dumps, (ln["body"] for ln in lines))) == sorted(
        map(json.dumps, online_bodies))
    assert len({ln["custom_id"] for ln in lines}) == 10

    mine, theirs = _by_game(batch_run), _by_game(online_run)
    assert set(mine) == set(theirs) and len(mine) == 10
    for game, record in mine.items():
        _same_judgment(record, theirs[game])
        assert record.attempts == 1
        assert record.cost_usd == pytest.approx(theirs[game].cost_usd * 0.5)
        assert record.cost_usd > 0
    if name == "pairwise-logprob":
        assert all(r.weight_a is not None for r in mine.values())
    assert batched.tallies == online_counts.tallies
    assert (batched.computed, batched.batched, batched.calls) == (10, 10, 10)
    assert batched.usage == online_counts.usage
    assert batched.cost_usd == pytest.approx(online_counts.cost_usd * 0.5)
    assert "batch x0.5" in batched.price_source
    assert batched.batches == tuple(server.batch_ids)

    # The run records the batch, done; a rerun asks nothing of anyone.
    records = JsonlLog(batch_run.path / BATCHES, BatchRecord).read()
    assert records[-1].done and records[-1].status == "completed"
    assert records[-1].batch_id == server.batch_ids[0]
    before = _counts(server)
    again = _judge(batch_run, _batch(online))
    assert _counts(server) == before
    assert (again.on_disk, again.computed, again.calls) == (10, 0, 0)


_CHILD = """
import dataclasses, json, sys
from pathlib import Path
from evalharness.judging.config import load_judge, default_judges_root
from evalharness.judging.stage import judge_run
from evalharness.store import RunDir

url, run = sys.argv[1], Path(sys.argv[2])
judge = load_judge(default_judges_root() / "pairwise-binary").with_overrides(
    base_url=url, model="fake-judge")
judge = dataclasses.replace(judge, api_key_env=sys.argv[3], mode="batch", batch_poll_s=0.02)
judge_run(RunDir(run), judge, "baseline", runs_root=run.parent)
"""


def _wait_for(condition: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_a_run_killed_while_polling_resumes_the_same_batch_and_pays_once(
        server: FakeBatchServer, judge_for: JudgeFactory, make_run: MakeRun,
        tmp_path: Path) -> None:
    online_run = make_run(_games(4), root=tmp_path / "online")
    _judge(online_run, judge_for())
    online_calls = server.n_calls
    run = make_run(_games(4), root=tmp_path / "batch")

    server.hold = True  # the batch stays in progress until the child is dead
    child = subprocess.Popen(  # our interpreter, our script
        [sys.executable, "-c", _CHILD, server.base_url, str(run.path), KEY_ENV],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_for(lambda: server.count("batches.retrieve") >= 3 or child.poll() is not None,
                  "the child to poll its batch")
        assert child.poll() is None, child.communicate()[0].decode()
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()
    killed = _counts(server)
    assert (killed["files.create"], killed["batches.create"]) == (1, 1)
    assert not _records(run)  # nothing judged yet: the batch was still running
    recorded = JsonlLog(run.path / BATCHES, BatchRecord).read()
    assert recorded[-1].batch_id == server.batch_ids[0] and not recorded[-1].done

    server.hold = False
    counts = _judge(run, _batch(judge_for()))

    after = _counts(server)
    assert after["files.create"] == 1 and after["batches.create"] == 1  # zero resubmissions
    assert after["batches.retrieve"] > killed["batches.retrieve"]
    assert after["batches.list"] == 0 and after["chat"] == online_calls  # nothing online
    assert len(server.batch_calls) == 8  # every game asked once, in the one batch
    assert counts.batches == (server.batch_ids[0],) and counts.batched == 8
    mine, theirs = _by_game(run), _by_game(online_run)
    assert set(mine) == set(theirs)
    for game, record in mine.items():
        _same_judgment(record, theirs[game])


def test_a_run_interrupted_between_submitting_and_recording_finds_its_batch(
        server: FakeBatchServer, judge_for: JudgeFactory, make_run: MakeRun,
        monkeypatch: pytest.MonkeyPatch) -> None:
    run = make_run(_games(3))
    judge = _batch(judge_for())
    real_save = BatchRunner._save

    def killed_before_recording(self: BatchRunner, record: BatchRecord) -> BatchRecord:
        if record.batch_id is not None:
            raise KeyboardInterrupt  # the provider has the batch; the run does not know it
        return real_save(self, record)

    monkeypatch.setattr(BatchRunner, "_save", killed_before_recording)
    with pytest.raises(KeyboardInterrupt):
        _judge(run, judge)
    monkeypatch.setattr(BatchRunner, "_save", real_save)
    assert server.count("batches.create") == 1

    counts = _judge(run, judge)
    assert _counts(server)["batches.create"] == 1 and server.count("files.create") == 1
    assert server.count("batches.list") == 1 and server.n_calls == 0
    assert counts.batched == 6 and len(_records(run)) == 6


def test_interrupted_polling_then_rerun_polls_the_recorded_batch(
        server: FakeBatchServer, judge_for: JudgeFactory, make_run: MakeRun) -> None:
    run = make_run(_games(3))
    judge = _batch(judge_for())
    server.hold = True

    class StopWhilePolling:
        def start(self, description: str, total: int) -> None:
            pass

        def advance(self, amount: int = 1) -> None:
            pass

        def note(self, text: str) -> None:
            if "polling" in text and server.count("batches.retrieve") >= 2:
                raise KeyboardInterrupt  # Ctrl-C at the progress bar

    with pytest.raises(KeyboardInterrupt):
        judge_run(run, judge, "baseline", runs_root=run.path.parent,
                  progress=StopWhilePolling())
    server.hold = False
    _judge(run, judge)
    assert (server.count("files.create"), server.count("batches.create")) == (1, 1)
    assert len(_records(run)) == 6 and server.n_calls == 0


def test_failed_and_expired_items_fall_back_to_online_calls(
        server: FakeBatchServer, judge_for: JudgeFactory, make_run: MakeRun,
        tmp_path: Path) -> None:
    online_run = make_run(_games(6), root=tmp_path / "online")
    online = judge_for(**PRICED)
    _judge(online_run, online)
    online_calls = server.n_calls

    def expire(call: Call) -> bool:
        return "candidate answer 1 " in answers_in(call)[0]  # p1 with the candidate as A

    def refuse_in_batch(call: Call) -> Reply | Fault:
        a, _ = answers_in(call)
        if "candidate answer 2 " in a and not call.headers:  # batch lines carry no headers
            return Fault.server_error(500, "batch worker crashed")
        return binary(call)

    server.expire = expire
    server.responder = refuse_in_batch
    run = make_run(_games(6), root=tmp_path / "batch")
    counts = _judge(run, _batch(online))

    assert server.count("batches.create") == 1
    assert server.n_calls - online_calls == 2  # the expired game and the failed one
    assert len(server.batch_calls) == 11  # 12 games, one expired unrun
    assert (counts.batched, counts.computed, counts.calls) == (10, 12, 12)
    mine, theirs = _by_game(run), _by_game(online_run)
    assert set(mine) == set(theirs)
    for game, record in mine.items():
        _same_judgment(record, theirs[game])
    online_priced = [r for r in mine.values()
                     if r.prompt_id in ("p1", "p2") and r.first == "lora"]
    assert len(online_priced) == 2
    for record in online_priced:  # judged online: full price
        assert record.cost_usd == pytest.approx(theirs[record.key, record.first,
                                                       record.second].cost_usd)
    assert JsonlLog(run.path / BATCHES, BatchRecord).read()[-1].status == "expired"


def test_a_batch_failing_validation_is_judged_online(
        server: FakeBatchServer, judge_for: JudgeFactory, make_run: MakeRun) -> None:
    server.fail_with = "the provider did not like the file"
    run = make_run(_games(2))
    counts = _judge(run, _batch(judge_for()))
    assert server.count("batches.create") == 1 and server.n_calls == 4
    assert (counts.batched, counts.computed) == (0, 4) and len(_records(run)) == 4
    assert JsonlLog(run.path / BATCHES, BatchRecord).read()[-1].status == "failed"


def test_a_batch_reply_without_a_verdict_is_asked_online_with_the_judges_retries(
        server: FakeBatchServer, judge_for: JudgeFactory, make_run: MakeRun,
        tmp_path: Path) -> None:
    def garbage_first(call: Call) -> Reply:
        a, _ = answers_in(call)
        if "candidate answer 0 " in a and call.seen == 0:
            return Reply("Hmm.")  # the first time this exact request is seen
        return binary(call)

    server.responder = garbage_first
    run = make_run(_games(2))
    counts = _judge(run, _batch(judge_for(invalid_retries=2, **PRICED)))
    # Batch: 4 lines, one unreadable. Online: that game asked again (the same request,
    # now answered) - as the online judge would have asked it on its first retry.
    assert len(server.batch_calls) == 4 and server.n_calls == 1
    assert counts.calls == 5 and counts.batched == 3 and counts.invalid == 0
    redone = next(r for r in _records(run) if r.prompt_id == "p0" and r.first == "lora")
    assert redone.winner is not None and redone.attempts == 2
    # Without retries the unreadable batch reply is the judgment, stored invalid.
    server.responder = lambda call: Reply("Hmm.")
    other = make_run({"lora": {"p9": "x q=1"}, "baseline": {"p9": "y q=2"}},
                     root=tmp_path / "strict")
    strict = _judge(other, _batch(judge_for(invalid_retries=0)))
    assert strict.invalid == 2 and strict.batched == 2 and server.n_calls == 1
    assert all(r.error and "gave up after 1 replies" in r.error for r in _records(other))


@pytest.mark.parametrize("change", [{"kind": "reference"}, {"backend": "vllm"}])
def test_batch_mode_without_a_batch_api_is_refused_before_any_request(
        server: FakeBatchServer, judge_for: JudgeFactory, make_run: MakeRun,
        change: dict[str, str]) -> None:
    run = make_run(_games(2))
    with pytest.raises(UserError, match="Fix: drop --judge-mode batch"):
        _judge(run, _batch(judge_for(**change)))
    assert not server.requests and not _records(run)


def test_an_endpoint_without_a_batch_api_is_a_user_error(
        server: FakeBatchServer, judge_for: JudgeFactory, make_run: MakeRun) -> None:
    from tests.fakes.openai_server import FakeOpenAIServer

    run = make_run(_games(1))
    with FakeOpenAIServer(binary) as plain:  # chat completions only, like a vLLM server
        judge = _batch(judge_for(base_url=plain.base_url))
        with pytest.raises(UserError, match="--judge-mode online"):
            _judge(run, judge)
        assert plain.n_calls == 0
    assert not _records(run)


def test_request_body_is_what_the_online_judge_sends(
        server: FakeBatchServer, judge_for: JudgeFactory, make_run: MakeRun) -> None:
    run = make_run(_games(1))
    judge = judge_for("pairwise-logprob", seed=7)
    server.responder = logprob_judge
    _judge(run, judge)
    from evalharness.judging.stage import plan_run

    plan = plan_run(run, judge, "baseline")
    sent = sorted(json.dumps(c.body, sort_keys=True) for c in server.calls)
    assert sent == sorted(json.dumps(request_body(judge, g.text), sort_keys=True)
                          for g in plan.games)


def test_judge_mode_batch_from_the_command_line(server: FakeBatchServer, make_run: MakeRun,
                                                tmp_path: Path, api_key: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """`evalharness judge RUN --judge-mode batch --judge-price IN,OUT`: one upload, one
    batch, no online call but the endpoint check, and the batch price in the cost line and
    the manifest."""
    from evalharness.cli import main
    from tests.helpers import judge_folder

    server.responder = binary
    run = make_run(_games(3))
    folder = judge_folder(tmp_path / "judge", KEY_ENV)
    with (folder / "config.yaml").open("a") as config:
        config.write("batch:\n  poll_s: 0.05\n")  # poll fast (the default is 10 s)
    with pytest.raises(SystemExit) as done:
        main(["judge", str(run.path), "--judge", str(folder), "--judge-url", server.base_url,
              "--judge-mode", "batch", "--judge-price", "0.001,0.002"])
    out = " ".join(capsys.readouterr().out.split())
    assert done.value.code in (0, None), out
    counts = _counts(server)
    assert (counts["files.create"], counts["batches.create"]) == (1, 1)
    assert counts["chat"] == 1  # the one-token endpoint check before anything is written
    assert len(_records(run)) == 6
    assert "prices: --judge-price; batch x0.5" in out
    manifest = json.loads((run.path / "manifest.json").read_text())
    assert manifest["price_sources"]["judge"] == "--judge-price; batch x0.5"
