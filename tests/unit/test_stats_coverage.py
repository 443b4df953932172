"""Coverage: 95% intervals must contain the true win rate about 95% of the time.

Simulated judges (fixed seed) with ties and with position-split prompts, n in {50, 200,
800}. The bootstrap uses the library's own resampler and percentile rule; datasets share one
resample matrix per n, which leaves each dataset's interval a valid bootstrap interval and
makes the whole check take a few seconds. 4,000 datasets put the Monte Carlo error of
each coverage at about 0.35 points.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from evalharness.stats.intervals import bootstrap_weights, effective_prompts, wilson

DATASETS = 4000
ROUNDS = 1000
# (P(win), P(tie), P(loss)) per game; the true win rate is P(win) + P(tie)/2.
JUDGES = {
    "decided": (0.6, 0.0, 0.4),
    "ties": (0.5, 0.2, 0.3),
    "many ties": (0.35, 0.4, 0.25),
}


def simulate(probs: tuple[float, float, float], n: int, rng: np.random.Generator):
    """Per-prompt scores: mean of two independently judged games (order effects split)."""
    games = rng.choice([1.0, 0.5, 0.0], p=probs, size=(DATASETS, n, 2))
    return games.mean(axis=2)


@pytest.mark.parametrize("judge", sorted(JUDGES))
@pytest.mark.parametrize("n", [50, 200, 800])
def test_intervals_cover_the_true_win_rate(judge: str, n: int) -> None:
    probs = JUDGES[judge]
    truth = probs[0] + probs[1] / 2
    rng = np.random.default_rng(20240 + n)
    scores = simulate(probs, n, rng)
    wilson_hits = 0
    for row in scores:
        lo, hi = wilson(row.mean() * effective_prompts(row), effective_prompts(row))
        wilson_hits += lo <= truth <= hi
    weights = bootstrap_weights(n, ROUNDS, seed=n).astype(np.float64)
    boot = (weights @ scores.T) / n
    low, high = np.percentile(boot, [2.5, 97.5], axis=0)
    boot_cover = float(np.mean((low <= truth) & (truth <= high)))
    wilson_cover = wilson_hits / DATASETS
    assert 0.93 <= wilson_cover <= 0.97, wilson_cover
    assert 0.93 <= boot_cover <= 0.97, boot_cover


def test_textbook_wilson_exact_coverage_for_decided_prompts() -> None:
    """Exact (not simulated) coverage of Wilson on plain win/loss prompts, summed over k."""
    for n in (50, 200, 800):
        for truth in (0.55, 0.6, 0.7):
            k = np.arange(n + 1)
            covered = np.array([wilson(int(i), n).contains(truth) for i in k])
            coverage = float(sps.binom.pmf(k, n, truth)[covered].sum())
            assert 0.93 <= coverage <= 0.97, (n, truth, coverage)
