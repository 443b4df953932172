"""The noise floor: `judge RUN --repeats K` re-asks a sample K times, each time with new fence
ids (and a seed for a sampling judge), and measures how much the judge disagrees with itself."""

from __future__ import annotations

import dataclasses
import math
import re
from collections import Counter
from collections.abc import Mapping

import pytest

from evalharness.errors import UserError
from evalharness.judging.base import Outcome
from evalharness.judging.config import JudgeConfig, default_judges_root, load_judge
from evalharness.judging.stage import JudgeOptions, judge_run
from evalharness.judging.templates import GameText
from evalharness.schema import Judgment, Winner
from evalharness.stats.noise import noise_floor
from evalharness.store import JUDGMENTS, JsonlLog, RunDir
from tests.fakes.openai_server import FakeOpenAIServer, answers_in
from tests.judging.conftest import JudgeCli, JudgeFactory, MakeRun, binary

FENCE = re.compile(r"<<<ANSWER A id=(\w+)>>>")
Flips = Mapping[tuple[str, str, bool], Winner]
"""(judge name, prompt id, lora shown first) -> the winner that judge gives instead."""


def _games(n: int) -> dict[str, dict[str, str]]:
    return {"lora": {f"p{i}": f"lora answer {i} q=2" for i in range(n)},
            "baseline": {f"p{i}": f"base answer {i} q=1" for i in range(n)}}


def _records(run: RunDir) -> list[Judgment]:
    return JsonlLog(run.path / JUDGMENTS, Judgment).read()


class Scripted:
    """An offline judge: lora's answer always wins, except where ``flips`` say otherwise."""

    def __init__(self, config: JudgeConfig, calls: Counter[str], flips: Flips,
                 seen: list[JudgeConfig]) -> None:
        self.config = config
        self._calls = calls
        self._flips = flips
        seen.append(config)

    async def judge(self, game: GameText) -> Outcome:
        self._calls[self.config.name] += 1
        lora_first = game.answer_a.startswith("lora")
        found = re.search(r"answer (\d+)", game.answer_a)
        assert found is not None
        winner = self._flips.get((self.config.name, f"p{found.group(1)}", lora_first),
                                 "A" if lora_first else "B")
        return Outcome(winner, winner, raw=f"[[{winner}]]")

    async def aclose(self) -> None:
        pass


def _scripted(flips: Flips | None = None) -> tuple[Counter[str], list[JudgeConfig], object]:
    calls: Counter[str] = Counter()
    seen: list[JudgeConfig] = []
    return calls, seen, lambda config: Scripted(config, calls, flips or {}, seen)


def test_self_consistency_and_band_equal_the_hand_computation(
        judge_for: JudgeFactory, make_run: MakeRun) -> None:
    # 4 prompts, lora wins all 8 games. Repeat 1 gives p0 (lora first) to the baseline and
    # calls p1 (baseline first) a tie; repeat 2 gives p0 (lora first) to the baseline again.
    flips: Flips = {("pairwise-binary#1", "p0", True): "B",
                    ("pairwise-binary#1", "p1", False): "tie",
                    ("pairwise-binary#2", "p0", True): "B"}
    calls, seen, make = _scripted(flips)
    run = make_run(_games(4))
    counts = judge_run(run, judge_for(), "baseline", make_judge=make,  # type: ignore[arg-type]
                       options=JudgeOptions(repeats=2, repeat_sample=4))

    # K x 2N calls: 2 repeats x 4 prompts x 2 orders, after the 8 original games.
    assert calls == {"pairwise-binary": 8, "pairwise-binary#1": 8, "pairwise-binary#2": 8}
    assert counts.computed == 8 and counts.repeated == 16 and counts.calls == 24
    assert counts.tallies["lora", "baseline"].wins == 8  # repeats never enter the tallies
    assert [(c.name, c.fence_salt, c.seed) for c in seen[1:]] == [
        ("pairwise-binary#1", "repeat-1", None), ("pairwise-binary#2", "repeat-2", None)]

    # By hand. 16 repeated verdicts, 3 differ from their original: 13/16.
    # Prompt scores over (original, #1, #2): p0 (1, .5, .5), p1 (1, .75, 1), p2, p3 (1, 1, 1).
    def variance(xs: list[float]) -> float:
        mean = sum(xs) / len(xs)
        return sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)

    mean_variance = (variance([1, .5, .5]) + variance([1, .75, 1]) + 0 + 0) / 4
    assert mean_variance == pytest.approx(5 / 192)
    sd = math.sqrt(mean_variance / 4)
    floor = counts.noise
    assert floor is not None
    assert (floor.repeats, floor.games, floor.compared, floor.same) == (2, 8, 16, 13)
    assert floor.self_consistency == pytest.approx(13 / 16)
    assert floor.prompts_sampled == 4 and floor.prompts == 4
    assert floor.prompt_variance == pytest.approx(mean_variance)
    assert floor.win_rate_sd == pytest.approx(sd)
    assert floor.win_rate_band == pytest.approx(1.96 * sd)
    assert floor.difference_band == pytest.approx(1.96 * sd * math.sqrt(2))
    assert noise_floor(_records(run), "pairwise-binary", "baseline") == floor

    # The repeats are their own judges in the file: the run's judge holds only its 8 games.
    by_judge = Counter(r.judge for r in _records(run))
    assert by_judge == {"pairwise-binary": 8, "pairwise-binary#1": 8, "pairwise-binary#2": 8}


def test_repeats_sample_n_prompts_resume_and_grow_by_the_new_repeat_only(
        judge_for: JudgeFactory, make_run: MakeRun) -> None:
    calls, _, make = _scripted()
    run = make_run(_games(6))
    judge = judge_for()
    judge_run(run, judge, "baseline", make_judge=make,  # type: ignore[arg-type]
              options=JudgeOptions(repeats=3, repeat_sample=2))
    assert calls["pairwise-binary"] == 12
    assert sum(n for name, n in calls.items() if "#" in name) == 3 * 2 * 2  # K x 2N
    sample = {r.prompt_id for r in _records(run) if r.judge == "pairwise-binary#1"}
    assert len(sample) == 2

    calls.clear()
    again = judge_run(run, judge, "baseline", make_judge=make,  # type: ignore[arg-type]
                      options=JudgeOptions(repeats=3, repeat_sample=2))
    assert not calls and again.repeated == 0 and again.noise is not None
    assert again.noise.self_consistency == 1.0 and again.noise.difference_band == 0.0

    judge_run(run, judge, "baseline", make_judge=make,  # type: ignore[arg-type]
              options=JudgeOptions(repeats=4, repeat_sample=2))
    assert calls == {"pairwise-binary#4": 4}
    assert {r.prompt_id for r in _records(run) if r.judge == "pairwise-binary#4"} == sample


def test_unreadable_repeats_are_counted_apart_never_compared(
        judge_for: JudgeFactory, make_run: MakeRun) -> None:
    run = make_run(_games(2))
    _, _, make = _scripted()
    judge_run(run, judge_for(), "baseline", make_judge=make)  # type: ignore[arg-type]
    records = _records(run)
    bad = records[0].model_copy(update={"judge": "pairwise-binary#1", "key": "r1",
                                        "verdict": None, "winner": None})
    good = records[1].model_copy(update={"judge": "pairwise-binary#1", "key": "r2"})
    floor = noise_floor([*records, bad, good], "pairwise-binary", "baseline")
    assert (floor.compared, floor.same, floor.invalid_repeats) == (1, 1, 1)
    assert floor.prompt_variance is None or floor.prompts_sampled <= 1


def test_repeat_requests_show_new_fences_and_a_sampling_judge_gets_a_seed(
        server: FakeOpenAIServer, judge_for: JudgeFactory, make_run: MakeRun) -> None:
    server.responder = binary
    run = make_run(_games(3))
    judge_run(run, judge_for(), "baseline", options=JudgeOptions(repeats=2, repeat_sample=3))
    assert server.n_calls == 6 + 2 * 3 * 2
    fences: dict[tuple[str, str], list[str]] = {}
    for call in server.calls:
        fences.setdefault(answers_in(call), []).append(FENCE.search(call.text).group(1))  # type: ignore[union-attr]
        assert "seed" not in call.body and call.body["temperature"] == 0.0
    assert all(len(set(ids)) == 3 for ids in fences.values())  # original, #1, #2

    sampling = make_run(_games(2))
    before = server.n_calls
    judge_run(sampling, judge_for(temperature=0.8), "baseline",
              options=JudgeOptions(repeats=2, repeat_sample=2))
    seeds = Counter(c.body.get("seed") for c in server.calls[before:])
    assert seeds == {None: 4, 1: 4, 2: 4}


def test_repeats_of_an_offline_judge_are_refused_before_anything_is_written(
        make_run: MakeRun) -> None:
    run = make_run(_games(2))
    reference = load_judge(default_judges_root() / "reference")
    with pytest.raises(UserError, match="offline and deterministic"):
        judge_run(run, reference, "baseline", options=JudgeOptions(repeats=2))
    assert not (run.path / JUDGMENTS).exists()
    with pytest.raises(UserError, match="--repeat-sample >= 1"):
        judge_run(run, dataclasses.replace(reference, kind="llm"), "baseline",
                  options=JudgeOptions(repeats=2, repeat_sample=0))


def test_judge_command_prints_the_noise_floor(server: FakeOpenAIServer, make_run: MakeRun,
                                              judge_cli: JudgeCli) -> None:
    server.responder = binary
    run = make_run(_games(3))
    refused = judge_cli(run, "--repeat-sample", "2")
    assert isinstance(refused.exception, UserError) and server.n_calls == 0
    assert "Fix: add --repeats K" in str(refused.exception)
    result = judge_cli(run, "--repeats", "2", "--repeat-sample", "2")
    assert result.exit_code == 0, result.output
    assert server.n_calls == 6 + 2 * 2 * 2
    out = " ".join(result.output.split())
    assert "noise floor of pairwise-binary: 2 repeat(s) of 4 games; self-consistency " \
           "100.0% (8 of 8" in out
    assert "a difference between two candidates smaller than 0.000" in out
