"""Power planning: how many prompts tell a given win rate from 50%?

The test planned for is the one ``stats`` runs: the exact two-sided sign test on prompts
against 50% (see ``headtohead``). For ``n`` decided prompts it rejects when the number of
wins ``k`` has ``2 * P(Binomial(n, 1/2) <= min(k, n - k)) <= alpha``; its power at a true
win probability ``q`` is the exact binomial probability of that rejection region.

Ties: with tie rate ``t`` (share of prompts scored exactly 0.5), a prompt is decided with
probability ``1 - t``; among decided prompts the candidate wins with probability
``q = (w - t/2) / (1 - t)`` for a win rate ``w`` (ties as half). The number of decided prompts
is itself binomial, and the power averages over it.

Exact power is not monotone in ``n`` (the discrete rejection region makes a saw-tooth), so
``prompts_needed`` reports the smallest ``n`` from which the power stays at or above the
target for every larger ``n`` too, plus the first ``n`` that reaches it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import numpy.typing as npt
from scipy import optimize
from scipy import stats as sps

from evalharness.errors import UserError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_TOLERANCE = 1e-7
"""Relative slack on the alpha comparison, the same as scipy.stats.binomtest uses."""


def critical_count(n: IntArray, alpha: float) -> IntArray:
    """Largest ``c`` such that ``k <= c`` (and, by symmetry, ``k >= n - c``) rejects; -1: none.

    >>> import numpy as np
    >>> critical_count(np.array([5, 6, 50]), 0.05).tolist()
    [-1, 0, 17]
    """
    n = np.asarray(n, dtype=np.int64)
    c = sps.binom.ppf(alpha / 2.0, n, 0.5).astype(np.int64)
    # ppf gives the smallest c with cdf >= alpha/2; step back while the two-sided p exceeds it.
    for _ in range(2):
        too_big = 2.0 * sps.binom.cdf(c, n, 0.5) > alpha * (1.0 + _TOLERANCE)
        c = np.where(too_big, c - 1, c)
    return np.where(2 * c >= n, -1, c).astype(np.int64)


def exact_power(n: IntArray, q: float, alpha: float) -> FloatArray:
    """Power of the exact two-sided sign test with ``n`` decided prompts, win probability q.

    >>> round(float(exact_power(np.array([50]), 0.5, 0.05)[0]), 4)  # size <= alpha
    0.0328
    """
    n = np.asarray(n, dtype=np.int64)
    c = critical_count(n, alpha)
    power = sps.binom.cdf(c, n, q) + sps.binom.sf(n - c - 1, n, q)
    return np.where(c < 0, 0.0, power).astype(np.float64)


def power_at(n: int, win_rate: float, *, alpha: float = 0.05, tie_rate: float = 0.0) -> float:
    """Power of the sign test on ``n`` prompts when the true win rate (ties half) is given.

    >>> round(power_at(50, 0.62), 3)
    0.335
    """
    _check(win_rate, alpha, 0.8, tie_rate)
    q = (win_rate - tie_rate / 2.0) / (1.0 - tie_rate)
    if tie_rate == 0.0:
        return float(exact_power(np.array([n]), q, alpha)[0])
    m = np.arange(n + 1)
    return float(sps.binom.pmf(m, n, 1.0 - tie_rate) @ exact_power(m, q, alpha))


def _check(win_rate: float, alpha: float, power: float, tie_rate: float) -> None:
    problems = []
    if not 0.0 < alpha < 1.0:
        problems.append(f"alpha {alpha} is not between 0 and 1")
    if not 0.0 < power < 1.0:
        problems.append(f"power {power} is not between 0 and 1")
    if not 0.0 <= tie_rate < 1.0:
        problems.append(f"tie rate {tie_rate} is not in [0, 1)")
    elif not tie_rate / 2.0 <= win_rate <= 1.0 - tie_rate / 2.0 or win_rate == 0.5:
        problems.append(
            f"win rate {win_rate} is not a distinguishable alternative: it must differ from "
            f"0.5 and lie in [{tie_rate / 2:g}, {1 - tie_rate / 2:g}] with tie rate {tie_rate:g}"
        )
    if problems:
        raise UserError("; ".join(problems) + ". Fix: e.g. --win-rate 0.6 --alpha 0.05 --power 0.8")


@dataclass(frozen=True)
class PromptsNeeded:
    """Prompts needed to detect a win rate with the exact sign test."""

    win_rate: float
    """The true win rate planned for (ties as half)."""
    alpha: float
    """Two-sided significance level."""
    power: float
    """Target power."""
    tie_rate: float
    """Share of prompts expected to score exactly 0.5."""
    n: int
    """Smallest n from which the power stays >= target for all larger n: plan for this."""
    n_first: int
    """Smallest n whose power reaches the target (a larger n may dip below it again)."""
    achieved_power: float
    """Exact power at ``n``."""
    normal_approximation: int
    """The textbook normal-approximation answer, for comparison."""


def _power_curve(ns: IntArray, win_rate: float, alpha: float, tie_rate: float) -> FloatArray:
    q = (win_rate - tie_rate / 2.0) / (1.0 - tie_rate)
    if tie_rate == 0.0:
        return exact_power(ns, q, alpha)
    top = int(ns.max())
    by_m = exact_power(np.arange(top + 1), q, alpha)
    out = np.empty(ns.size)
    for i, n in enumerate(ns):
        # Decided prompts concentrate within a few sd of n(1-t): sum only there.
        sd = np.sqrt(n * tie_rate * (1 - tie_rate))
        lo = max(0, int(n * (1 - tie_rate) - 10 * sd - 10))
        hi = min(int(n), int(n * (1 - tie_rate) + 10 * sd + 10))
        m = np.arange(lo, hi + 1)
        out[i] = sps.binom.pmf(m, n, 1.0 - tie_rate) @ by_m[m]
    return out


def prompts_needed(
    win_rate: float, *, alpha: float = 0.05, power: float = 0.8, tie_rate: float = 0.0
) -> PromptsNeeded:
    """Prompts needed so the sign test detects ``win_rate`` with the given power.

    >>> r = prompts_needed(0.6)
    >>> r.n, r.n_first, r.normal_approximation
    (210, 199, 194)

    Raises:
        UserError: a rate or level out of range.
    """
    _check(win_rate, alpha, power, tie_rate)
    z_a, z_b = sps.norm.ppf(1 - alpha / 2), sps.norm.ppf(power)
    q = (win_rate - tie_rate / 2.0) / (1.0 - tie_rate)
    decided = (z_a * 0.5 + z_b * np.sqrt(q * (1 - q))) ** 2 / (q - 0.5) ** 2
    approx = int(np.ceil(decided / (1.0 - tie_rate)))
    # Scan a window around the approximation wide enough to hold the saw-tooth's last dip.
    ns = np.arange(1, int(approx * 1.5) + 60, dtype=np.int64)
    curve = _power_curve(ns, win_rate, alpha, tie_rate)
    reached = curve >= power
    if not reached.any():  # pragma: no cover - the window is generous
        raise UserError(f"win rate {win_rate} needs more prompts than this planner scans.")
    first = int(ns[np.argmax(reached)])
    below = np.nonzero(~reached)[0]
    stays = int(ns[below[-1] + 1]) if below.size else 1
    return PromptsNeeded(
        win_rate=win_rate,
        alpha=alpha,
        power=power,
        tie_rate=tie_rate,
        n=stays,
        n_first=first,
        achieved_power=float(curve[stays - 1]),
        normal_approximation=approx,
    )


@dataclass(frozen=True)
class DetectableWinRate:
    """The smallest win rate the sign test detects with ``n`` prompts."""

    n: int
    """Prompts."""
    alpha: float
    """Two-sided significance level."""
    power: float
    """Target power."""
    tie_rate: float
    """Share of prompts expected to score exactly 0.5."""
    win_rate: float | None
    """Smallest win rate above 50% detected with the target power; None if none is."""


def _gap(win_rate: float, n: int, alpha: float, tie_rate: float, target: float) -> float:
    return power_at(n, win_rate, alpha=alpha, tie_rate=tie_rate) - target


def detectable_win_rate(
    n: int, *, alpha: float = 0.05, power: float = 0.8, tie_rate: float = 0.0
) -> DetectableWinRate:
    """Smallest win rate that ``n`` prompts detect (two-sided, exact sign test).

    By symmetry, 1 minus it is the largest losing rate detected.

    >>> round(detectable_win_rate(50).win_rate, 3)
    0.704

    Raises:
        UserError: ``n`` below 1 or a level out of range.
    """
    if n < 1:
        raise UserError(f"--n {n}: need at least 1 prompt. Fix: pass a positive number.")
    _check(0.75, alpha, power, tie_rate)
    high = 1.0 - tie_rate / 2.0
    gap = partial(_gap, n=n, alpha=alpha, tie_rate=tie_rate, target=power)
    if gap(high) < 0:
        return DetectableWinRate(n, alpha, power, tie_rate, None)
    low = 0.5 + 1e-9
    rate = float(optimize.brentq(gap, low, high, xtol=1e-6))
    return DetectableWinRate(n, alpha, power, tie_rate, rate)
