"""Two adapters on the same prompts: is one really better than the other?

Both adapters were judged against the same baseline on the same prompts, so their per-prompt
scores are paired: a prompt that is hard for one is often hard for the other. Comparing the
two win rates as if independent would waste that. Here, on the prompts both have:

- the **difference** of win rates (a minus b) with a **paired bootstrap** interval (the same
  resampled prompts for both);
- an **exact sign test** on per-prompt outcomes: a prompt where a scored higher than b counts
  for a, lower for b, equal is dropped; ``p = binomtest(a_better, a_better + b_better)``.
  When every prompt score is a plain win or loss this is exactly the exact McNemar test on
  the discordant prompts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evalharness.stats.games import PromptScores
from evalharness.stats.headtohead import sign_test
from evalharness.stats.intervals import (
    NAN_INTERVAL,
    Interval,
    bootstrap_weights,
    percentile_interval,
)


@dataclass(frozen=True)
class PairedComparison:
    """Adapter ``a`` against adapter ``b``, each measured against the same opponent."""

    a: str
    """First adapter."""
    b: str
    """Second adapter."""
    opponent: str
    """The model both played (the baseline)."""
    n_prompts: int
    """Prompts both adapters have a score on."""
    win_rate_a: float
    """a's win rate on those prompts."""
    win_rate_b: float
    """b's win rate on those prompts."""
    difference: float
    """``win_rate_a - win_rate_b``."""
    interval: Interval
    """Paired bootstrap interval of the difference."""
    a_better: int
    """Prompts where a scored higher than b."""
    b_better: int
    """Prompts where b scored higher than a."""
    same: int
    """Prompts where both scored the same (dropped by the sign test)."""
    p_value: float
    """Exact two-sided sign test (McNemar) of ``a_better`` vs ``b_better``."""
    confidence: float
    """Interval level."""


def paired_comparison(
    a: PromptScores,
    b: PromptScores,
    *,
    seed: int = 0,
    n_boot: int = 2000,
    confidence: float = 0.95,
) -> PairedComparison:
    """Compare two adapters' per-prompt scores on their common prompts.

    >>> import numpy as np
    >>> nan = np.full(4, np.nan)
    >>> a = PromptScores("a", "base", ("1", "2", "3", "4"), np.array([1, 1, 1, .5]),
    ...                  np.full(4, 2), nan, ())
    >>> b = PromptScores("b", "base", ("1", "2", "3", "4"), np.array([0, 0, 1, .5]),
    ...                  np.full(4, 2), nan, ())
    >>> c = paired_comparison(a, b)
    >>> c.difference, c.a_better, c.b_better, c.p_value
    (0.5, 2, 0, 0.5)
    """
    common = sorted(set(a.prompt_ids) & set(b.prompt_ids))
    ia = {p: i for i, p in enumerate(a.prompt_ids)}
    ib = {p: i for i, p in enumerate(b.prompt_ids)}
    sa = a.score[[ia[p] for p in common]] if common else np.zeros(0)
    sb = b.score[[ib[p] for p in common]] if common else np.zeros(0)
    n = len(common)
    diff = sa - sb
    if n:
        weights = bootstrap_weights(n, n_boot, seed)
        interval = percentile_interval((weights @ diff) / n, confidence)
        rate_a, rate_b = float(sa.mean()), float(sb.mean())
    else:
        interval, rate_a, rate_b = NAN_INTERVAL, float("nan"), float("nan")
    a_better, b_better = int((diff > 0).sum()), int((diff < 0).sum())
    return PairedComparison(
        a=a.candidate,
        b=b.candidate,
        opponent=a.opponent,
        n_prompts=n,
        win_rate_a=rate_a,
        win_rate_b=rate_b,
        difference=rate_a - rate_b,
        interval=interval,
        a_better=a_better,
        b_better=b_better,
        same=n - a_better - b_better,
        p_value=sign_test(a_better, b_better),
        confidence=confidence,
    )
