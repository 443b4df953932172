"""Adapter vs adapter, Holm, and the perplexity paradox, checked against scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from evalharness.stats import holm, paired_comparison, perplexity_paradox
from evalharness.stats.games import PromptScores
from evalharness.stats.paradox import kendall_rows, spearman_rows


def scores(name: str, values: list[float] | np.ndarray) -> PromptScores:
    values = np.asarray(values, dtype=float)
    n = values.size
    return PromptScores(
        name,
        "base",
        tuple(f"p{i:03d}" for i in range(n)),
        values,
        np.full(n, 2),
        np.full(n, np.nan),
        (),
    )


def test_paired_sign_test_is_exact_mcnemar_on_discordant_prompts() -> None:
    rng = np.random.default_rng(0)
    a = (rng.random(80) < 0.65).astype(float)
    b = (rng.random(80) < 0.5).astype(float)
    result = paired_comparison(scores("a", a), scores("b", b), n_boot=500)
    only_a = int(((a == 1) & (b == 0)).sum())
    only_b = int(((a == 0) & (b == 1)).sum())
    assert (result.a_better, result.b_better) == (only_a, only_b)
    assert result.p_value == pytest.approx(sps.binomtest(only_a, only_a + only_b).pvalue)
    assert result.difference == pytest.approx(a.mean() - b.mean())
    assert result.interval.contains(result.difference)


def test_pairing_gives_a_narrower_interval_than_independence() -> None:
    rng = np.random.default_rng(1)
    hard = rng.random(100) < 0.5  # prompts hard for both adapters
    a = np.where(hard, rng.random(100) < 0.2, rng.random(100) < 0.9).astype(float)
    b = np.where(hard, rng.random(100) < 0.15, rng.random(100) < 0.85).astype(float)
    paired = paired_comparison(scores("a", a), scores("b", b), n_boot=2000)
    independent_half = 1.96 * np.sqrt(a.var() / 100 + b.var() / 100)
    assert (paired.interval.high - paired.interval.low) / 2 < 0.8 * independent_half


def test_paired_uses_only_common_prompts() -> None:
    a = scores("a", [1, 1, 0, 1])
    b = PromptScores(
        "b", "base", ("p001", "p002"), np.array([0.0, 0.0]), np.full(2, 2), np.full(2, np.nan), ()
    )
    result = paired_comparison(a, b)
    assert result.n_prompts == 2
    assert result.win_rate_a == 0.5


def test_holm_against_hand_computation() -> None:
    # Sorted 0.001, 0.01, 0.02, 0.2 times 4, 3, 2, 1 -> 0.004, 0.03, 0.04, 0.2 (monotone).
    assert holm([0.2, 0.01, 0.001, 0.02]) == pytest.approx([0.2, 0.03, 0.004, 0.04])
    assert holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])


def test_vectorised_rank_correlations_equal_scipy() -> None:
    rng = np.random.default_rng(2)
    x = rng.random(9)
    y = rng.random((20, 9))
    y[3, :4] = y[3, 0]  # ties
    ours_s = spearman_rows(x, y)
    ours_k = kendall_rows(x, y)
    for row in range(20):
        assert ours_s[row] == pytest.approx(sps.spearmanr(x, y[row]).statistic)
        assert ours_k[row] == pytest.approx(sps.kendalltau(x, y[row]).statistic)


def league_scores(rates: dict[str, float], n: int, seed: int) -> list[PromptScores]:
    rng = np.random.default_rng(seed)
    return [scores(name, (rng.random(n) < r).astype(float)) for name, r in rates.items()]


def test_agreeing_perplexity_is_reported_as_agreement() -> None:
    rates = {"a": 0.8, "b": 0.7, "c": 0.55, "d": 0.4, "e": 0.25}
    ppl = {"a": (5.0, 0.80), "b": (6.0, 0.85), "c": (7.0, 0.90), "d": (8.0, 0.95), "e": (9.0, 1.00)}
    result = perplexity_paradox(league_scores(rates, 300, 0), ppl, n_boot=500)
    assert result.spearman.estimate == pytest.approx(-1.0)
    assert result.spearman.interval.high < 0
    assert result.pairs == ()
    assert "went with a higher win rate" in result.sentence
    assert [r.candidate for r in result.rows] == ["a", "b", "c", "d", "e"]


def test_paradox_pairs_and_honest_sentence_when_noise_wins() -> None:
    # Perplexity ordering a < b < c < d, but the judge prefers d clearly over a.
    rates = {"a": 0.4, "b": 0.5, "c": 0.52, "d": 0.75}
    ppl = {"a": (5.0, 0.8), "b": (5.5, 0.82), "c": (6.0, 0.84), "d": (6.5, 0.86)}
    result = perplexity_paradox(league_scores(rates, 200, 3), ppl, n_boot=500)
    top = result.pairs[0]
    assert (top.lower, top.higher) == ("a", "d")
    assert top.significant
    assert top.difference == pytest.approx(
        next(r.win_rate for r in result.rows if r.candidate == "d")
        - next(r.win_rate for r in result.rows if r.candidate == "a")
    )
    assert "LOWER win rate" in result.sentence or "cannot tell" in result.sentence
    assert "paradox pair" in result.sentence


def test_too_few_candidates_says_so() -> None:
    result = perplexity_paradox(
        league_scores({"a": 0.6, "b": 0.5}, 50, 0), {"a": (5.0, 0.8), "b": (6.0, 0.9)}
    )
    assert np.isnan(result.spearman.estimate)
    assert "says nothing" in result.sentence
