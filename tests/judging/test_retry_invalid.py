"""Re-judging: `--retry-invalid` asks exactly the invalid (and unstored) games again, and the
retries of an unreadable reply change what can change the reply."""

from __future__ import annotations

import re
import shutil
from collections import Counter
from pathlib import Path

import pytest

from evalharness.errors import JudgeError
from evalharness.judging.config import check_judge, default_judges_root, load_judge
from evalharness.judging.stage import JudgeOptions, judge_run
from evalharness.schema import Judgment
from evalharness.stats.current import current_judgments, superseded
from evalharness.stats.summary import dedupe, summarize
from evalharness.store import JUDGMENTS, JsonlLog, RunDir
from tests.fakes.openai_server import Call, FakeOpenAIServer, Fault, Reply, answers_in
from tests.judging.conftest import JudgeCli, JudgeFactory, MakeRun, binary

UNREADABLE = "Both have merit; I will not pick one."
FENCE = re.compile(r"<<<ANSWER A id=(\w+)>>>")

def _games(n: int) -> dict[str, dict[str, str]]:
    return {"lora": {f"p{i}": f"lora answer {i} q=2" for i in range(n)},
            "baseline": {f"p{i}": f"base answer {i} q=1" for i in range(n)}}


def _records(run: RunDir) -> list[Judgment]:
    return JsonlLog(run.path / JUDGMENTS, Judgment).read()


def _prompt(call: Call) -> str:
    a, b = answers_in(call)
    found = re.search(r"answer (\d+) ", a + b)
    assert found is not None
    return f"p{found.group(1)}"


def _broken(call: Call) -> Reply | Fault:
    """Phase one: p0 and p1 get unreadable replies, p2 is rejected (HTTP 400)."""
    prompt = _prompt(call)
    if prompt in ("p0", "p1"):
        return Reply(UNREADABLE)
    if prompt == "p2":
        return Fault.server_error(400, "prompt too long for this model")
    return binary(call)


def test_retry_invalid_after_a_400_phase_judges_exactly_the_invalid_and_unstored_games(
        server: FakeOpenAIServer, judge_for: JudgeFactory, make_run: MakeRun) -> None:
    server.responder = _broken
    run = make_run(_games(6))
    judge = judge_for(invalid_retries=1)
    with pytest.raises(JudgeError, match="rejected 2 request"):
        judge_run(run, judge, "baseline")
    # p0, p1: 2 games x 2 replies each; p2: 2 rejections, never retried; p3-p5: 6 games.
    assert server.n_calls == 8 + 2 + 6
    first = _records(run)
    assert len(first) == 10 and sum(not r.valid for r in first) == 4
    assert {r.prompt_id for r in first if not r.valid} == {"p0", "p1"}

    # The endpoint is fixed. A plain rerun asks only the unstored games: invalid is an answer.
    server.responder = binary
    before = server.n_calls
    plain = judge_run(run, judge, "baseline")
    assert server.n_calls - before == 2 and plain.invalid == 4 and plain.retried == 0

    before = server.n_calls
    counts = judge_run(run, judge, "baseline", options=JudgeOptions(retry_invalid=True))
    asked = Counter(_prompt(c) for c in server.calls[before:])
    assert asked == {"p0": 2, "p1": 2}  # exactly the invalid games, each once
    assert counts.calls == 4 and counts.retried == 4 and counts.computed == 4
    assert counts.on_disk == 8 and counts.invalid == 0 and counts.problem is None
    assert counts.tallies["lora", "baseline"].wins == 12

    # Appended, not rewritten: the invalid records stay as history and are superseded.
    records = _records(run)
    assert len(records) == 16 and records[:10] == first[:10]
    current = current_judgments(records)
    assert len(current) == 12 and superseded(records) == 4
    assert all(r.valid for r in current)
    # The statistics read the new verdicts (and dedupe alone would have kept the invalid).
    stats = summarize(current, "baseline", n_boot=200)
    head = stats.candidates[0].head_to_head
    assert head.win_rate == 1.0 and head.n_invalid == 0
    assert sum(not r.valid for r in dedupe(records)[0]) == 4

    before = server.n_calls
    again = judge_run(run, judge, "baseline", options=JudgeOptions(retry_invalid=True))
    assert server.n_calls == before and again.retried == 0 and again.on_disk == 12


def test_a_still_unreadable_retry_is_stored_again_and_stays_invalid(
        server: FakeOpenAIServer, judge_for: JudgeFactory, make_run: MakeRun) -> None:
    server.responder = lambda call: Reply(UNREADABLE) if _prompt(call) == "p0" else binary(call)
    run = make_run(_games(2))
    judge = judge_for(invalid_retries=0)
    judge_run(run, judge, "baseline")
    counts = judge_run(run, judge, "baseline", options=JudgeOptions(retry_invalid=True))
    assert counts.calls == 2 and counts.retried == 2 and counts.invalid == 2
    records = _records(run)
    assert len(records) == 6
    current = current_judgments(records)
    assert len(current) == 4 and [r for r in current if not r.valid] == records[-2:]


def test_retry_invalid_never_copies_an_invalid_judgment_from_another_run(
        server: FakeOpenAIServer, judge_for: JudgeFactory, make_run: MakeRun) -> None:
    server.responder = lambda call: Reply(UNREADABLE) if _prompt(call) == "p0" else binary(call)
    judge = judge_for(invalid_retries=0)
    old = make_run(_games(2))
    judge_run(old, judge, "baseline", runs_root=old.path.parent)
    server.responder = binary
    new = make_run(_games(2))
    before = server.n_calls
    counts = judge_run(new, judge, "baseline", runs_root=new.path.parent,
                       options=JudgeOptions(retry_invalid=True))
    # p1's valid games are copied from the old run; p0's invalid ones are asked again.
    assert server.n_calls - before == 2 and counts.reused == 2 and counts.invalid == 0


def test_retries_after_an_unreadable_reply_show_new_fences_and_sample(
        server: FakeOpenAIServer, judge_for: JudgeFactory, make_run: MakeRun) -> None:
    server.responder = lambda call: Reply(UNREADABLE)
    run = make_run(_games(1))
    judge_run(run, judge_for(invalid_retries=2), "baseline")

    assert server.n_calls == 2 * 3
    for order in range(2):
        calls = [c for c in server.calls if answers_in(c) == answers_in(server.calls[order])]
        assert len(calls) == 3
        fences = [FENCE.search(c.text).group(1) for c in calls]  # type: ignore[union-attr]
        assert len(set(fences)) == 3  # the first call's ids, then new ones on each retry
        assert [c.body["temperature"] for c in calls] == [0.0, 0.7, 0.7]
        assert all("seed" not in c.body for c in calls)
    for record in _records(run):
        assert not record.valid and record.attempts == 3 and record.raw == UNREADABLE
        assert record.error is not None and record.error.endswith(
            "(each retry showed new fence ids and was sampled at temperature 0.7)")


def test_retry_temperature_null_keeps_the_temperature_and_still_changes_the_fences(
        server: FakeOpenAIServer, judge_for: JudgeFactory, make_run: MakeRun) -> None:
    asked: Counter[tuple[str, str]] = Counter()

    def once_unreadable(call: Call) -> Reply:
        asked[answers_in(call)] += 1
        return Reply(UNREADABLE) if asked[answers_in(call)] == 1 else binary(call)

    server.responder = once_unreadable
    run = make_run(_games(2))
    judge_run(run, judge_for(invalid_retries=2, retry_temperature=None), "baseline")
    assert server.n_calls == 4 * 2
    assert {c.body["temperature"] for c in server.calls} == {0.0}
    assert len({FENCE.search(c.text).group(1) for c in server.calls}) == 8  # type: ignore[union-attr]
    assert all(r.valid and r.attempts == 2 for r in _records(run))


def test_a_judge_that_samples_keeps_its_own_temperature_on_retries(
        server: FakeOpenAIServer, judge_for: JudgeFactory, make_run: MakeRun) -> None:
    server.responder = lambda call: Reply(UNREADABLE)
    judge_run(make_run(_games(1)), judge_for(invalid_retries=1, temperature=1.0), "baseline")
    assert [c.body["temperature"] for c in server.calls] == [1.0] * 4


def test_judge_command_retry_invalid(server: FakeOpenAIServer, make_run: MakeRun,
                                     judge_cli: JudgeCli) -> None:
    server.responder = _broken
    run = make_run(_games(4))
    failed = judge_cli(run)
    # p0, p1: 4 games x 3 replies (invalid_retries: 2); p2: 2 rejections; p3: 2 games.
    assert failed.exit_code != 0 and server.n_calls == 4 * 3 + 2 + 2
    server.responder = binary
    before = server.n_calls
    result = judge_cli(run, "--retry-invalid")
    assert result.exit_code == 0, result.output
    assert server.n_calls - before == 4 + 2
    assert "re-judged: 4 games stored invalid; their new judgments supersede" in result.output
    assert "games judged: 8 (0 invalid" in result.output


@pytest.mark.parametrize(("line", "expected"), [
    ("", 0.7), ("retry_temperature: null\n", None), ("retry_temperature: 1\n", 1.0),
    ("retry_temperature: 0.3\n", 0.3)])
def test_retry_temperature_is_read_from_the_config(tmp_path: Path, line: str,
                                                   expected: float | None) -> None:
    folder = tmp_path / "judge"
    shutil.copytree(default_judges_root() / "pairwise-binary", folder)
    (folder / "config.yaml").write_text((folder / "config.yaml").read_text() + line)
    assert load_judge(folder).retry_temperature == expected


def test_a_negative_retry_temperature_is_a_problem_with_its_line(tmp_path: Path) -> None:
    folder = tmp_path / "judge"
    shutil.copytree(default_judges_root() / "pairwise-binary", folder)
    text = (folder / "config.yaml").read_text()
    (folder / "config.yaml").write_text(text + "retry_temperature: -0.5\n")
    _, problems = check_judge(folder)
    line = len(text.splitlines()) + 1
    assert problems == [f"{folder / 'config.yaml'}:{line}: 'retry_temperature' must be >= 0, "
                        "not -0.5"]
