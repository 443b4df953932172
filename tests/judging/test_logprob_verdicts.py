"""Logprob judges that read published judges' verdicts: their own verdict tokens (``m``/``M``)
and a fixed token position, read from the top log-probs even when another token was sampled.

Every preference below is worked out by hand from the scripted log-probs:
P(A better) = (p_A + p_tie / 2) / (p_A + p_B + p_tie) over the verdict tokens only.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from pathlib import Path

import pytest

from evalharness.judging.config import JudgeConfig, check_judge, default_judges_root, load_judge
from evalharness.judging.stage import judge_run
from evalharness.keys import content_key
from evalharness.schema import Judgment
from evalharness.store import JUDGMENTS, JsonlLog, RunDir
from tests.fakes.openai_server import Call, FakeOpenAIServer, Reply, answers_in
from tests.judging.conftest import KEY_ENV, MakeRun, quality

# AlpacaEval's weighted judges answer "m" for the first output and "M" for the second and
# read the probabilities of the first generated token.
MM_CONFIG = """\
description: m/M judge read at the first token, as AlpacaEval's weighted judges.
kind: llm
model: fake-judge
api_key_env: {key_env}
max_tokens: {max_tokens}
invalid_retries: 1
templates: {{system: system.txt, user: user.txt}}
verdicts:
  - {{label: m, winner: A, pattern: '^\\W*m\\W*$'}}
  - {{label: M, winner: B, pattern: '^\\W*M\\W*$'}}
logprobs:
  top_logprobs: 5
  tokens: {{A: ["m"], B: ["M"]}}
{position}"""


def write_judge(folder: Path, *, position: int | None = 0, max_tokens: int = 1) -> Path:
    """A judge folder using the shipped logprob judge's templates and an m/M scale."""
    folder.mkdir(parents=True)
    shipped = default_judges_root() / "pairwise-logprob"
    for name in ("system.txt", "user.txt"):
        shutil.copy(shipped / name, folder / name)
    line = "" if position is None else f"  position: {position}\n"
    (folder / "config.yaml").write_text(
        MM_CONFIG.format(key_env=KEY_ENV, max_tokens=max_tokens, position=line),
        encoding="utf-8")
    return folder


def pointed(folder: Path, server: FakeOpenAIServer) -> JudgeConfig:
    config = load_judge(folder).with_overrides(base_url=server.base_url)
    return dataclasses.replace(config, backoff_initial_s=0.01, backoff_max_s=0.05,
                               timeout_s=5.0, concurrency=2)


def games(n: int) -> dict[str, dict[str, str]]:
    """The candidate's answers are better (q=2) than the baseline's (q=1) on every prompt."""
    return {
        "lora": {f"p{i}": f"candidate answer {i} q=2" for i in range(n)},
        "baseline": {f"p{i}": f"baseline answer {i} q=1" for i in range(n)},
    }


def records(run: RunDir) -> list[Judgment]:
    return JsonlLog(run.path / JUDGMENTS, Judgment).read()


def p_candidate(record: Judgment) -> float:
    assert record.weight_a is not None
    return record.weight_a if record.first == "lora" else 1.0 - record.weight_a


def better_side(call: Call) -> str:
    a, b = answers_in(call)
    return "A" if quality(a) > quality(b) else "B"


def test_an_m_or_big_m_judge_at_the_first_token_gives_the_hand_computed_preference(
        tmp_path: Path, server: FakeOpenAIServer, api_key: str, make_run: MakeRun) -> None:
    def mm_judge(call: Call) -> Reply:
        better, worse = ("m", "M") if better_side(call) == "A" else ("M", "m")
        return Reply(better, top_logprobs=[[(better, math.log(0.7)), (worse, math.log(0.2)),
                                            ("Model", math.log(0.1))]])

    server.responder = mm_judge
    run = make_run(games(3))
    judge_run(run, pointed(write_judge(tmp_path / "mm"), server), "baseline")

    # By hand: verdict-token mass .7 on the better answer's letter, .2 on the other ("Model"
    # is not a verdict token), so P(candidate better) = .7 / .9 = 7/9 in both orders.
    got = records(run)
    assert len(got) == 6
    for record in got:
        assert p_candidate(record) == pytest.approx(7 / 9)
        # "m" names the first output, "M" the second: the candidate won in either position.
        assert record.verdict == ("m" if record.first == "lora" else "M")
        assert record.winner == ("A" if record.first == "lora" else "B")
    assert all(c.body["logprobs"] is True and c.body["top_logprobs"] == 5 for c in server.calls)


def test_a_sampled_token_that_is_not_a_verdict_token_still_gives_the_preference(
        tmp_path: Path, server: FakeOpenAIServer, api_key: str, make_run: MakeRun) -> None:
    # The judge sampled "The" (it began a sentence), but "m" and "M" are among the
    # alternatives at that first token.
    def chatty(call: Call) -> Reply:
        better, worse = ("m", "M") if better_side(call) == "A" else ("M", "m")
        return Reply("The", top_logprobs=[[("The", math.log(0.5)), (better, math.log(0.3)),
                                           (worse, math.log(0.1)), ("I", math.log(0.1))]])

    server.responder = chatty
    run = make_run(games(2))
    counts = judge_run(run, pointed(write_judge(tmp_path / "mm"), server), "baseline")

    # By hand: .3 / (.3 + .1) = 0.75 for the better answer; the text "The" holds no label,
    # so the verdict is the likelier verdict token's: the candidate wins every game.
    got = records(run)
    assert len(got) == 4 and counts.invalid == 0
    for record in got:
        assert p_candidate(record) == pytest.approx(0.75)
        assert record.winner == ("A" if record.first == "lora" else "B")
        assert record.verdict == ("m" if record.first == "lora" else "M")
        assert record.error is None and record.raw == "The"
        assert record.attempts == 1  # read, not asked again
    assert server.n_calls == 4


def test_without_a_position_the_same_reply_stays_invalid(
        tmp_path: Path, server: FakeOpenAIServer, api_key: str, make_run: MakeRun) -> None:
    # The default (first token that IS a verdict token) never reads "The": the judgment is
    # invalid after the retries, never a guess and never a tie.
    server.responder = lambda call: Reply("The", top_logprobs=[[
        ("The", math.log(0.5)), ("m", math.log(0.3)), ("M", math.log(0.1))]])
    run = make_run(games(1))
    judge_run(run, pointed(write_judge(tmp_path / "mm", position=None), server), "baseline")
    got = records(run)
    assert len(got) == 2
    assert all(r.winner is None and r.weight_a is None and r.attempts == 2 for r in got)


def test_the_configured_position_is_where_the_preference_is_read(
        tmp_path: Path, server: FakeOpenAIServer, api_key: str, make_run: MakeRun) -> None:
    # "**M**" in three tokens; the preference sits at token 1, token 0 is formatting.
    def bold(call: Call) -> Reply:
        better, worse = ("m", "M") if better_side(call) == "A" else ("M", "m")
        return Reply(f"**{better}**", tokens=["**", better, "**"], top_logprobs=[
            [("**", 0.0)],
            [(better, math.log(0.6)), (worse, math.log(0.4))],
            [("**", 0.0)],
        ])

    server.responder = bold
    run = make_run(games(2))
    judge_run(run, pointed(write_judge(tmp_path / "mm", position=1, max_tokens=3), server),
              "baseline")
    for record in records(run):
        assert p_candidate(record) == pytest.approx(0.6)  # .6 / (.6 + .4)
        assert record.winner == ("A" if record.first == "lora" else "B")


def test_a_position_beyond_the_reply_gives_no_preference_but_keeps_the_text_verdict(
        tmp_path: Path, server: FakeOpenAIServer, api_key: str, make_run: MakeRun) -> None:
    server.responder = lambda call: Reply(
        "m" if better_side(call) == "A" else "M",
        top_logprobs=[[("m", math.log(0.5)), ("M", math.log(0.5))]])
    run = make_run(games(1))
    judge_run(run, pointed(write_judge(tmp_path / "mm", position=2, max_tokens=4), server),
              "baseline")
    got = records(run)
    assert all(r.weight_a is None for r in got)
    assert {(r.first, r.winner) for r in got} == {("lora", "A"), ("baseline", "B")}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"position": 1, "max_tokens": 1}, "config.yaml:14: 'logprobs.position' 1 is never "
                                           "generated: max_tokens is 1"),
        ({"position": -1, "max_tokens": 1}, "config.yaml:14: 'logprobs.position' must be a "
                                            "whole number from 0"),
    ],
)
def test_bad_positions_are_named_with_their_line(tmp_path: Path, edit: dict[str, int],
                                                 message: str) -> None:
    folder = write_judge(tmp_path / "mm", **edit)
    _, problems = check_judge(folder)
    assert any(message in p for p in problems), problems


def test_a_token_on_both_sides_is_refused(tmp_path: Path) -> None:
    folder = write_judge(tmp_path / "mm")
    text = (folder / "config.yaml").read_text().replace('B: ["M"]', 'B: ["M", " m"]')
    (folder / "config.yaml").write_text(text)
    _, problems = check_judge(folder)
    assert any("config.yaml:13:" in p and "'m' for both A and B" in p for p in problems), problems


def test_case_tells_m_from_big_m(tmp_path: Path) -> None:
    tokens = load_judge(write_judge(tmp_path / "mm")).logprob_tokens
    assert tokens is not None
    assert (tokens.side(" m"), tokens.side("M"), tokens.side("MM"), tokens.position) == (
        "A", "B", None, 0)


def test_the_shipped_logprob_judge_keeps_its_fingerprint(tmp_path: Path) -> None:
    # A judge without `position` hashes exactly as before the setting existed, so the
    # judgments already made with it are reused; setting a position changes the key.
    judge = load_judge(default_judges_root() / "pairwise-logprob")
    tokens = judge.logprob_tokens
    assert tokens is not None and tokens.position is None
    before = content_key({
        "kind": "llm", "model": judge.model, "temperature": judge.temperature,
        "max_tokens": judge.max_tokens, "system": judge.system_template,
        "user": judge.user_template,
        "verdicts": [[r.label, r.winner, r.pattern.pattern] for r in judge.verdicts],
        "logprobs": {"a": sorted(tokens.a), "b": sorted(tokens.b), "tie": sorted(tokens.tie),
                     "top": judge.top_logprobs},
    })
    assert judge.fingerprint == before
    at_first = dataclasses.replace(judge, logprob_tokens=dataclasses.replace(tokens, position=0))
    assert at_first.fingerprint != judge.fingerprint
