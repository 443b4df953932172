"""League ranking: Bradley-Terry strengths fitted by maximum likelihood over all battles.

Every valid game is a battle between the two models shown: candidates against the baseline,
and adapter against adapter where a round robin was judged. The model is

    P(i beats j) = sigmoid(theta_i - theta_j)

with ``theta`` of the baseline fixed at 0, so a strength reads as log-odds of beating the
baseline (``sigmoid(theta)`` is the expected win rate against it). A tie counts half a win to
each side. The fit is Newton's method on the exact log-likelihood (plus a ``1e-6`` ridge that
only matters when a model won or lost every game, where the unpenalised maximum is at
infinity). Intervals come from resampling prompts with replacement: each prompt carries all
its games, for every pair, and all rounds are fitted together as one batch of arrays.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

from evalharness.errors import UserError
from evalharness.schema import Judgment
from evalharness.stats.games import group_index
from evalharness.stats.intervals import (
    Interval,
    bootstrap_weights,
    percentile_interval,
)

FloatArray = npt.NDArray[np.float64]

_RIDGE = 1e-6
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
    """(prompts x models x models): points model i took from model j on the prompt (a win
    is 1, a tie 0.5 to each side)."""

    @property
    def n_games(self) -> int:
        """Valid games."""
        return round(float(self.wins.sum()))


def battles_from_judgments(judgments: Iterable[Judgment]) -> Battles:
    """Collect every valid judgment into per-prompt win counts.

    >>> from evalharness.schema import Judgment
    >>> b = battles_from_judgments([
    ...     Judgment(key="1", prompt_id="p", judge="j", first="x", second="y", verdict="A",
    ...              winner="A"),
    ...     Judgment(key="2", prompt_id="p", judge="j", first="y", second="x", verdict="tie",
    ...              winner="tie")])
    >>> b.models, b.wins[0].tolist()
    (('x', 'y'), [[0.0, 1.5], [0.5, 0.0]])
    """
    valid = [j for j in judgments if j.winner is not None]
    models, _ = group_index([m for j in valid for m in (j.first, j.second)] or [])
    prompts, p_index = group_index([j.prompt_id for j in valid] or [])
    position = {m: i for i, m in enumerate(models)}
    a = np.array([position[j.first] for j in valid], dtype=np.int64)
    b = np.array([position[j.second] for j in valid], dtype=np.int64)
    a_points = np.array(
        [{"A": 1.0, "B": 0.0, "tie": 0.5}[str(j.winner)] for j in valid], dtype=np.float64
    )
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
    """Bootstrap interval of ``win_probability``."""
    rank: int
    """1 = strongest."""
    rank_interval: Interval
    """Bootstrap interval of the rank (how settled the place is)."""
    n_games: int
    """Valid games the model played."""


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
    """Strengths refitted on ``n_boot`` prompt resamples: a (n_boot x models) array."""
    n_prompts, k, _ = battles.wins.shape
    weights = bootstrap_weights(n_prompts, n_boot, seed).astype(np.float64)
    flat = battles.wins.reshape(n_prompts, k * k)
    chunk = max(1, _CHUNK_ELEMENTS // max(k * k, 1))
    out = np.empty((n_boot, k))
    for start in range(0, n_boot, chunk):
        resampled = (weights[start : start + chunk] @ flat).reshape(-1, k, k)
        out[start : start + chunk] = fit_bradley_terry(resampled, reference)
    return out


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
    games = (total + total.T).sum(axis=1)
    standings = []
    for i, model in enumerate(battles.models):
        interval = percentile_interval(boot[:, i], confidence)
        standings.append(
            Standing(
                model=model,
                strength=float(theta[i]),
                interval=interval,
                win_probability=float(1.0 / (1.0 + np.exp(-theta[i]))),
                win_probability_interval=Interval(
                    float(1.0 / (1.0 + np.exp(-interval.low))),
                    float(1.0 / (1.0 + np.exp(-interval.high))),
                ),
                rank=int(rank[i]),
                rank_interval=percentile_interval(boot_rank[:, i].astype(np.float64), confidence),
                n_games=round(float(games[i])),
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
) -> League:
    """Bradley-Terry league of every model in ``judgments``, strengths relative to ``baseline``.

    Raises:
        UserError: ``baseline`` played no valid game.
    """
    return league_from_battles(
        battles_from_judgments(judgments),
        baseline,
        seed=seed,
        n_boot=n_boot,
        confidence=confidence,
    )
