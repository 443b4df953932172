"""Length-controlled win rate: what the win rate would be if both answers had equal length.

LLM judges prefer longer answers, so an adapter that just talks more can "win". Following
AlpacaEval 2's idea, but fitted only on the user's own games (no external priors), each
valid game is modelled as

    P(candidate preferred) = sigmoid(b0 + b1 * tanh(d / s))

where ``d`` is the candidate's answer length minus the opponent's (characters) and ``s`` the
standard deviation of ``d`` over the games (the tanh squashes extreme differences so a few
very long answers cannot dominate). Ties enter as half a preference (the likelihood is the
binomial one with fractional outcomes). The length-controlled win rate is the model's
prediction at zero length difference, ``sigmoid(b0)``; its interval comes from refitting on
prompts resampled with replacement (all rounds fitted together by batched Newton steps).

A tiny ridge (``1e-6``) keeps the fit finite when one side wins every game.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from evalharness.stats.games import PairGames, group_index
from evalharness.stats.intervals import Interval, bootstrap_weights, percentile_interval

FloatArray = npt.NDArray[np.float64]

MIN_PROMPTS = 20
"""Fewer prompts than this give no length-controlled win rate (the slope is too loose)."""

_RIDGE = 1e-6


@dataclass(frozen=True)
class LengthControlled:
    """The length-controlled win rate of one candidate against one opponent."""

    candidate: str
    """The model scored."""
    opponent: str
    """The model it played."""
    win_rate: float
    """Predicted preference for the candidate at zero length difference."""
    interval: Interval
    """Percentile bootstrap interval over prompts."""
    raw_win_rate: float
    """Mean game score over the same games, without length control."""
    length_coefficient: float
    """``b1``: log-odds of preference per unit of squashed, standardised length difference
    (positive: the judge prefers the longer answer)."""
    length_scale: float
    """``s``: standard deviation of the length difference, in characters."""
    n_games: int
    """Valid games with both lengths known."""
    n_prompts: int
    """Prompts behind those games."""


def fit_logistic(
    x: FloatArray, y: FloatArray, weights: FloatArray, *, iterations: int = 50
) -> FloatArray:
    """Fit ``P(y) = sigmoid(X @ beta)`` for many weightings of the rows at once.

    Args:
        x: (rows x features) design matrix, with an intercept column if one is wanted.
        y: outcomes in [0, 1] (fractional allowed).
        weights: (fits x rows) non-negative row weights, one row of weights per fit.
        iterations: Newton steps at most.

    Returns:
        (fits x features) coefficients, maximising the weighted log-likelihood minus a tiny
        ridge.

    >>> import numpy as np
    >>> x = np.column_stack([np.ones(6), [-1.0, -1, 1, 1, 1, 1]])
    >>> beta = fit_logistic(x, np.array([0.0, 1, 0, 1, 1, 1]), np.ones((1, 6)))
    >>> np.round(beta, 3).tolist()
    [[0.549, 0.549]]
    >>> round(float(np.log(3) / 2), 3)  # the closed form: half the log-odds of 3/4
    0.549
    """
    n_fits, n_features = weights.shape[0], x.shape[1]
    beta = np.zeros((n_fits, n_features))
    eye = np.eye(n_features)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(beta @ x.T)))
        grad = (weights * (y - p)) @ x - _RIDGE * beta
        hess = np.einsum("br,ri,rj->bij", weights * p * (1.0 - p), x, x) + _RIDGE * eye
        step = np.linalg.solve(hess, grad[:, :, None])[:, :, 0]
        # Damped steps: with (near) separation the optimum is far and Newton overshoots.
        step = np.clip(step, -2.0, 2.0)
        beta = beta + step
        if np.max(np.abs(step)) < 1e-10:
            break
    return beta


def length_controlled(
    games: PairGames,
    *,
    seed: int = 0,
    n_boot: int = 2000,
    confidence: float = 0.95,
    min_prompts: int = MIN_PROMPTS,
) -> LengthControlled | None:
    """The length-controlled win rate, or ``None`` when it cannot be estimated honestly.

    ``None`` when fewer than ``min_prompts`` prompts have a valid game with both answer
    lengths known (judgments without ``first_length``/``second_length`` carry no length).
    """
    diff = games.candidate_length - games.opponent_length
    use = games.valid & ~np.isnan(diff)
    if not use.any():
        return None
    ids, index = group_index([p for p, u in zip(games.prompt_ids, use, strict=True) if u])
    if len(ids) < min_prompts:
        return None
    d = diff[use]
    y = games.score[use]
    scale = float(d.std())
    squashed = np.tanh(d / scale) if scale > 0 else np.zeros_like(d)
    x = np.column_stack([np.ones_like(d), squashed])
    prompt_w = np.vstack(
        [np.ones((1, len(ids))), bootstrap_weights(len(ids), n_boot, seed).astype(np.float64)]
    )
    beta = fit_logistic(x, y, prompt_w[:, index])
    lc = 1.0 / (1.0 + np.exp(-beta[:, 0]))
    return LengthControlled(
        candidate=games.candidate,
        opponent=games.opponent,
        win_rate=float(lc[0]),
        interval=percentile_interval(lc[1:], confidence),
        raw_win_rate=float(y.mean()),
        length_coefficient=float(beta[0, 1]),
        length_scale=scale,
        n_games=int(use.sum()),
        n_prompts=len(ids),
    )
