"""Head to head: the numbers a user reads off `evalharness stats`, checked independently."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from evalharness.stats import head_to_head, wilson
from evalharness.stats.intervals import effective_prompts, wilson_scores
from tests.helpers import game


def both_orders(outcomes: list[tuple[str, str]], cand: str = "ft", base: str = "base"):
    """Judgments for prompts p0, p1, ...; each outcome is (cand-first winner, base-first winner)
    as positions "A"/"B"/"tie"/None."""
    out = []
    for i, (w1, w2) in enumerate(outcomes):
        for order, winner in ((0, w1), (1, w2)):
            first, second = (cand, base) if order == 0 else (base, cand)
            out.append(game(f"p{i}-{order}", f"p{i}", first, second, winner))
    return out


WIN, LOSS, TIE = ("A", "B"), ("B", "A"), ("tie", "tie")


def test_worked_example_31_of_50() -> None:
    """31 wins in 50 decided prompts.

    Wilson by hand, z = 1.959964, p = 0.62, n = 50:
    z²/n = 3.841459/50 = 0.076829; denominator 1 + 0.076829 = 1.076829;
    centre = (0.62 + 0.038415) / 1.076829 = 0.611443;
    half = 1.959964 * sqrt(0.62*0.38/50 + 3.841459/10000) / 1.076829
         = 1.959964 * sqrt(0.004712 + 0.000384) / 1.076829 = 0.129939;
    interval = [0.481504, 0.741382] -> 48.2% to 74.1%.
    """
    h = head_to_head(both_orders([WIN] * 31 + [LOSS] * 19), "ft", "base")
    assert h.win_rate == pytest.approx(0.62)
    assert h.wilson.low == pytest.approx(0.481504, abs=1e-6)
    assert h.wilson.high == pytest.approx(0.741372, abs=1e-5)
    assert h.p_value == pytest.approx(sps.binomtest(31, 50, 0.5).pvalue, rel=1e-12)
    assert round(h.p_value, 2) == 0.12
    assert (h.wins, h.ties, h.losses) == (62, 0, 38)
    assert not h.significant


def test_wilson_matches_closed_form_for_many_counts() -> None:
    z = sps.norm.ppf(0.975)
    for k, n in [(0, 10), (3, 10), (10, 10), (31, 50), (120, 200), (799, 800)]:
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        lo, hi = wilson(k, n)
        assert lo == pytest.approx(max(centre - half, 0.0), abs=1e-12)
        assert hi == pytest.approx(min(centre + half, 1.0), abs=1e-12)


def test_sign_test_drops_tied_prompts_and_matches_binomtest() -> None:
    # 20 wins, 8 losses, 6 ties, 6 split prompts (won one order, lost the other).
    split = ("A", "A")  # candidate first wins, baseline first wins: one each
    h = head_to_head(both_orders([WIN] * 20 + [LOSS] * 8 + [TIE] * 6 + [split] * 6), "ft", "base")
    assert (h.prompt_wins, h.prompt_losses, h.prompt_ties) == (20, 8, 12)
    assert h.p_value == pytest.approx(sps.binomtest(20, 28, 0.5).pvalue, rel=1e-12)
    assert h.win_rate == pytest.approx((20 + 0.5 * 12) / 40)
    assert (h.wins, h.ties, h.losses) == (46, 12, 22)


def test_invalid_judgments_are_counted_never_tied() -> None:
    # p0: won both; p1: won once, other invalid -> scored on one game; p2: both invalid.
    h = head_to_head(both_orders([WIN, ("A", None), (None, None)]), "ft", "base")
    assert h.n_invalid == 3
    assert h.n_prompts == 2
    assert h.n_excluded_prompts == 1
    assert h.n_single_game_prompts == 1
    assert h.win_rate == 1.0  # a tie would have pulled it below 1
    assert h.ties == 0


def test_bootstrap_is_seeded_and_brackets_the_rate() -> None:
    games = both_orders([WIN] * 30 + [LOSS] * 15 + [TIE] * 5)
    a = head_to_head(games, "ft", "base", seed=7)
    b = head_to_head(games, "ft", "base", seed=7)
    assert a.bootstrap == b.bootstrap
    others = {head_to_head(games, "ft", "base", seed=s, n_boot=200).bootstrap for s in range(8)}
    assert len(others) > 1  # the seed matters
    assert a.bootstrap.low < a.win_rate < a.bootstrap.high
    # Both intervals describe the same uncertainty: their widths agree to a few points.
    assert abs((a.bootstrap.high - a.bootstrap.low) - (a.wilson.high - a.wilson.low)) < 0.04


def test_effective_n_wilson_narrows_only_when_prompts_tie() -> None:
    decided = np.array([1.0] * 30 + [0.0] * 20)
    assert effective_prompts(decided) == pytest.approx(50.0)
    assert wilson_scores(decided) == pytest.approx(wilson(30, 50))
    with_ties = np.array([1.0] * 25 + [0.5] * 10 + [0.0] * 15)
    plain = wilson(with_ties.sum(), 50)
    eff = wilson_scores(with_ties)
    assert eff.high - eff.low < plain.high - plain.low


def test_soft_win_rate_from_logprob_preferences() -> None:
    # weight_a = P(A better); the candidate is A in the first game and B in the second.
    js = [g for i in range(4) for g in (
        game(f"{i}a", f"p{i}", "ft", "base", "A", weight_a=0.8),
        game(f"{i}b", f"p{i}", "base", "ft", "B", weight_a=0.4))]
    h = head_to_head(js, "ft", "base")
    assert h.soft_win_rate == pytest.approx((0.8 + 0.6) / 2)
    assert h.n_soft_prompts == 4
    assert head_to_head(both_orders([WIN]), "ft", "base").soft_win_rate is None
