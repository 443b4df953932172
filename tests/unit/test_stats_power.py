"""Power planning, checked against a brute-force power from scipy.stats.binomtest."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from evalharness.errors import UserError
from evalharness.stats import detectable_win_rate, power_at, prompts_needed
from evalharness.stats.power import critical_count


def brute_power(n: int, q: float, alpha: float = 0.05) -> float:
    """Sum P(k) over every k that binomtest rejects."""
    return float(
        sum(
            sps.binom.pmf(k, n, q) for k in range(n + 1) if sps.binomtest(k, n, 0.5).pvalue <= alpha
        )
    )


def test_rejection_region_is_binomtests() -> None:
    for n in [1, 5, 6, 9, 17, 50, 51, 120, 199, 300]:
        rejects = [k for k in range(n + 1) if sps.binomtest(k, n, 0.5).pvalue <= 0.05]
        c = int(critical_count(np.array([n]), 0.05)[0])
        expected = [k for k in range(n + 1) if k <= c or k >= n - c] if c >= 0 else []
        assert rejects == expected, n


def test_sixty_percent_needs_about_two_hundred_prompts() -> None:
    need = prompts_needed(0.6)
    assert brute_power(need.n_first, 0.6) >= 0.8 > brute_power(need.n_first - 1, 0.6)
    assert all(brute_power(n, 0.6) >= 0.8 for n in range(need.n, need.n + 12))
    assert brute_power(need.n - 1, 0.6) < 0.8
    assert (need.n_first, need.n) == (199, 210)
    assert need.normal_approximation == 194


def test_detectable_win_rate_for_fifty_prompts() -> None:
    found = detectable_win_rate(50)
    assert found.win_rate is not None
    assert brute_power(50, found.win_rate) == pytest.approx(0.8, abs=1e-4)
    assert brute_power(50, found.win_rate - 0.01) < 0.8
    # The README's 31/50 = 62% is inside the noise band for 50 prompts.
    assert found.win_rate > 0.62


def test_tie_rate_power_matches_simulation() -> None:
    """With ties, the analytic power equals the rejection rate of simulated sign tests."""
    rng = np.random.default_rng(0)
    n, win_rate, tie_rate = 120, 0.62, 0.3
    q = (win_rate - tie_rate / 2) / (1 - tie_rate)
    trials = 4000
    tied = rng.random((trials, n)) < tie_rate
    wins = (~tied) & (rng.random((trials, n)) < q)
    decided = (~tied).sum(axis=1)
    c = critical_count(decided, 0.05)
    k = wins.sum(axis=1)
    rejected = (c >= 0) & ((k <= c) | (k >= decided - c))
    assert power_at(n, win_rate, tie_rate=tie_rate) == pytest.approx(rejected.mean(), abs=0.02)


def test_out_of_range_inputs_are_user_errors() -> None:
    for bad in (0.5, 1.2, -0.1):
        with pytest.raises(UserError, match="win rate"):
            prompts_needed(bad)
    with pytest.raises(UserError, match="alpha"):
        prompts_needed(0.6, alpha=1.5)
    with pytest.raises(UserError, match="at least 1"):
        detectable_win_rate(0)
