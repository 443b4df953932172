"""League ranking: Bradley-Terry strengths fitted by maximum likelihood over all battles.

Every valid game is a battle between the two models shown: candidates against the baseline,
and adapter against adapter where a round robin was judged. The model is

    P(i beats j) = sigmoid(theta_i - theta_j)

with ``theta`` of the baseline fixed at 0, so a strength reads as log-odds of beating the
baseline (``sigmoid(theta)`` is the expected win rate against it). Each game's outcome is the
score of the chosen mode (``games.position_a_score``): hard, a win is 1 and a tie half a win
to each side; soft, the side's soft preference, so the likelihood
``sum_games y log sigmoid(theta_i - theta_j) + (1 - y) log sigmoid(theta_j - theta_i)`` takes
fractional outcomes. The fit is Newton's method on the exact log-likelihood (plus a ``1e-6``
ridge that only matters when a model won or lost every game, where the unpenalised maximum is
at infinity). Intervals come from resampling prompts with replacement: each prompt carries all
its games, for every pair, and all rounds are fitted together as one batch of arrays.

**A perfect or hopeless record.** A model (other than the baseline) that took every point of
every game it played has no finite maximum-likelihood strength, and every bootstrap round
repeats the record, so the percentile interval would be the ridge's value with zero width.
Such a model gets instead a one-sided exact bound: its strength is ``+inf`` (win probability
100%), and its interval is ``[L, +inf]`` where ``L`` is the strength at which a record that
perfect still has a ``(1 - confidence) / 2`` chance (2.5% at 95%) with every opponent at its
fitted strength, i.e. ``sum_j n_j log sigmoid(L - theta_j) = log(0.025)`` over its ``n_j``
games against each opponent ``j``. Against the baseline alone this is the exact
(Clopper-Pearson) lower bound ``0.025 ** (1 / n)`` of the win probability. ``Standing.bound``
is ``"lower"`` for such a model (``"upper"``, interval ``[-inf, U]`` and strength ``-inf``,
for one that lost every point) and the reports print "≥" (or "≤") instead of a point. Its
rank interval still comes from the bootstrap (the ridge keeps the order).

**Near-perfect records and ties only.** A bootstrap round in which a model took every point
(or none) has no finite strength either: it counts as ``+inf`` (``-inf``), so when such
rounds pass the interval's tail the interval is open on that side (``[+1.95, +inf]``)
instead of ending at the ridge's value. A record the resampling cannot vary (every game a
tie) would get a zero-width interval; it gets the Wald interval from the fit's Fisher
information instead (``wald_interval``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import optimize, special
from scipy import stats as sps

from evalharness.errors import UserError
from evalharness.schema import Judgment
from evalharness.stats.games import ScoreMode, group_index, position_a_score
from evalharness.stats.intervals import (
    Interval,
    bootstrap_weights,
    percentile_interval,
)

FloatArray = npt.NDArray[np.float64]

_RIDGE = 1e-6
_OPEN = 1e9
"""Stand-in for an infinite bootstrap strength while taking percentiles."""
_CHUNK_ELEMENTS = 4_000_000
"""Bootstrap rounds are fitted in chunks of about this many (round, i, j) cells."""


@dataclass(frozen=True, eq=False)
class Battles:
    """All valid games as per-prompt win counts between every pair of models."""

    models: tuple[str, ...]
    """Every model that played, sorted."""
    prompt_ids: tuple[str, ...]
    """Every prompt with a valid game, sorted."""
    wins: FloatArray
    """(prompts x models x models): points model i took from model j on the prompt (hard: a
    win is 1, a tie 0.5 to each side; soft: each side's soft preference)."""

    @property
    def n_games(self) -> int:
        """Valid games."""
        return round(float(self.wins.sum()))


def battles_from_judgments(
    judgments: Iterable[Judgment], score: ScoreMode = "hard"
) -> Battles:
    """Collect every valid judgment into per-prompt win counts, each game scored in mode
    ``score`` (``games.position_a_score``: hard 1 / 0.5 / 0, soft the preference).

    >>> from evalharness.schema import Judgment
    >>> b = battles_from_judgments([
    ...     Judgment(key="1", prompt_id="p", judge="j", first="x", second="y", verdict="A",
    ...              winner="A"),
    ...     Judgment(key="2", prompt_id="p", judge="j", first="y", second="x", verdict="tie",
    ...              winner="tie")])
    >>> b.models, b.wins[0].tolist()
    (('x', 'y'), [[0.0, 1.5], [0.5, 0.0]])
    """
    scored = [(j, position_a_score(j, score)) for j in judgments]
    valid = [(j, a_score) for j, a_score in scored if a_score is not None]
    models, _ = group_index([m for j, _ in valid for m in (j.first, j.second)] or [])
    prompts, p_index = group_index([j.prompt_id for j, _ in valid] or [])
    position = {m: i for i, m in enumerate(models)}
    a = np.array([position[j.first] for j, _ in valid], dtype=np.int64)
    b = np.array([position[j.second] for j, _ in valid], dtype=np.int64)
    a_points = np.array([a_score for _, a_score in valid], dtype=np.float64)
    wins = np.zeros((len(prompts), len(models), len(models)))
    np.add.at(wins, (p_index, a, b), a_points)
    np.add.at(wins, (p_index, b, a), 1.0 - a_points)
    return Battles(models=models, prompt_ids=prompts, wins=wins)


def fit_bradley_terry(
    wins: FloatArray, reference: int, *, ridge: float = _RIDGE, iterations: int = 100
) -> FloatArray:
    """Maximum-likelihood Bradley-Terry strengths for one or many win matrices.

    Args:
        wins: (models x models) or (fits x models x models); ``wins[..., i, j]`` is the
            points i took from j.
        reference: index of the model whose strength is fixed at 0.
        ridge: weight of the ``ridge/2 * sum(theta**2)`` penalty.
        iterations: Newton steps at most.

    Returns:
        (models,) or (fits x models) strengths ``theta`` (log-odds against the reference).

    >>> import numpy as np
    >>> theta = fit_bradley_terry(np.array([[0.0, 3.0], [1.0, 0.0]]), reference=1)
    >>> round(float(theta[0]), 4), round(float(np.log(3)), 4)
    (1.0986, 1.0986)
    """
    single = wins.ndim == 2
    w = wins[None] if single else wins
    n_fits, k, _ = w.shape
    n = w + w.transpose(0, 2, 1)
    free = np.array([i for i in range(k) if i != reference], dtype=np.int64)
    theta = np.zeros((n_fits, k))
    won = w.sum(axis=2)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(theta[:, None, :] - theta[:, :, None]))
        grad = won - (n * p).sum(axis=2) - ridge * theta
        v = n * p * (1.0 - p)
        info = -v
        info[:, np.arange(k), np.arange(k)] += v.sum(axis=2) + ridge
        sub = info[:, free[:, None], free[None, :]]
        step = np.linalg.solve(sub, grad[:, free, None])[:, :, 0]
        # Damped: with a model that never lost, the optimum is far and Newton overshoots.
        step = np.clip(step, -3.0, 3.0)
        theta[:, free] += step
        if free.size == 0 or np.max(np.abs(step)) < 1e-10:
            break
    return theta[0] if single else theta


@dataclass(frozen=True)
class Standing:
    """One model's place in the league."""

    model: str
    """The model."""
    strength: float
    """Bradley-Terry ``theta``: log-odds of beating the baseline (baseline: 0)."""
    interval: Interval
    """Bootstrap interval of ``strength``."""
    win_probability: float
    """``sigmoid(strength)``: expected win rate against the baseline."""
    win_probability_interval: Interval
    """Bootstrap interval of ``win_probability`` (``[sigmoid(L), 1]`` under a lower bound)."""
    rank: int
    """1 = strongest."""
    rank_interval: Interval
    """Bootstrap interval of the rank (how settled the place is)."""
    n_games: int
    """Valid games the model played."""
    bound: Literal["lower", "upper"] | None = None
    """``"lower"``: the model took every point, so ``strength`` is ``+inf`` and
    ``interval`` is the one-sided exact bound ``[L, +inf]`` (reports print "≥ L");
    ``"upper"``: it lost every point (``-inf``, ``[-inf, U]``, "≤ U"); ``None``: a finite
    fit with a bootstrap interval."""


@dataclass(frozen=True)
class League:
    """Bradley-Terry standings, strongest first."""

    baseline: str
    """The model whose strength is 0."""
    standings: tuple[Standing, ...]
    """One entry per model, baseline included, strongest first."""
    n_prompts: int
    """Prompts with at least one valid game."""
    n_games: int
    """Valid games."""
    n_boot: int
    """Bootstrap rounds."""
    seed: int
    """Bootstrap seed."""
    confidence: float
    """Interval level."""


def bootstrap_bradley_terry(
    battles: Battles, reference: int, *, n_boot: int, seed: int
) -> FloatArray:
    """Strengths refitted on ``n_boot`` prompt resamples: a (n_boot x models) array.

    A round in which a model took every point it played (or none) has no finite maximum:
    its strength there is ``+inf`` (``-inf``), not the ridge's value, so an interval whose
    upper (lower) end such rounds reach is open on that side.
    """
    n_prompts, k, _ = battles.wins.shape
    weights = bootstrap_weights(n_prompts, n_boot, seed).astype(np.float64)
    flat = battles.wins.reshape(n_prompts, k * k)
    chunk = max(1, _CHUNK_ELEMENTS // max(k * k, 1))
    out = np.empty((n_boot, k))
    for start in range(0, n_boot, chunk):
        resampled = (weights[start : start + chunk] @ flat).reshape(-1, k, k)
        fitted = fit_bradley_terry(resampled, reference)
        won, lost = resampled.sum(axis=2), resampled.sum(axis=1)
        played = (won + lost) > 1e-12
        fitted = np.where(played & (lost <= 1e-12), np.inf, fitted)
        fitted = np.where(played & (won <= 1e-12), -np.inf, fitted)
        fitted[:, reference] = 0.0
        out[start : start + chunk] = fitted
    return out


def strength_interval(samples: FloatArray, confidence: float) -> Interval:
    """Percentile interval of bootstrap strengths that may hold ``+-inf`` (perfect rounds):
    an end that falls among them is infinite.

    >>> import numpy as np
    >>> strength_interval(np.array([1.0] * 90 + [np.inf] * 10), 0.95)
    Interval(low=1.0, high=inf)
    """
    clipped = np.clip(np.nan_to_num(samples, nan=0.0, posinf=_OPEN, neginf=-_OPEN),
                      -_OPEN, _OPEN)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = (float(v) for v in np.percentile(clipped, [tail, 100.0 - tail]))
    return Interval(-np.inf if low <= -_OPEN / 2 else low, np.inf if high >= _OPEN / 2
                    else high)


def wald_interval(total: FloatArray, theta: FloatArray, reference: int, index: int,
                  confidence: float) -> Interval:
    """``theta[index] +- z * se`` with ``se`` from the fit's Fisher information.

    Used where the bootstrap has no spread to show: a record of ties only is the same in
    every resample, yet 64 tied games are not certainty (binomial variance at the fitted
    probability). Against the baseline alone ``se = 1 / sqrt(n p (1 - p))``: 64 ties give
    ``+-1.96 * 0.25``.

    >>> import numpy as np
    >>> w = np.array([[0.0, 32.0], [32.0, 0.0]])
    >>> iv = wald_interval(w, np.zeros(2), 1, 0, 0.95)
    >>> round(iv.high, 4), round(1.959964 * 0.25, 4)
    (0.49, 0.49)
    """
    k = theta.size
    n = total + total.T
    p = 1.0 / (1.0 + np.exp(theta[None, :] - theta[:, None]))
    v = n * p * (1.0 - p)
    info = -v
    info[np.arange(k), np.arange(k)] += v.sum(axis=1)
    free = [i for i in range(k) if i != reference]
    covariance = np.linalg.pinv(info[np.ix_(free, free)])
    se = float(np.sqrt(max(covariance[free.index(index), free.index(index)], 0.0)))
    z = float(sps.norm.ppf(0.5 + confidence / 2.0))
    return Interval(float(theta[index]) - z * se, float(theta[index]) + z * se)


def record_bound(
    strengths: FloatArray, games: FloatArray, tail: float, *, lower: bool = True
) -> float:
    """The one-sided exact bound of a model that won (``lower``) or lost every game.

    Args:
        strengths: fitted strengths of its opponents.
        games: games it played against each of them.
        tail: the chance left to a record that perfect at the bound, e.g. 0.025.
        lower: won every game (a lower bound), else lost every game (an upper bound).

    Returns:
        ``L`` with ``sum_j games_j * log sigmoid(L - strengths_j) = log(tail)`` (won every
        game), or ``U`` with ``sum_j games_j * log sigmoid(strengths_j - U) = log(tail)``.

    >>> import numpy as np
    >>> bound = record_bound(np.array([0.0]), np.array([10.0]), 0.025)
    >>> round(float(1 / (1 + np.exp(-bound))), 4), round(0.025 ** (1 / 10), 4)
    (0.6915, 0.6915)
    """
    sign = 1.0 if lower else -1.0
    theta = sign * strengths[games > 0]
    n = games[games > 0]
    target = float(np.log(tail))

    def excess(x: float) -> float:
        return float(-(n * np.logaddexp(0.0, theta - x)).sum()) - target

    lo, hi = float(theta.min()) - 50.0, float(theta.max()) + 50.0
    while excess(lo) > 0.0:
        lo -= 50.0
    return sign * float(optimize.brentq(excess, lo, hi, xtol=1e-12))


def league_from_battles(
    battles: Battles,
    baseline: str,
    *,
    seed: int = 0,
    n_boot: int = 1000,
    confidence: float = 0.95,
) -> League:
    """Fit the league on ``battles``, with bootstrap intervals over prompts."""
    if baseline not in battles.models:
        raise UserError(
            f"baseline '{baseline}' played no valid game (models seen: "
            f"{', '.join(battles.models) or 'none'}). Fix: pass the baseline's name as it "
            "appears in the judgments' first/second fields."
        )
    ref = battles.models.index(baseline)
    total = battles.wins.sum(axis=0)
    theta = fit_bradley_terry(total, ref)
    boot = bootstrap_bradley_terry(battles, ref, n_boot=n_boot, seed=seed)
    # Rank 1 = strongest; ties in a round share the better rank.
    boot_rank = sps.rankdata(-boot, axis=1, method="min")
    rank = sps.rankdata(-theta, method="min")
    played = total + total.T
    games = played.sum(axis=1)
    tail = (1.0 - confidence) / 2.0
    standings = []
    for i, model in enumerate(battles.models):
        strength = float(theta[i])
        interval = strength_interval(boot[:, i], confidence)
        if i != ref and games[i] > 0 and interval.high - interval.low < 1e-9:
            # Every resample the same record (all ties): the fit's own uncertainty.
            interval = wald_interval(total, theta, ref, i, confidence)
        bound: Literal["lower", "upper"] | None = None
        perfect = total[:, i].sum() <= 1e-12
        if i != ref and games[i] > 0 and (perfect or total[i].sum() <= 1e-12):
            # No finite maximum: a one-sided exact bound, not the ridge's value.
            bound = "lower" if perfect else "upper"
            limit = record_bound(theta, played[i], tail, lower=perfect)
            strength = float("inf") if perfect else float("-inf")
            interval = Interval(limit, float("inf")) if perfect else Interval(float("-inf"), limit)
        standings.append(
            Standing(
                model=model,
                strength=strength,
                interval=interval,
                win_probability=float(special.expit(strength)),
                win_probability_interval=Interval(float(special.expit(interval.low)),
                                                  float(special.expit(interval.high))),
                rank=int(rank[i]),
                rank_interval=percentile_interval(boot_rank[:, i].astype(np.float64), confidence),
                n_games=round(float(games[i])),
                bound=bound,
            )
        )
    standings.sort(key=lambda s: (-s.strength, s.model))
    return League(
        baseline=baseline,
        standings=tuple(standings),
        n_prompts=len(battles.prompt_ids),
        n_games=battles.n_games,
        n_boot=n_boot,
        seed=seed,
        confidence=confidence,
    )


def league(
    judgments: Sequence[Judgment],
    baseline: str,
    *,
    seed: int = 0,
    n_boot: int = 1000,
    confidence: float = 0.95,
    score: ScoreMode = "hard",
) -> League:
    """Bradley-Terry league of every model in ``judgments``, strengths relative to ``baseline``,
    each game scored in mode ``score`` (soft: fractional outcomes).

    Raises:
        UserError: ``baseline`` played no valid game.
    """
    return league_from_battles(
        battles_from_judgments(judgments, score),
        baseline,
        seed=seed,
        n_boot=n_boot,
        confidence=confidence,
    )
