"""The joint length GLM (AlpacaEval 2 design) recovers planted truths, agrees with the
published implementation's fitting routine, and refuses a near-separated candidate."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats as sps

from evalharness.stats.games import PairGames
from evalharness.stats.length import length_controlled, length_controlled_all

# Planted truth: intercepts, length slopes and typical length differences per candidate;
# five chosen by hand, fifteen more drawn. Twenty candidates, because the shared prompt
# difficulty is only as good as the games on each prompt: with five one-order games per
# prompt the shrunken difficulties attenuate the slopes (logistic non-collapsibility) and
# bias LC by ~1.5 points even on 3,000 prompts; with twenty the bias is well under a point.
_DRAWN = np.random.default_rng(99)
INTERCEPT = np.concatenate([[-1.0, -0.3, 0.0, 0.4, 1.0], _DRAWN.normal(0.0, 0.7, 15)])
SLOPE = np.concatenate([[1.5, 0.0, 0.8, 2.0, 0.5], _DRAWN.uniform(0.0, 2.0, 15)])
MEAN_DIFF = np.concatenate([[400.0, 0.0, -200.0, 300.0, -100.0],
                            _DRAWN.normal(0.0, 250.0, 15)])


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def planted(seed: int, *, soft: bool, n_prompts: int = 600) -> tuple[list[PairGames], np.ndarray]:
    """One-order games of every candidate against "base" on the same prompts, from
    P = sigmoid(a_m + b_m tanh(d / sd_m) + c_q); soft targets are Beta draws with that mean.

    Returns the games and the true length-controlled rates mean_q sigmoid(a_m + c_q)."""
    rng = np.random.default_rng(seed)
    difficulty = rng.normal(0.0, 0.8, n_prompts)
    out, truth = [], []
    for m in range(INTERCEPT.size):
        d = rng.normal(MEAN_DIFF[m], 300.0, n_prompts)
        p = sigmoid(INTERCEPT[m] + SLOPE[m] * np.tanh(d / d.std()) + difficulty)
        y = rng.beta(4 * p, 4 * (1 - p)) if soft else (rng.random(n_prompts) < p).astype(float)
        out.append(PairGames(
            candidate=f"m{m}", opponent="base",
            prompt_ids=tuple(f"q{i:04d}" for i in range(n_prompts)),
            candidate_first=rng.random(n_prompts) < 0.5,
            score=(y > 0.5).astype(float) if soft else y,
            soft=y if soft else np.full(n_prompts, np.nan),
            candidate_length=1000.0 + d / 2, opponent_length=1000.0 - d / 2,
        ))
        truth.append(sigmoid(INTERCEPT[m] + difficulty).mean())
    return out, np.array(truth)


@pytest.mark.parametrize("soft", [True, False])
def test_joint_fit_recovers_planted_rates_where_raw_misses(soft: bool) -> None:
    games, truth = planted(1, soft=soft)
    result = length_controlled_all(games, n_boot=200, seed=0)
    lc = np.array([result[g.candidate].win_rate for g in games])  # type: ignore[union-attr]
    raw = np.array([result[g.candidate].raw_win_rate for g in games])  # type: ignore[union-attr]
    for g in games:
        r = result[g.candidate]
        assert r is not None and r.prompt_difficulty and r.note is None and r.unreliable is None
        assert r.score == ("soft" if soft else "hard")
    # Mean error under 2 points (a rate's standard error is ~2-4 points on 600 prompts, more
    # for a candidate whose answers are nearly always longer: LC extrapolates to d = 0).
    assert np.mean(np.abs(lc - truth)) < 0.02, (lc, truth)
    assert np.max(np.abs(raw - truth)) > 0.15  # verbose candidates are flattered by length
    covered = sum(result[g.candidate].interval.contains(t)  # type: ignore[union-attr]
                  for g, t in zip(games, truth, strict=True))
    assert covered >= 17
    slopes = np.array([result[g.candidate].length_coefficient for g in games])  # type: ignore[union-attr]
    assert np.mean(np.abs(slopes - SLOPE)) < 0.3  # the judge's length preference is found
    ranks = sps.spearmanr(lc, truth).statistic
    assert ranks > 0.97 and ranks > sps.spearmanr(raw, truth).statistic


def test_lc_is_unbiased_over_simulated_judges() -> None:
    errors, raw_errors = [], []
    for seed in range(4):
        games, truth = planted(100 + seed, soft=False, n_prompts=1200)
        result = length_controlled_all(games, n_boot=0)
        for g, t in zip(games, truth, strict=True):
            r = result[g.candidate]
            assert r is not None
            errors.append(r.win_rate - t)
            raw_errors.append(r.raw_win_rate - t)
    per_candidate = np.mean(np.reshape(errors, (4, -1)), axis=0)
    # Each candidate's mean error over 4 judges of 1,200 prompts: standard error ~0.7-1.2 points.
    assert np.max(np.abs(per_candidate)) < 0.03, per_candidate
    assert abs(np.mean(errors)) < 0.003  # no overall lean
    assert np.max(np.abs(raw_errors)) > 0.15  # while the raw rate is off by up to ~20


def test_agrees_with_alpaca_eval_fitting_routine() -> None:
    """Oracle: alpaca_eval's own GLM fit (fit_LogisticRegressionCV, per model, on
    tanh(std_delta_len) + instruction_difficulty with no intercept column of its own), given
    the planted prompt difficulties, which our joint fit has to estimate."""
    glm = pytest.importorskip("alpaca_eval.metrics.glm_winrate")
    import pandas as pd

    games, _ = planted(7, soft=True)
    ours = length_controlled_all(games, n_boot=0)
    rng = np.random.default_rng(7)
    difficulty = rng.normal(0.0, 0.8, 600)  # the same draw planted() made first
    theirs = []
    for g in games:
        d = g.candidate_length - g.opponent_length
        frame = pd.DataFrame({"length": np.tanh(d / d.std()), "difficulty": difficulty,
                              "not_gamed_baseline": 1.0, "preference": g.soft})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = glm.fit_LogisticRegressionCV(frame, "preference", is_ytrue_proba=True)
        test = frame.drop(columns=["preference"]).assign(length=0.0)
        theirs.append(model.predict_proba(test)[:, 1].mean())
    lc = np.array([ours[g.candidate].win_rate for g in games])  # type: ignore[union-attr]
    assert sps.spearmanr(lc, theirs).statistic > 0.99
    assert np.max(np.abs(lc - np.array(theirs))) < 0.02, (lc, theirs)


def separated(n_long: int = 31, n_short: int = 772, short_wins: int = 1) -> PairGames:
    """The published case: every longer answer wins, the shorter ones nearly all lose."""
    rng = np.random.default_rng(3)
    d = np.concatenate([rng.uniform(50, 800, n_long), -rng.uniform(50, 1500, n_short)])
    y = np.concatenate([np.ones(n_long), np.zeros(n_short)])
    y[n_long : n_long + short_wins] = 1.0
    n = n_long + n_short
    return PairGames("sep", "base", tuple(f"q{i:04d}" for i in range(n)), np.ones(n, bool),
                     y, np.full(n, np.nan), 1000.0 + d, np.full(n, 1000.0))


def test_near_separation_is_flagged_not_printed() -> None:
    result = length_controlled(separated(), n_boot=50)
    assert result is not None
    assert result.unreliable is not None and "near-separation" in result.unreliable
    assert "won 31 of 31" in result.unreliable and "1 of 772" in result.unreliable
    assert np.isnan(result.win_rate) and np.isnan(result.interval.low)
    assert result.raw_win_rate == pytest.approx(32 / 803)
    assert result.length_coefficient > 10


def test_separated_candidate_leaves_the_others_alone() -> None:
    games, _ = planted(2, soft=False, n_prompts=803)
    both = length_controlled_all([*games, separated()], n_boot=0)
    alone = length_controlled_all(games, n_boot=0)
    assert both["sep"] is not None and both["sep"].unreliable is not None
    for g in games:
        assert both[g.candidate] == alone[g.candidate]


def test_a_hopeless_record_is_zero_not_separated() -> None:
    games = separated(short_wins=0)
    lost_all = PairGames(games.candidate, "base", games.prompt_ids, games.candidate_first,
                         np.zeros_like(games.score), games.soft, games.candidate_length,
                         games.opponent_length)
    result = length_controlled(lost_all, n_boot=20)
    assert result is not None and result.unreliable is None
    assert result.win_rate < 0.01


def test_one_candidate_says_there_is_no_difficulty_term() -> None:
    games, _ = planted(4, soft=False, n_prompts=100)
    result = length_controlled_all(games[:1], n_boot=20)["m0"]
    assert result is not None and not result.prompt_difficulty
    assert result.note is not None and "difficulty" in result.note


def test_hard_is_used_unless_every_game_has_a_soft_preference() -> None:
    games, _ = planted(5, soft=True, n_prompts=100)
    g = games[0]
    soft = g.soft.copy()
    soft[0] = np.nan
    partial = PairGames(g.candidate, g.opponent, g.prompt_ids, g.candidate_first, g.score,
                        soft, g.candidate_length, g.opponent_length)
    assert length_controlled(g, n_boot=0).score == "soft"  # type: ignore[union-attr]
    assert length_controlled(partial, n_boot=0).score == "hard"  # type: ignore[union-attr]
    forced = length_controlled(g, n_boot=0, score="hard")
    assert forced is not None and forced.raw_win_rate == pytest.approx(g.score.mean())


@pytest.mark.parametrize("soft", [True, False])
def test_fast_bootstrap_equals_the_exact_refit_bootstrap(soft: bool) -> None:
    # Every round refitted exactly (Newton to convergence on the round's weights) against
    # the quasi-Newton bootstrap the summary uses: same coefficients and intervals.
    from evalharness.stats.intervals import bootstrap_weights, percentile_interval
    from evalharness.stats.length import _grid, bootstrap_length_glm, fit_length_glm

    games, _ = planted(3, soft=soft, n_prompts=300)
    rows = []
    for g in games[:8]:
        d = g.candidate_length - g.opponent_length
        rows.append((np.tanh(d / d.std()), g.soft if soft else g.score, list(g.prompt_ids)))
    count, target, squashed = _grid(rows)
    q = count.shape[1]
    a0, b0, c0 = fit_length_glm(count, target, squashed, np.ones((1, q)), difficulty=True)
    weights = bootstrap_weights(q, 300, seed=0).astype(np.float64)
    start = (a0[0], b0[0], c0[0])
    fast = bootstrap_length_glm(count, target, squashed, weights, start)
    exact = fit_length_glm(count, target, squashed, weights, difficulty=True, start=start)
    for ours, theirs in zip(fast, exact, strict=True):
        np.testing.assert_allclose(ours, theirs, atol=1e-4)
    present = count > 0

    def rates(a: np.ndarray, c: np.ndarray) -> np.ndarray:
        mass = weights[:, None, :] * present[None]
        return (sigmoid(a[:, :, None] + c[:, None, :]) * mass).sum(axis=2) / mass.sum(axis=2)

    fast_rates, exact_rates = rates(fast[0], fast[2]), rates(exact[0], exact[2])
    for m in range(count.shape[0]):
        lo_f, hi_f = percentile_interval(fast_rates[:, m])
        lo_e, hi_e = percentile_interval(exact_rates[:, m])
        assert lo_f == pytest.approx(lo_e, abs=1e-5) and hi_f == pytest.approx(hi_e, abs=1e-5)
