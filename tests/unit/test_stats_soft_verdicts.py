"""Soft preferences as the score, one-order data, and verdicts that agree with their test."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from evalharness.errors import UserError
from evalharness.schema import Judgment
from evalharness.stats import summarize, to_jsonable
from evalharness.stats.headtohead import decide, head_to_head, sign_interval
from evalharness.stats.summary import holm_levels
from tests.helpers import game


def soft(pid: str, first: str, second: str, weight_a: float) -> Judgment:
    """A soft-only game, as a published annotator writes it (no hard winner)."""
    return Judgment(key=f"{pid}{first}", prompt_id=pid, judge="j", first=first,
                    second=second, verdict=None, winner=None, weight_a=weight_a)


# The candidate's P(better) on five prompts, each judged once; prompts 3 and 4 showed the
# baseline first, so their rows carry weight_a = 1 - score.
SCORES = [0.95, 0.55, 0.30, 0.60, 0.40]
ONE_ORDER = [soft(f"p{i}", "ft", "base", s) if i < 3 else soft(f"p{i}", "base", "ft", 1 - s)
             for i, s in enumerate(SCORES)]


def test_soft_headline_and_standard_error_equal_the_hand_computation() -> None:
    """By hand: mean = 2.8 / 5 = 0.56; deviations 0.39, -0.01, -0.26, 0.04, -0.16, squares sum
    0.247, sample variance 0.247 / 4 = 0.06175, sd 0.248495, SE = sd / sqrt(5) = 0.111131.
    t = 0.06 / 0.111131 = 0.539904 on 4 df; t(0.975, 4) = 2.776445, so the interval is
    0.56 ± 0.308548 = [0.251452, 0.868548]."""
    s = summarize(ONE_ORDER, "base", n_boot=200)
    assert s.score == "soft"  # every valid game has a soft preference
    h = s.candidates[0].head_to_head
    assert (h.n_prompts, h.n_invalid, s.n_invalid) == (5, 0, 0)
    assert h.win_rate == pytest.approx(0.56, abs=1e-12)
    assert h.standard_error == pytest.approx(0.111131, abs=1e-6)
    assert h.standard_error == pytest.approx(sps.sem(SCORES), rel=1e-12)
    assert h.test == "t"
    assert h.p_value == pytest.approx(sps.ttest_1samp(SCORES, 0.5).pvalue, rel=1e-12)
    assert h.test_interval.low == pytest.approx(0.251452, abs=2e-6)
    assert h.test_interval.high == pytest.approx(0.868548, abs=2e-6)
    assert s.candidates[0].verdict == "cannot tell"
    # The same file scored hard: the labels the preferences round to (3 of 5 won).
    hard = summarize(ONE_ORDER, "base", n_boot=200, score="hard")
    assert hard.score == "hard" and hard.candidates[0].head_to_head.win_rate == 0.6


def test_soft_only_games_play_in_the_league_and_are_not_invalid() -> None:
    s = summarize(ONE_ORDER, "base", n_boot=200)
    assert s.problem is None
    assert [st.model for st in s.league.standings if st.model == "ft"] == ["ft"]


def test_score_soft_refused_when_a_game_has_only_a_hard_winner() -> None:
    judgments = [*ONE_ORDER, game("h", "p9", "ft", "base", "A")]
    assert summarize(judgments, "base", n_boot=200).score == "hard"  # the default falls back
    with pytest.raises(UserError, match=r"1 of 6 have only a hard winner .*Fix: use --score"):
        summarize(judgments, "base", n_boot=200, score="soft")


def test_one_order_data_is_said_to_be_one_order_and_has_no_position_rate() -> None:
    """On one-order games 'position A won' would only be the record of who was shown first."""
    judgments = [game(f"k{i}", f"p{i}", "ft", "base", "A" if i < 30 else "B")
                 for i in range(40)]
    s = summarize(judgments, "base", n_boot=200)
    assert s.orders == "each prompt judged in one order only"
    assert (s.n_prompts_both_orders, s.n_prompts_one_order) == (0, 40)
    assert s.position.n_both_orders == 0 and s.position.n_decided == 0
    assert math.isnan(s.position.first_position_rate)
    assert s.position_note.startswith("No prompt was judged in both orders")
    bias = s.candidates[0].bias
    assert bias.n_both_orders == 0 and bias.position.n_decided == 0
    record = to_jsonable(s)
    assert record["orders"] == "each prompt judged in one order only"
    assert record["n_prompts_one_order"] == 40 and record["n_prompts_both_orders"] == 0
    assert "both orders cancels" not in str(record)


def test_mixed_orders_are_counted_and_position_uses_only_two_order_prompts() -> None:
    both = [game(f"a{i}{o}", f"p{i}", *(("ft", "base") if o else ("base", "ft")), "A")
            for i in range(10) for o in (0, 1)]
    once = [game(f"b{i}", f"q{i}", "ft", "base", "A") for i in range(6)]
    s = summarize(both + once, "base", n_boot=200)
    assert s.orders == "10 of 16 prompts judged in both orders, 6 in one order only"
    # 20 games on two-order prompts, all won by position A; the 6 one-order games are left out.
    assert (s.position.n_decided, s.position.first_position_rate) == (20, 1.0)
    assert s.candidates[0].bias.position.n_decided == 20


def test_an_all_split_judge_is_flagged_not_given_a_tight_interval() -> None:
    """47 of 50 prompts split (A in both orders), 1 won, 2 lost: the win rate is 49.0% with a
    tight interval that only measures the judge's indecision."""
    split = [("A", "A")] * 47 + [("A", "B")] + [("B", "A")] * 2
    judgments = [game(f"{i}{o}", f"p{i}", *(("ft", "base") if o == 0 else ("base", "ft")), w)
                 for i, pair in enumerate(split) for o, w in enumerate(pair)]
    s = summarize(judgments, "base", n_boot=200)
    c = s.candidates[0]
    assert c.head_to_head.win_rate == pytest.approx(0.49)
    assert c.head_to_head.undecided_share == pytest.approx(0.94)
    assert c.verdict == "judge split or tied 94% of prompts: no evidence either way"


def test_the_p_0058_case_verdict_interval_and_test_agree() -> None:
    """The issue's case: an interval excluding 50% beside a sign test at p = 0.058 and the
    verdict "cannot tell". Over 50-prompt records with 0, 10 and 20 tied prompts, the Wilson
    interval and the sign test disagree on some (asserted, so the sweep covers the case);
    the verdict and the interval shown beside it follow the test on every one."""
    seen_disagreement = False
    for wins in range(15, 40):
        for ties in (0, 10, 20):
            losses = 50 - ties - wins
            if losses < 0:
                continue
            pairs = [("A", "B")] * wins + [("tie", "tie")] * ties + [("B", "A")] * losses
            judgments = [game(f"{i}{o}", f"p{i}",
                              *(("ft", "base") if o == 0 else ("base", "ft")), w)
                         for i, pair in enumerate(pairs) for o, w in enumerate(pair)]
            c = summarize(judgments, "base", n_boot=100).candidates[0]
            h = c.head_to_head
            rejected = h.p_value < 0.05
            assert (c.verdict in {"better", "worse"}) == rejected
            assert (not c.verdict_interval.contains(0.5)) == rejected
            wilson_excludes = not h.wilson.contains(0.5)
            seen_disagreement |= wilson_excludes != rejected
    assert seen_disagreement  # the old display could contradict itself on these counts


def test_sign_interval_is_clopper_pearson_on_decided_prompts() -> None:
    ci = sps.binomtest(24, 35).proportion_ci(0.95, method="exact")
    low, high = sign_interval(24, 15, 11)
    assert low == pytest.approx((7.5 + 35 * ci.low) / 50, abs=1e-12)
    assert high == pytest.approx((7.5 + 35 * ci.high) / 50, abs=1e-12)


def test_holm_levels_make_intervals_agree_with_holm_decisions() -> None:
    """Random p-values: the interval at each level excludes the null exactly when Holm's
    adjusted p-value is below alpha (checked on the Clopper-Pearson/sign-test pair)."""
    from evalharness.stats.multiple import holm

    rng = np.random.default_rng(3)
    for _ in range(200):
        m = int(rng.integers(1, 8))
        wins = rng.integers(20, 45, m)
        p = [sps.binomtest(int(w), 60).pvalue for w in wins]
        for w, level, adjusted in zip(wins, holm_levels(p, 0.05), holm(p), strict=True):
            low, high = sign_interval(int(w), 0, 60 - int(w), level)
            assert (not low <= 0.5 <= high) == (adjusted < 0.05)


def test_decide_reads_the_interval() -> None:
    h = head_to_head([game("a", "p", "ft", "base", "A"), game("b", "p", "base", "ft", "B")],
                     "ft", "base")
    assert decide(h, h.test_interval) == "cannot tell"


def test_the_issue_record_23_won_16_tied_11_lost() -> None:
    """23 won, 16 tied, 11 lost of 50 prompts: sign test p = binomtest(23, 34) = 0.0576, yet
    the Wilson interval (effective n, ties included) is [50.7, 72.1]. The interval beside the
    verdict is the sign test's: Clopper-Pearson on 23 of 34 mapped with 16 ties held at one
    half, (8 + 34 q) / 50 = [49.6, 72.2], which holds 50%: "cannot tell" everywhere."""
    pairs = [("A", "B")] * 23 + [("tie", "tie")] * 16 + [("B", "A")] * 11
    judgments = [game(f"{i}{o}", f"p{i}", *(("ft", "base") if o == 0 else ("base", "ft")), w)
                 for i, pair in enumerate(pairs) for o, w in enumerate(pair)]
    c = summarize(judgments, "base", n_boot=200).candidates[0]
    h = c.head_to_head
    assert h.p_value == pytest.approx(sps.binomtest(23, 34).pvalue) == pytest.approx(0.0576,
                                                                                     abs=1e-4)
    assert h.wilson.low > 0.5  # the old display's contradiction
    assert round(100 * c.verdict_interval.low, 1) == 49.6
    assert round(100 * c.verdict_interval.high, 1) == 72.2
    assert c.verdict == "cannot tell" and c.verdict_level == 0.95
