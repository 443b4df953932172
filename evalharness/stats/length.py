"""Length-controlled win rate: what the win rate would be if both answers had equal length.

LLM judges prefer longer answers, so an adapter that just talks more can "win". This is the
AlpacaEval 2 design (Dubois et al. 2024, "Length-Controlled AlpacaEval"), fitted on the
user's own games only: one joint, regularised logistic model over every candidate played
against the same baseline,

    P(candidate m preferred on prompt q) = sigmoid(a_m + b_m * tanh(d / s_m) + c_q)

where ``d`` is the candidate's answer length minus the baseline's (characters), ``s_m`` the
standard deviation of ``d`` over candidate m's games (the tanh squashes extreme differences
so a few very long answers cannot dominate), ``a_m`` the candidate's intercept, ``b_m`` its
length coefficient and ``c_q`` the prompt's difficulty, shared by every candidate. With a
single candidate the difficulty term cannot be told apart from the outcome itself, so it is
left out and ``LengthControlled.note`` says so.

The target is the soft preference (the judge's probability that the candidate's answer is
better) when every game used has one, the hard verdict otherwise (win 1, tie 0.5, loss 0);
either way the likelihood is the binomial one with fractional outcomes. The
length-controlled win rate is the prediction at zero length difference averaged over the
candidate's prompts, ``mean_q sigmoid(a_m + c_q)``; its interval comes from refitting on
prompts resampled with replacement (every candidate's games on a drawn prompt travel
together, so the shared difficulties are resampled consistently).

Regularisation (L2, i.e. a normal prior on each coefficient; penalty ``lambda/2 * x**2`` on
the summed log-likelihood): ``a_m`` and ``b_m`` 0.01 (prior sd 10: all but free; a stronger
pull on ``b_m`` biases LC, because a verbose candidate's squashed differences are mostly
positive and a shrunken slope moves into the intercept), ``c_q`` 1.0 (prompt difficulties of
about +-1 log-odds; it also fixes the level shared by intercepts and difficulties). The fit
is Newton's method on the whole design, with the prompt block eliminated by its Schur
complement so a step costs (2 x candidates)^2 x prompts. The bootstrap refits every round to
the same fixed point (to 1e-5 in log-odds) but faster (``bootstrap_length_glm``):
quasi-Newton steps from the full-data fit, with each round's Hessian approximated once at
that fit under the round's weights (exact prompt block and per-candidate 2x2 blocks, the
coupling through the shared difficulties by its leading rank-one part), the gradients in
single precision; a round that does not converge is refitted exactly. 57 candidates x 805
prompts with 1,000 rounds take about 3 s instead of about 100 s.

**Separation.** When a candidate's longer answers (almost) all win and its shorter ones
(almost) all lose, the rate "at equal length" sits where there are no informative games and
any value fits: an unpenalised fit drives the length coefficient to infinity (the published
near-separation case: 31 longer answers all won, 772 shorter nearly all lost, slope 98.6,
"LC" 66% from a raw 4%). Each candidate's games are therefore first fitted alone with an
(almost) unpenalised intercept and slope; a slope beyond ``SEPARATION_SLOPE`` (one standard
deviation of length multiplying the odds by more than e^10) marks the candidate's rate as
unreliable: ``win_rate`` and its interval are NaN and ``unreliable`` gives the reason. Such a
candidate is left out of the joint fit, so it cannot distort the shared difficulties.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import special

from evalharness.stats.games import PairGames, group_index
from evalharness.stats.intervals import (
    NAN_INTERVAL,
    Interval,
    bootstrap_weights,
    percentile_interval,
)

FloatArray = npt.NDArray[np.float64]
Score = Literal["soft", "hard"]

MIN_PROMPTS = 20
"""Fewer prompts than this give no length-controlled win rate (the slope is too loose)."""

RIDGE_INTERCEPT = 0.01
"""L2 strength on each candidate's intercept ``a_m``."""
RIDGE_LENGTH = 0.01
"""L2 strength on each candidate's length coefficient ``b_m``."""
RIDGE_DIFFICULTY = 1.0
"""L2 strength on each prompt's difficulty ``c_q``."""
SEPARATION_SLOPE = 10.0
"""A candidate's unpenalised length slope beyond this marks its rate unreliable."""

_RIDGE = 1e-6
_CELL_CHUNK = 2_000_000
"""Bootstrap rounds are fitted in chunks of about this many (round, candidate, prompt) cells."""


@dataclass(frozen=True)
class LengthControlled:
    """The length-controlled win rate of one candidate against one opponent."""

    candidate: str
    """The model scored."""
    opponent: str
    """The model it played."""
    win_rate: float
    """Predicted preference for the candidate at zero length difference, averaged over its
    prompts; NaN when ``unreliable``."""
    interval: Interval
    """Percentile bootstrap interval over prompts; NaN when ``unreliable``."""
    raw_win_rate: float
    """Mean target (soft preference or hard score) over the same games, without control."""
    length_coefficient: float
    """``b_m``: log-odds of preference per unit of squashed, standardised length difference
    (positive: the judge prefers the longer answer). When ``unreliable``, the unpenalised
    slope that revealed the separation."""
    length_scale: float
    """``s_m``: standard deviation of the length difference, in characters."""
    n_games: int
    """Games with a target and both lengths known."""
    n_prompts: int
    """Prompts behind those games."""
    score: Score = "hard"
    """What was fitted: ``soft`` preferences or ``hard`` verdicts (ties as 0.5)."""
    prompt_difficulty: bool = False
    """Whether the fit had the per-prompt difficulty term (it needs two candidates or more)."""
    note: str | None = None
    """What a reader should know about the fit (e.g. why there is no difficulty term)."""
    unreliable: str | None = None
    """Why no rate is given, when the games cannot identify it (near-separation)."""

    def shown(self, rate: Callable[[float, Interval], str]) -> str:
        """The table cell: the rate with its interval (``rate`` formats them), or why it is
        unreliable instead of a number."""
        if self.unreliable:
            return "unreliable (see note)"  # the reason is a sentence: printed below tables
        return rate(self.win_rate, self.interval)


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


def fit_length_glm(
    grid_count: FloatArray,
    grid_target: FloatArray,
    squashed: FloatArray,
    prompt_weights: FloatArray,
    *,
    difficulty: bool,
    start: tuple[FloatArray, FloatArray, FloatArray] | None = None,
    iterations: int = 60,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Penalised maximum likelihood of the joint length GLM for many prompt weightings.

    Args:
        grid_count: (K x Q) games per candidate and prompt.
        grid_target: (K x Q) mean target per cell, in [0, 1].
        squashed: (K x Q) squashed length difference per cell.
        prompt_weights: (R x Q) weight of each prompt in each of R fits.
        difficulty: fit the per-prompt term ``c_q`` (else it is held at 0).
        start: (a, b, c) of shapes (K,), (K,), (Q,) to start every fit from (warm start).
        iterations: Newton steps at most.

    Returns:
        ``a`` (R x K), ``b`` (R x K), ``c`` (R x Q).

    >>> import numpy as np
    >>> count = np.ones((1, 4)); y = np.array([[0.0, 1, 1, 1]]); x = np.zeros((1, 4))
    >>> a, b, c = fit_length_glm(count, y, x, np.ones((1, 4)), difficulty=False)
    >>> round(float(a[0, 0]), 3)  # 3 - 4 * sigmoid(a) = 0.01 * a: log(3) = 1.099 less ridge
    1.084
    """
    n_fits = prompt_weights.shape[0]
    k, q = grid_count.shape
    if start is None:
        a, b, c = np.zeros((n_fits, k)), np.zeros((n_fits, k)), np.zeros((n_fits, q))
    else:
        a = np.tile(start[0], (n_fits, 1))
        b = np.tile(start[1], (n_fits, 1))
        c = np.tile(start[2], (n_fits, 1))
    w = prompt_weights[:, None, :] * grid_count[None]
    x = squashed[None]
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(a[:, :, None] + b[:, :, None] * x + c[:, None, :])))
        res = w * (grid_target[None] - p)
        v = w * p * (1.0 - p)
        vx = v * x
        g_a = res.sum(axis=2) - RIDGE_INTERCEPT * a
        g_b = (res * x).sum(axis=2) - RIDGE_LENGTH * b
        h_aa = v.sum(axis=2) + RIDGE_INTERCEPT
        h_ab = vx.sum(axis=2)
        h_bb = (vx * x).sum(axis=2) + RIDGE_LENGTH
        if difficulty:
            # Newton on (a, b, c) with the diagonal prompt block eliminated (Schur
            # complement): solve for the 2K candidate coefficients, then back-substitute.
            g_c = res.sum(axis=1) - RIDGE_DIFFICULTY * c
            d = v.sum(axis=1) + RIDGE_DIFFICULTY
            cross = np.concatenate([v, vx], axis=1)  # (R, 2K, Q)
            scaled = cross / d[:, None, :]
            # A contiguous right operand keeps the batched product on BLAS (numpy falls back
            # to a slow loop for a transposed view).
            schur = -np.matmul(scaled, np.ascontiguousarray(cross.transpose(0, 2, 1)))
            diag = np.arange(k)
            schur[:, diag, diag] += h_aa
            schur[:, diag + k, diag + k] += h_bb
            schur[:, diag, diag + k] += h_ab
            schur[:, diag + k, diag] += h_ab
            rhs = np.concatenate([g_a, g_b], axis=1) - np.einsum("rkq,rq->rk", scaled, g_c)
            step = np.linalg.solve(schur, rhs[:, :, None])[:, :, 0]
            step_c = (g_c - np.einsum("rkq,rk->rq", cross, step)) / d
        else:
            # Candidates are independent: one 2x2 solve each, in closed form.
            det = h_aa * h_bb - h_ab * h_ab
            step = np.concatenate(
                [(h_bb * g_a - h_ab * g_b) / det, (h_aa * g_b - h_ab * g_a) / det], axis=1
            )
            step_c = np.zeros_like(c)
        # Damped: a far optimum (a candidate that lost nearly everything) makes Newton
        # overshoot; the ridge keeps every optimum finite.
        step = np.clip(step, -2.0, 2.0)
        step_c = np.clip(step_c, -2.0, 2.0)
        a, b, c = a + step[:, :k], b + step[:, k:], c + step_c
        if max(float(np.max(np.abs(step), initial=0.0)), float(np.max(np.abs(step_c),
                                                                         initial=0.0))) < 1e-6:
            break
    return a, b, c


def _glm_gradient(
    count: FloatArray, target: FloatArray, squashed: FloatArray, weights: FloatArray,
    a: FloatArray, b: FloatArray, c: FloatArray,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Gradient of the penalised log-likelihood in (a, b, c) for R weightings at once.

    Works in single precision on (rounds x K x Q) cells, in place, a chunk of rounds at a
    time: the bootstrap's cost is these passes over memory, and float32 halves it. Sums
    accumulate in double precision where they are reduced over prompts.
    """
    f32 = np.float32
    k, q = count.shape
    x32, y32, n32 = squashed.astype(f32), target.astype(f32), count.astype(f32)
    g_a, g_b, g_c = np.empty_like(a), np.empty_like(b), np.empty_like(c)
    chunk = max(1, _CELL_CHUNK // max(k * q, 1))
    for lo in range(0, a.shape[0], chunk):
        hi = lo + chunk
        cells = np.multiply(b[lo:hi].astype(f32)[:, :, None], x32[None])
        cells += a[lo:hi].astype(f32)[:, :, None]
        cells += c[lo:hi].astype(f32)[:, None, :]
        special.expit(cells, out=cells)  # p
        np.subtract(y32[None], cells, out=cells)
        cells *= n32[None]
        cells *= weights[lo:hi].astype(f32)[:, None, :]  # weighted residuals
        g_a[lo:hi] = cells.sum(axis=2, dtype=np.float64)
        g_b[lo:hi] = np.einsum("rkq,kq->rk", cells, x32)
        g_c[lo:hi] = cells.sum(axis=1, dtype=np.float64)
    g_a -= RIDGE_INTERCEPT * a
    g_b -= RIDGE_LENGTH * b
    g_c -= RIDGE_DIFFICULTY * c
    return g_a, g_b, g_c


@dataclass(frozen=True)
class _RoundHessians:
    """Each bootstrap round's approximate Hessian of the joint GLM, factored for solving (see
    ``bootstrap_length_glm``); arrays have one row per round."""

    u: FloatArray
    """(2K, Q): the candidate-prompt block at the fit, unweighted."""
    d: FloatArray
    """(R, Q): the prompt block (diagonal) under each round's weights."""
    weights: FloatArray
    """(R, Q): the rounds' prompt weights."""
    h_aa: FloatArray
    h_ab: FloatArray
    h_bb: FloatArray
    """(R, K): each candidate's 2x2 block before the prompt elimination."""
    e: FloatArray
    """(2K,): leading direction of the coupling through the difficulties."""
    gain: FloatArray
    """(R,): the Sherman-Morrison factor of the rank-one coupling (finite and >= 0 when
    the approximation is positive definite)."""

    @classmethod
    def at_fit(cls, u: FloatArray, x: FloatArray, w: FloatArray) -> _RoundHessians:
        """The rounds' Hessians at the fit whose curvature block is ``u`` (``[v; v x]``)."""
        k = u.shape[0] // 2
        v, vx = u[:k], u[k:]
        d = w * v.sum(axis=0) + RIDGE_DIFFICULTY
        f = w * w / d
        h_aa = w @ v.T + RIDGE_INTERCEPT
        h_ab = w @ vx.T
        h_bb = w @ (vx * x).T + RIDGE_LENGTH
        # The coupling sum_q f_rq u_q u_q^T: its leading direction (from the rounds'
        # average) and each round's weight along it.
        _, vectors = np.linalg.eigh((u * f.mean(axis=0)) @ u.T)
        e = vectors[:, -1]
        sigma = f @ (e @ u) ** 2
        hessians = cls(u, d, w, h_aa, h_ab, h_bb, e, np.zeros(w.shape[0]))
        d_inv_e = hessians.block_solve(np.tile(e, (w.shape[0], 1)), slice(None))
        with np.errstate(divide="ignore", invalid="ignore"):
            gain = sigma / (1.0 - sigma * (d_inv_e @ e))
        return dataclasses.replace(hessians, gain=gain)

    def block_solve(self, rhs: FloatArray, rows: npt.NDArray[np.int64] | slice) -> FloatArray:
        """Solve with each candidate's 2x2 block: (rows, 2K) -> (rows, 2K)."""
        k = self.h_aa.shape[1]
        h_aa, h_ab, h_bb = self.h_aa[rows], self.h_ab[rows], self.h_bb[rows]
        det = h_aa * h_bb - h_ab * h_ab
        r_a, r_b = rhs[:, :k], rhs[:, k:]
        return np.concatenate([(h_bb * r_a - h_ab * r_b) / det,
                               (h_aa * r_b - h_ab * r_a) / det], axis=1)

    def solve(
        self, rows: npt.NDArray[np.int64], g_a: FloatArray, g_b: FloatArray, g_c: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """The quasi-Newton step (candidates', prompts') of ``rows`` from their gradient."""
        wr, dr = self.weights[rows], self.d[rows]
        rhs = np.concatenate([g_a, g_b], axis=1) - (wr * g_c / dr) @ self.u.T
        step = self.block_solve(rhs, rows)
        d_inv_e = self.block_solve(np.tile(self.e, (rows.size, 1)), rows)
        step += d_inv_e * (self.gain[rows] * (step @ self.e))[:, None]
        return step, (g_c - wr * (step @ self.u)) / dr


def bootstrap_length_glm(
    grid_count: FloatArray,
    grid_target: FloatArray,
    squashed: FloatArray,
    prompt_weights: FloatArray,
    fit: tuple[FloatArray, FloatArray, FloatArray],
    *,
    iterations: int = 25,
    tolerance: float = 1e-5,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The joint length GLM (with difficulties) refitted for many prompt weightings, fast.

    The same fixed point as ``fit_length_glm(..., difficulty=True)`` on each weighting, to
    ``tolerance`` (largest parameter change, log-odds, of the last step), reached by
    quasi-Newton iterations started at the full-data fit ``fit``: only the gradient is
    evaluated at the current point; the step uses a fixed approximation ``P_r`` of round
    ``r``'s Hessian, so each iteration costs a few passes over the (rounds x candidates x
    prompts) cells and no matrix factorisation. ``P_r`` is built at ``fit`` under the
    round's own weights:

    - the prompt block (diagonal, ``d_rq = w_rq V_q + lambda_c``) is eliminated exactly
      (Schur complement), so undrawn and repeated prompts are weighed right;
    - the candidates' Schur complement ``S_r = H_r - sum_q f_rq u_q u_q^T``
      (``f_rq = w_rq**2 / d_rq``, ``u_q`` the prompt's column of the candidate-prompt
      block) is approximated by its exact 2x2 intercept/slope block of each candidate minus
      the rank-one part of the coupling through the shared difficulties along its leading
      direction ``e`` (``sigma_r e e^T``, ``sigma_r = sum_q f_rq (e . u_q)**2``): that part
      is the level shared by every intercept and every difficulty, and almost all of the
      coupling. It is inverted in closed form (2x2 blocks and the Sherman-Morrison formula).

    On leaderboard-like data each iteration shrinks the error about fivefold, so a round
    converges in 8-10 iterations; the first needs no pass over the cells (at ``fit`` a
    round's gradient is linear in its weights). Rounds not converged after ``iterations``
    are refitted exactly with ``fit_length_glm``.

    Args:
        grid_count, grid_target, squashed: the (K x Q) grid, as in ``fit_length_glm``.
        prompt_weights: (R x Q) weight of each prompt in each of R fits.
        fit: the full-data (a, b, c), shapes (K,), (K,), (Q,).
        iterations: iterations at most before the exact refit.
        tolerance: largest parameter change (log-odds) of a converged round.

    Returns:
        ``a`` (R x K), ``b`` (R x K), ``c`` (R x Q).
    """
    a0, b0, c0 = fit
    k = grid_count.shape[0]
    n_fits = prompt_weights.shape[0]
    if n_fits == 0:
        return np.zeros((0, k)), np.zeros((0, k)), np.zeros((0, c0.size))
    w = prompt_weights
    x = squashed
    p0 = special.expit(a0[:, None] + b0[:, None] * x + c0[None, :])
    v = grid_count * p0 * (1.0 - p0)  # (K, Q) curvature per cell at the fit
    vx = v * x
    u = np.concatenate([v, vx], axis=0)  # (2K, Q): the candidate-prompt block, unweighted
    hessians = _RoundHessians.at_fit(u, x, w)
    gain = hessians.gain

    a, b, c = np.tile(a0, (n_fits, 1)), np.tile(b0, (n_fits, 1)), np.tile(c0, (n_fits, 1))
    # At the fit the gradient is linear in the weights.
    res0 = grid_count * (grid_target - p0)
    g_a = w @ res0.T - RIDGE_INTERCEPT * a
    g_b = w @ (res0 * x).T - RIDGE_LENGTH * b
    g_c = w * res0.sum(axis=0) - RIDGE_DIFFICULTY * c
    active = np.isfinite(gain) & (gain >= 0.0)
    rows = np.flatnonzero(active)
    for iteration in range(iterations):
        if iteration:
            rows = np.flatnonzero(active)
            if rows.size == 0:
                break
            g_a, g_b, g_c = _glm_gradient(grid_count, grid_target, x, w[rows], a[rows],
                                          b[rows], c[rows])
        elif rows.size < n_fits:
            g_a, g_b, g_c = g_a[rows], g_b[rows], g_c[rows]
        wr = w[rows]
        step, step_c = hessians.solve(rows, g_a, g_b, g_c)
        # Damped as in fit_length_glm; an undrawn prompt's difficulty goes straight to 0
        # (only its ridge acts on it, and it weighs nothing).
        step = np.clip(step, -2.0, 2.0)
        step_c = np.where(wr > 0, np.clip(step_c, -2.0, 2.0), step_c)
        a[rows] += step[:, :k]
        b[rows] += step[:, k:]
        c[rows] += step_c
        change = np.maximum(np.abs(step).max(axis=1, initial=0.0),
                            np.abs(np.where(wr > 0, step_c, 0.0)).max(axis=1, initial=0.0))
        active[rows[change < tolerance]] = False
    rows = np.flatnonzero(active | ~(np.isfinite(gain) & (gain >= 0.0)))
    chunk = max(1, _CELL_CHUNK // max(grid_count.size, 1))
    for lo in range(0, rows.size, chunk):
        part = rows[lo : lo + chunk]
        a[part], b[part], c[part] = fit_length_glm(
            grid_count, grid_target, squashed, w[part], difficulty=True, start=fit
        )
    return a, b, c


def _pick_score(games: Sequence[PairGames], score: Score | None) -> Score:
    """Soft when asked, or when every valid game with lengths has a soft preference."""
    if score is not None:
        return score
    for g in games:
        diff = g.candidate_length - g.opponent_length
        used = g.valid & ~np.isnan(diff)
        if not used.any() or np.isnan(g.soft[used]).any():
            return "hard"
    return "soft"


def _separation(x: FloatArray, y: FloatArray) -> tuple[float, str | None]:
    """The (almost) unpenalised slope of one candidate's games alone, and the reason its
    length-controlled rate is unreliable, if it is."""
    design = np.column_stack([np.ones_like(x), x])
    slope = float(fit_logistic(design, y, np.ones((1, x.size)))[0, 1])
    # A record with no wins (or no losses) has nothing for length to split: its rate is an
    # honest 0% (100%), not a separation.
    if abs(slope) <= SEPARATION_SLOPE or y.sum() < 1.0 or (1.0 - y).sum() < 1.0:
        return slope, None
    longer, shorter = x > 0, x < 0
    return slope, (
        f"near-separation: its longer answers won {y[longer].sum():.0f} of {longer.sum()} "
        f"games and its shorter ones {y[shorter].sum():.0f} of {shorter.sum()}, so length "
        f"alone almost splits wins from losses (unpenalised length slope {slope:.1f}) and "
        "the games say nothing about the rate at equal length"
    )


def _grid(
    rows: Sequence[tuple[FloatArray, FloatArray, list[str]]],
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Pool each candidate's games (squashed length, target, prompt) into (candidate x
    prompt) cells: a cell's games share the two answers, hence the length difference, so
    only their count and mean target matter. Returns count, mean target, squashed length."""
    prompt_ids, _ = group_index([p for r in rows for p in r[2]])
    column = {p: i for i, p in enumerate(prompt_ids)}
    shape = (len(rows), len(prompt_ids))
    count, total, x_sum = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    for m, (x, y, prompts) in enumerate(rows):
        cols = np.array([column[p] for p in prompts], dtype=np.int64)
        np.add.at(count[m], cols, 1.0)
        np.add.at(total[m], cols, y)
        np.add.at(x_sum[m], cols, x)
    safe = np.maximum(count, 1.0)
    return count, np.where(count > 0, total / safe, 0.0), np.where(count > 0, x_sum / safe, 0.0)


def length_controlled_all(
    games: Sequence[PairGames],
    *,
    seed: int = 0,
    n_boot: int = 2000,
    confidence: float = 0.95,
    min_prompts: int = MIN_PROMPTS,
    score: Score | None = None,
) -> dict[str, LengthControlled | None]:
    """Length-controlled win rates of every candidate, from one joint fit.

    Args:
        games: each candidate's games against the same opponent (the baseline).
        seed: bootstrap seed.
        n_boot: bootstrap rounds (0: no interval, NaN bounds).
        confidence: interval level.
        min_prompts: fewer prompts with lengths than this give ``None`` for a candidate.
        score: fit ``soft`` preferences or ``hard`` verdicts; by default soft when every
            valid game with lengths has a soft preference.

    Returns:
        candidate -> its result, or ``None`` when fewer than ``min_prompts`` prompts have a
        valid game with both answer lengths known.

    Raises:
        ValueError: the candidates played different opponents.
    """
    if len({g.opponent for g in games}) > 1:
        raise ValueError("length control needs every candidate against the same opponent")
    kind = _pick_score(games, score)
    out: dict[str, LengthControlled | None] = {}
    rows: list[tuple[PairGames, FloatArray, FloatArray, float, list[str]]] = []
    for g in games:
        diff = g.candidate_length - g.opponent_length
        target = g.soft if kind == "soft" else g.hard_score
        use = g.valid & ~np.isnan(diff) & ~np.isnan(target)
        prompts = [p for p, u in zip(g.prompt_ids, use, strict=True) if u]
        out[g.candidate] = None
        if len(set(prompts)) < min_prompts:
            continue
        d, y = diff[use], target[use]
        scale = float(d.std())
        x = np.tanh(d / scale) if scale > 0 else np.zeros_like(d)
        slope, reason = _separation(x, y)
        if reason is not None:
            out[g.candidate] = LengthControlled(
                candidate=g.candidate, opponent=g.opponent, win_rate=float("nan"),
                interval=NAN_INTERVAL, raw_win_rate=float(y.mean()), length_coefficient=slope,
                length_scale=scale, n_games=int(use.sum()), n_prompts=len(set(prompts)),
                score=kind, unreliable=reason,
            )
            continue
        rows.append((g, x, y, scale, prompts))
    if not rows:
        return out
    count, target, squashed = _grid([(r[1], r[2], r[4]) for r in rows])
    k, q = count.shape
    difficulty = k >= 2
    ones = np.ones((1, q))
    a0, b0, c0 = fit_length_glm(count, target, squashed, ones, difficulty=difficulty)
    present = (count > 0).astype(np.float64)

    def rates(weights: FloatArray, a: FloatArray, c: FloatArray) -> FloatArray:
        """(R x K) mean of sigmoid(a + c) over each candidate's drawn prompts."""
        out = np.empty_like(a)
        chunk = max(1, _CELL_CHUNK // max(k * q, 1))
        present32 = present.astype(np.float32)
        for lo in range(0, a.shape[0], chunk):
            hi = lo + chunk
            p = np.add(a[lo:hi].astype(np.float32)[:, :, None],
                       c[lo:hi].astype(np.float32)[:, None, :])
            special.expit(p, out=p)
            p *= present32[None]
            out[lo:hi] = np.einsum("rkq,rq->rk", p, weights[lo:hi].astype(np.float32))
        with np.errstate(invalid="ignore", divide="ignore"):
            result: FloatArray = out / (weights @ present.T)
        return result

    point = rates(ones, a0, c0)[0]
    weights = bootstrap_weights(q, n_boot, seed).astype(np.float64)
    if difficulty:
        a, _, c = bootstrap_length_glm(count, target, squashed, weights, (a0[0], b0[0], c0[0]))
    else:
        a, _, c = fit_length_glm(
            count, target, squashed, weights, difficulty=False, start=(a0[0], b0[0], c0[0])
        )
    boot = rates(weights, a, c)
    note = None if difficulty else (
        "one candidate: no per-prompt difficulty term (it needs two candidates or more "
        "on the same prompts)"
    )
    for m, (g, _, y, scale, prompts) in enumerate(rows):
        out[g.candidate] = LengthControlled(
            candidate=g.candidate,
            opponent=g.opponent,
            win_rate=float(point[m]),
            interval=percentile_interval(boot[:, m], confidence),
            raw_win_rate=float(y.mean()),
            length_coefficient=float(b0[0, m]),
            length_scale=scale,
            n_games=y.size,
            n_prompts=len(set(prompts)),
            score=kind,
            prompt_difficulty=difficulty,
            note=note,
        )
    return out


def length_controlled(
    games: PairGames,
    *,
    seed: int = 0,
    n_boot: int = 2000,
    confidence: float = 0.95,
    min_prompts: int = MIN_PROMPTS,
    score: Score | None = None,
) -> LengthControlled | None:
    """The length-controlled win rate of one candidate fitted alone (no difficulty term).

    ``None`` when fewer than ``min_prompts`` prompts have a valid game with both answer
    lengths known (judgments without ``first_length``/``second_length`` carry no length).
    Prefer ``length_controlled_all`` over every candidate: it adds the shared prompt
    difficulties.
    """
    return length_controlled_all(
        [games], seed=seed, n_boot=n_boot, confidence=confidence, min_prompts=min_prompts,
        score=score,
    )[games.candidate]
