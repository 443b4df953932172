"""The LLM judge against a real OpenAI-compatible server on 127.0.0.1, with the real client."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest

from evalharness.errors import JudgeError, UserError
from evalharness.judging.stage import judge_run
from evalharness.schema import Judgment
from evalharness.store import JUDGMENTS, JsonlLog, RunDir
from tests.fakes.openai_server import Call, FakeOpenAIServer, Fault, Reply, answers_in
from tests.judging.conftest import (
    FIVE_LEVELS,
    KEY_ENV,
    SECRET,
    JudgeFactory,
    MakeRun,
    binary,
    five_level,
    quality,
)


def _records(run: RunDir) -> list[Judgment]:
    return JsonlLog(run.path / JUDGMENTS, Judgment).read()


def _games(prompts: int, candidate_q: int = 2, baseline_q: int = 1) -> dict[str, dict[str, str]]:
    return {
        "lora": {f"p{i}": f"candidate answer {i} q={candidate_q}" for i in range(prompts)},
        "baseline": {f"p{i}": f"baseline answer {i} q={baseline_q}" for i in range(prompts)},
    }


def test_every_prompt_is_judged_in_both_orders_and_five_levels_map_back(
        server: FakeOpenAIServer, judge_for: JudgeFactory, make_run: MakeRun) -> None:
    # The candidate is better by +2, +1, 0, -1, -2 on prompts p0..p4.
    diffs = [2, 1, 0, -1, -2]
    run = make_run({
        "lora": {f"p{i}": f"lora says {i} q={3 + d}" for i, d in enumerate(diffs)},
        "baseline": {f"p{i}": f"base says {i} q=3" for i in range(5)},
    })
    server.responder = five_level
    counts = judge_run(run, judge_for("pairwise-5level"), "baseline")

    records = _records(run)
    assert server.n_calls == 10 and len(records) == 10
    orders = Counter((r.prompt_id, r.first, r.second) for r in records)
    assert set(orders.values()) == {1}
    for i, d in enumerate(diffs):
        mine = {(r.first, r.second): r for r in records if r.prompt_id == f"p{i}"}
        assert set(mine) == {("lora", "baseline"), ("baseline", "lora")}
        # Candidate as A: the label is the candidate's advantage; as B: the mirror label.
        assert mine["lora", "baseline"].verdict == FIVE_LEVELS[d]
        assert mine["baseline", "lora"].verdict == FIVE_LEVELS[-d]
        expected_winner = {1: "lora", 0: None, -1: "baseline"}[(d > 0) - (d < 0)]
        for record in mine.values():
            won = (None if record.winner == "tie" else
                   record.first if record.winner == "A" else record.second)
            assert won == expected_winner
        assert mine["lora", "baseline"].first_length == len(f"lora says {i} q={3 + d}")
    tally = counts.tallies["lora", "baseline"]
    assert (tally.wins, tally.ties, tally.losses, tally.invalid) == (4, 2, 4, 0)
    assert {r.category for r in records} == {"even", "odd"}
    assert counts.computed == 10 and counts.invalid == 0


def test_soft_preference_from_logprobs_matches_hand_computation(
        server: FakeOpenAIServer, judge_for: JudgeFactory, make_run: MakeRun) -> None:
    def logprob_judge(call: Call) -> Reply:
        a, b = answers_in(call)
        better, worse = ("A", "B") if quality(a) > quality(b) else ("B", "A")
        return Reply(better, top_logprobs=[[(better, math.log(0.6)), (worse, math.log(0.3)),
                                            ("Both", math.log(0.1))]])

    server.responder = logprob_judge
    run = make_run(_games(3, candidate_q=2, baseline_q=1))
    judge_run(run, judge_for("pairwise-logprob"), "baseline")

    # By hand: verdict-token mass A .6, B .3 (the .1 on "Both" is not a verdict token),
    # so P(better answer wins) = .6 / (.6 + .3) = 2/3, in whichever position it sits.
    for record in _records(run):
        assert record.weight_a is not None
        p_candidate = record.weight_a if record.first == "lora" else 1 - record.weight_a
        assert p_candidate == pytest.approx(2 / 3)
        assert record.verdict == ("A" if record.first == "lora" else "B")
    assert all(c.body["logprobs"] is True and c.body["top_logprobs"] == 10
               for c in server.calls)


def test_rate_limits_errors_timeouts_and_drops_are_retried_without_loss_or_duplicates(
        server: FakeOpenAIServer, judge_for: JudgeFactory, make_run: MakeRun) -> None:
    faults = {0: Fault.rate_limited(retry_after=0.3), 3: Fault.server_error(500),
              5: Fault.hang(1.5), 7: Fault.drop(), 9: Fault.malformed(),
              11: Fault.server_error(503)}
    server.inject(faults)
    run = make_run(_games(12))
    # backoff.max_s above the Retry-After asked: the header is honoured below the cap.
    counts = judge_run(run, judge_for(timeout_s=0.5, backoff_max_s=1.0), "baseline")

    records = _records(run)
    assert len(records) == 24
    assert len({(r.prompt_id, r.first, r.second) for r in records}) == 24
    assert all(r.winner is not None for r in records)
    assert server.n_calls == 24 + len(faults)
    assert counts.calls == server.n_calls
    assert sum(r.attempts for r in records) == server.n_calls
    # The retry of the rate-limited call waited at least what Retry-After asked.
    calls = server.calls
    limited = calls[0]
    retry = next(c for c in calls[1:] if c.body["messages"] == limited.body["messages"])
    assert retry.received - limited.received >= 0.3


def test_garbage_verdicts_are_retried_then_stored_invalid_never_as_ties(
        server: FakeOpenAIServer, judge_for: JudgeFactory, make_run: MakeRun) -> None:
    asked: Counter[tuple[str, str]] = Counter()

    def flaky(call: Call) -> Reply:
        a, b = answers_in(call)
        asked[a, b] += 1  # by the answers: a retry shows other fence ids (not call.seen)
        if "answer 0 " in a or "answer 0 " in b:
            return Reply("Both answers have merit; I cannot choose.")  # always garbage
        if ("answer 1 " in a or "answer 1 " in b) and asked[a, b] == 1:
            return Reply("Hmm.")  # garbage once, then a verdict
        return binary(call)

    server.responder = flaky
    run = make_run(_games(3))
    counts = judge_run(run, judge_for(invalid_retries=2), "baseline")

    records = {(r.prompt_id, r.first): r for r in _records(run)}
    assert len(records) == 6
    for first in ("lora", "baseline"):
        bad = records["p0", first]
        assert bad.winner is None and bad.verdict is None
        assert bad.raw == "Both answers have merit; I cannot choose."
        assert bad.error is not None and "no verdict found" in bad.error
        assert bad.attempts == 3
        assert records["p1", first].winner is not None and records["p1", first].attempts == 2
    assert server.n_calls == 2 * 3 + 2 * 2 + 2
    assert counts.invalid == 2
    tally = counts.tallies["lora", "baseline"]
    assert (tally.wins, tally.ties, tally.invalid) == (4, 0, 2)


def test_rerun_makes_zero_calls_and_another_run_reuses_judgments(
        server: FakeOpenAIServer, judge_for: JudgeFactory, make_run: MakeRun,
        tmp_path: Path) -> None:
    games = _games(4)
    run = make_run(games)
    judge = judge_for()
    first = judge_run(run, judge, "baseline", runs_root=run.path.parent)
    calls = server.n_calls
    assert first.computed == 8 and calls == 8

    again = judge_run(run, judge, "baseline", runs_root=run.path.parent)
    assert server.n_calls == calls
    assert (again.on_disk, again.computed, again.calls) == (8, 0, 0)
    assert len(_records(run)) == 8

    # A judge moved to another URL at another concurrency keeps its judgments (same key);
    # a second run with the same answers copies them from the first.
    other = make_run(games, root=run.path.parent)
    moved = judge_for(concurrency=1)
    reused = judge_run(other, moved, "baseline", runs_root=run.path.parent)
    assert server.n_calls == calls
    assert (reused.reused, reused.computed) == (8, 0)


def test_identical_answers_are_judged_once_but_recorded_for_each_game(
        server: FakeOpenAIServer, judge_for: JudgeFactory, make_run: MakeRun) -> None:
    run = make_run({
        "a1": {"p0": "same answer q=2"}, "a2": {"p0": "same answer q=2"},
        "baseline": {"p0": "base answer q=1"},
    })
    counts = judge_run(run, judge_for(), "baseline")
    records = _records(run)
    assert server.n_calls == 2
    assert sorted((r.first, r.second) for r in records) == [
        ("a1", "baseline"), ("a2", "baseline"), ("baseline", "a1"), ("baseline", "a2")]
    assert counts.tallies["a1", "baseline"].wins == counts.tallies["a2", "baseline"].wins == 2


def test_calls_failing_past_their_retries_stop_the_run_and_a_rerun_finishes_it(
        server: FakeOpenAIServer, judge_for: JudgeFactory, make_run: MakeRun) -> None:
    run = make_run(_games(6))
    server.inject({i: Fault.server_error(502) for i in range(4, 40)})
    judge = judge_for(retries=2, concurrency=1)
    with pytest.raises(JudgeError, match=r"failed 3 times.*HTTP 502.*rerun"):
        judge_run(run, judge, "baseline")
    assert len(_records(run)) == 4  # what finished before the outage is kept

    server.clear_faults()  # the outage is over
    calls_before = server.n_calls
    judge_run(run, judge, "baseline")
    records = _records(run)
    assert len(records) == 12
    assert len({(r.prompt_id, r.first) for r in records}) == 12
    assert server.n_calls - calls_before >= 8


def test_no_api_key_anywhere_in_the_run_directory(
        server: FakeOpenAIServer, judge_for: JudgeFactory, make_run: MakeRun) -> None:
    def leaky(call: Call) -> Reply | Fault:
        a, b = answers_in(call)
        auth = call.headers.get("authorization", "")
        if "answer 0 " in a + b:
            return Reply(f"echo {auth}")  # garbage verdict carrying the key
        if "answer 1 " in a + b:
            return Fault.server_error(400, f"bad request from {auth}")
        return binary(call)

    server.responder = leaky
    run = make_run(_games(3))
    # The rejected requests (answer 1) stop the stage after the rest is judged; the
    # endpoint's message, which echoes the key, is scrubbed in the error too.
    with pytest.raises(JudgeError, match=r"rejected 2 request\(s\).*Bearer \*\*\*") as info:
        judge_run(run, judge_for(invalid_retries=0), "baseline")
    assert SECRET not in str(info.value)

    assert all(c.headers.get("authorization") == f"Bearer {SECRET}" for c in server.calls)
    assert sum(r.winner is None for r in _records(run)) == 2
    text = "".join(p.read_text(errors="replace") for p in run.path.rglob("*") if p.is_file())
    assert SECRET not in text and SECRET[8:20] not in text
    assert "Bearer ***" in text  # the scrub ran on the texts that held the key
    manifest = json.loads((run.path / "manifest.json").read_text())
    assert SECRET not in json.dumps(manifest)


def test_missing_key_names_the_variable_and_calls_nothing(
        server: FakeOpenAIServer, judge_for: JudgeFactory, make_run: MakeRun,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV)
    run = make_run(_games(1))
    with pytest.raises(UserError, match=f"environment variable {KEY_ENV}, which is not set"):
        judge_run(run, judge_for(), "baseline")
    assert server.n_calls == 0


def test_a_refused_key_is_a_user_error(server: FakeOpenAIServer, judge_for: JudgeFactory,
                                       make_run: MakeRun) -> None:
    server.responder = lambda call: Fault.server_error(401, "invalid api key")
    with pytest.raises(UserError, match=rf"refused the API key.*{KEY_ENV}"):
        judge_run(make_run(_games(1)), judge_for(), "baseline")


def test_an_endpoint_rejecting_every_request_stops_the_run_instead_of_filling_it_with_invalids(
        server: FakeOpenAIServer, judge_for: JudgeFactory, make_run: MakeRun) -> None:
    server.responder = lambda call: Fault.server_error(400, "logprobs are not supported")
    run = make_run(_games(10))
    with pytest.raises(JudgeError, match=r"rejected all of the first 5 requests.*logprobs"):
        judge_run(run, judge_for("pairwise-logprob", concurrency=1), "baseline")
    assert server.n_calls == 5
