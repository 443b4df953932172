"""Confidence intervals and the prompt bootstrap shared by every statistic.

The bootstrap resamples prompts, not games: a prompt's two games share the answers and so
are not independent. Every resample is a row of a multinomial count matrix, so all rounds of
any statistic that is a weighted sum over prompts are one matrix product. The same seed and
the same prompt order give the same resamples, which is what pairs two statistics.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class Interval(NamedTuple):
    """A two-sided confidence interval."""

    low: float
    """Lower bound."""
    high: float
    """Upper bound."""

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies inside (bounds included)."""
        return self.low <= value <= self.high


NAN_INTERVAL = Interval(float("nan"), float("nan"))
"""What an interval is when there is no data to compute it from."""


def z_value(confidence: float) -> float:
    """Two-sided normal quantile: ``z_value(0.95)`` is 1.95996...

    >>> round(z_value(0.95), 6)
    1.959964
    """
    return float(sps.norm.ppf(0.5 + confidence / 2.0))


def wilson(successes: float, n: float, confidence: float = 0.95) -> Interval:
    """Wilson score interval for a proportion; ``successes`` may be fractional (ties as half).

    ``center = (p + z²/2n) / (1 + z²/n)``, ``half = z·sqrt(p(1-p)/n + z²/4n²) / (1 + z²/n)``.

    >>> lo, hi = wilson(31, 50)
    >>> round(lo, 4), round(hi, 4)
    (0.4815, 0.7414)
    >>> wilson(0, 0)
    Interval(low=nan, high=nan)
    """
    if n <= 0:
        return NAN_INTERVAL
    z = z_value(confidence)
    p = successes / n
    denom = 1.0 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(max(p * (1.0 - p), 0.0) / n + z * z / (4.0 * n * n)) / denom
    return Interval(float(max(center - half, 0.0)), float(min(center + half, 1.0)))


def effective_prompts(scores: FloatArray) -> float:
    """How many decided prompts the scores are worth: ``n * p(1-p) / variance``.

    A prompt that is a plain win or loss varies as a coin does, ``p(1-p)``; a prompt that
    tied or split its two games varies less, so it carries more information than the coin
    count says. When every score is 0 or 1 the variance (population form) is exactly
    ``p(1-p)`` and this is ``n``. With no variance at all it is ``n`` (the conservative
    choice).

    >>> effective_prompts(np.array([1.0, 1, 0, 0]))
    4.0
    >>> effective_prompts(np.array([1.0, 0.5, 0.5, 0]))
    8.0
    """
    n = scores.size
    p = float(scores.mean()) if n else 0.0
    variance = float(scores.var()) if n else 0.0
    if variance <= 0.0:
        return float(n)
    return n * p * (1.0 - p) / variance


def wilson_scores(scores: FloatArray, confidence: float = 0.95) -> Interval:
    """Wilson interval of the mean of per-prompt scores in [0, 1] (ties as half).

    The textbook Wilson interval with ``n`` replaced by ``effective_prompts(scores)``: for
    prompts that are all plain wins or losses it *is* the textbook interval; with ties and
    split prompts it keeps its 95% coverage instead of growing too wide.

    >>> lo, hi = wilson_scores(np.array([1.0] * 31 + [0.0] * 19))
    >>> round(lo, 4), round(hi, 4)
    (0.4815, 0.7414)
    """
    n_eff = effective_prompts(scores)
    if scores.size == 0:
        return NAN_INTERVAL
    return wilson(float(scores.mean()) * n_eff, n_eff, confidence)


def bootstrap_weights(n_items: int, n_boot: int, seed: int) -> IntArray:
    """``n_boot`` resamples of ``n_items`` prompts as a (n_boot x n_items) count matrix.

    Row ``b`` says how many times each prompt was drawn in round ``b``; every row sums to
    ``n_items``. The same arguments give the same (read-only, cached) matrix: a summary
    draws it once for every candidate with the same number of prompts.

    >>> w = bootstrap_weights(5, 3, seed=0)
    >>> w.shape, w.sum(axis=1).tolist()
    ((3, 5), [5, 5, 5])
    """
    return _bootstrap_weights(n_items, n_boot, seed)


@functools.lru_cache(maxsize=8)
def _bootstrap_weights(n_items: int, n_boot: int, seed: int) -> IntArray:
    rng = np.random.default_rng(seed)
    if n_items == 0:
        weights = np.zeros((n_boot, 0), dtype=np.int64)
    else:
        weights = rng.multinomial(n_items, np.full(n_items, 1.0 / n_items),
                                  size=n_boot).astype(np.int64)
    weights.flags.writeable = False
    return weights


def percentile_interval(samples: FloatArray, confidence: float = 0.95) -> Interval:
    """Percentile interval of bootstrap ``samples`` (NaN rounds ignored).

    >>> low, high = percentile_interval(np.arange(101, dtype=float), 0.9)
    >>> round(low, 6), round(high, 6)
    (5.0, 95.0)
    """
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return NAN_INTERVAL
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return Interval(float(low), float(high))


def weighted_means(weights: IntArray | FloatArray, values: FloatArray) -> FloatArray:
    """Bootstrap means of NaN-holding ``values`` (statistics x items) under ``weights``.

    Returns a (rounds x statistics) array; a round that drew none of a statistic's non-NaN
    items gives NaN.
    """
    present = ~np.isnan(values)
    filled = np.where(present, values, 0.0)
    w = weights.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        means: FloatArray = (w @ filled.T) / (w @ present.T.astype(np.float64))
    return means
