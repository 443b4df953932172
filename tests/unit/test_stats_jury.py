"""Juries: known jurors' verdicts give the documented combined verdicts."""

from __future__ import annotations

import pytest

from evalharness.errors import UserError
from evalharness.schema import Judgment, TokenUsage
from evalharness.stats import head_to_head
from evalharness.stats.jury import default_rule, jury_judgments


def vote(judge: str, pid: str, winner: str | None, *, order: tuple[str, str] = ("ft", "base"),
         weight_a: float | None = None, **extra: object) -> Judgment:
    return Judgment(key=f"{judge}|{pid}|{order[0]}", prompt_id=pid, judge=judge,
                    first=order[0], second=order[1], verdict=winner, winner=winner,
                    weight_a=weight_a, **extra)


def by_game(jury: list[Judgment]) -> dict[tuple[str, str], Judgment]:
    return {(j.prompt_id, j.first): j for j in jury}


def test_two_judges_that_disagree_give_the_documented_verdicts() -> None:
    # (judge a, judge b) on each game, and the jury's majority verdict.
    script = {"p1": ("A", "A", "A"), "p2": ("A", "B", "tie"), "p3": ("B", "tie", "tie"),
              "p4": ("tie", "tie", "tie"), "p5": ("B", "B", "B"), "p6": ("A", None, "A")}
    js = [vote(judge, pid, verdicts[i], usage=TokenUsage(prompt_tokens=10), cost_usd=0.01,
               error=None if verdicts[i] else "unreadable")
          for pid, verdicts in script.items() for i, judge in enumerate(("a", "b"))]
    jury = jury_judgments(js, ["a", "b"])
    assert [(j.prompt_id, j.winner) for j in jury] == [(p, v[2]) for p, v in script.items()]
    assert all(j.judge == "jury" and j.weight_a is None and j.error is None for j in jury)
    assert [j.raw for j in jury][1:3] == ["jury of 2/2 (majority): a=A, b=B",
                                          "jury of 2/2 (majority): a=B, b=tie"]
    assert jury[5].raw == "jury of 1/2 (majority): a=A, b=invalid"
    # The jurors carry the cost; the jury adds none.
    assert all(j.usage == TokenUsage() and j.cost_usd == 0.0 for j in jury)
    # Every statistic reads the jury as a judge: 2 wins, 3 ties, 1 loss of 6 prompts.
    h = head_to_head(jury, "ft", "base", n_boot=50)
    assert h.win_rate == pytest.approx((2 + 1.5) / 6)


def test_majority_of_three() -> None:
    script = {"p1": ("A", "A", "B", "A"), "p2": ("A", "B", "tie", "tie"),
              "p3": ("B", "tie", "B", "B"), "p4": ("tie", "tie", "A", "tie"),
              "p5": ("A", "A", "A", "A")}
    js = [vote(judge, pid, v[i]) for pid, v in script.items()
          for i, judge in enumerate(("a", "b", "c"))]
    jury = jury_judgments(js, ["a", "b", "c"], name="panel")
    assert [j.winner for j in jury] == [v[3] for v in script.values()]
    assert jury[0].raw == "jury of 3/3 (majority): a=A, b=A, c=B"
    assert {j.judge for j in jury} == {"panel"}


def test_majority_needs_more_than_half_of_the_votes() -> None:
    js = [vote(judge, "p1", w) for judge, w in zip("abcd", ["A", "A", "B", "tie"], strict=True)]
    assert jury_judgments(js, list("abcd"))[0].winner == "tie"  # 2 of 4 is no majority
    assert jury_judgments(js, list("abc"))[0].winner == "A"


def test_mean_of_soft_preferences() -> None:
    js = [vote("a", "p1", "A", weight_a=0.9), vote("b", "p1", "B", weight_a=0.4),
          vote("a", "p2", "A", weight_a=0.7), vote("b", "p2", "B", weight_a=0.3),
          vote("a", "p3", None, weight_a=0.2), vote("b", "p3", "tie", weight_a=0.5)]
    assert default_rule(js, ["a", "b"]) == "mean"
    jury = jury_judgments(js, ["a", "b"], rule="mean")
    assert [(j.winner, j.weight_a) for j in jury] == [("A", 0.65), ("tie", 0.5), ("B", 0.35)]
    assert jury[0].raw == "jury of 2/2 (mean): a=0.9, b=0.4"
    assert [j.verdict for j in jury] == ["A", "tie", "B"]
    # The majority of the same hard labels differs: p1 is 1 A / 1 B, a tie.
    assert jury_judgments(js, ["a", "b"])[0].winner == "tie"


def test_mean_counts_a_hard_only_juror_as_certain() -> None:
    js = [vote("a", "p1", "A", weight_a=0.6), vote("b", "p1", "B")]
    assert default_rule(js, ["a", "b"]) == "majority"  # b has no soft preference
    (j,) = jury_judgments(js, ["a", "b"], rule="mean")
    assert (j.winner, j.weight_a) == ("B", 0.3)
    assert j.raw == "jury of 2/2 (mean): a=0.6, b=0"


def test_a_game_every_juror_judged_invalid_is_invalid() -> None:
    js = [vote("a", "p1", None, error="HTTP 400"), vote("b", "p1", None, error="unreadable"),
          vote("a", "p2", "A"), vote("b", "p2", "A")]
    jury = jury_judgments(js, ["a", "b"], rule="mean")
    assert (jury[0].winner, jury[0].weight_a, jury[0].verdict, jury[0].valid) == (
        None, None, None, False)
    assert jury[0].error == "every juror's verdict was invalid or missing: a=invalid, b=invalid"
    assert jury[1].winner == "A"
    h = head_to_head(jury, "ft", "base", n_boot=20)
    assert h.n_invalid == 1


def test_partial_coverage_uses_the_jurors_present_and_says_how_many() -> None:
    js = [vote("a", "p1", "A"), vote("b", "p1", "B"), vote("c", "p1", "B"),
          vote("a", "p2", "A"), vote("c", "p3", "B", order=("base", "ft"))]
    jury = jury_judgments(js, ["a", "b", "c"])
    games = by_game(jury)
    assert games[("p1", "ft")].winner == "B"
    assert games[("p2", "ft")].winner == "A"
    assert games[("p2", "ft")].raw == "jury of 1/3 (majority): a=A, b=missing, c=missing"
    assert games[("p3", "base")].raw == "jury of 1/3 (majority): a=missing, b=missing, c=B"
    assert (games[("p3", "base")].first, games[("p3", "base")].second) == ("base", "ft")


def test_orders_are_separate_games_and_keep_the_jurors_details() -> None:
    js = [vote("a", "p1", "A", order=("ft", "base"), category="code", first_length=5,
               second_length=7),
          vote("b", "p1", "A", order=("ft", "base")),
          vote("a", "p1", "B", order=("base", "ft")), vote("b", "p1", "A", order=("base", "ft")),
          vote("other", "p1", "B", order=("ft", "base"))]
    jury = jury_judgments(js, ["a", "b"])
    assert [(j.first, j.winner) for j in jury] == [("ft", "A"), ("base", "tie")]
    assert (jury[0].category, jury[0].first_length, jury[0].second_length) == ("code", 5, 7)
    assert "other" not in jury[0].raw


def test_keys_follow_the_jurors_verdicts() -> None:
    js = [vote("a", "p1", "A"), vote("b", "p1", None, error="HTTP 400")]
    first = jury_judgments(js, ["a", "b"])[0]
    assert first.key == jury_judgments(list(reversed(js)), ["a", "b"])[0].key
    # A re-judged game (same juror key, now valid) replaces the invalid verdict.
    rejudged = [*js, vote("b", "p1", "B")]
    second = jury_judgments(rejudged, ["a", "b"])[0]
    assert (second.winner, second.raw) == ("tie", "jury of 2/2 (majority): a=A, b=B")
    assert second.key != first.key
    assert jury_judgments(js, ["a", "b"], rule="mean")[0].key != first.key
    assert jury_judgments(js, ["a", "b"], name="j2")[0].key != first.key


def test_bad_juries_are_refused_with_the_fix() -> None:
    js = [vote("a", "p1", "A"), vote("b", "p1", "B")]
    with pytest.raises(UserError, match=r"no judgments by 'c'.*judges present: 'a', 'b'"):
        jury_judgments(js, ["a", "c"])
    with pytest.raises(UserError, match="named twice"):
        jury_judgments(js, ["a", "a"])
    with pytest.raises(UserError, match="one of its jurors"):
        jury_judgments(js, ["a", "b"], name="a")
    with pytest.raises(UserError, match="unknown jury rule 'vote'"):
        jury_judgments(js, ["a", "b"], rule="vote")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="at least one judge"):
        jury_judgments(js, [])
