"""Bradley-Terry: the fit is the maximum of the likelihood, checked with scipy.optimize."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import optimize

from evalharness.schema import Judgment
from evalharness.stats import battles_from_judgments, fit_bradley_terry, league
from tests.helpers import game


def direct_fit(wins: np.ndarray, reference: int) -> np.ndarray:
    """Maximise sum_ij W_ij log sigmoid(theta_i - theta_j) with scipy (theta_ref = 0)."""
    k = wins.shape[0]
    free = [i for i in range(k) if i != reference]

    def negative_log_likelihood(x: np.ndarray) -> float:
        theta = np.zeros(k)
        theta[free] = x
        diff = theta[:, None] - theta[None, :]
        return float(np.sum(wins * np.logaddexp(0.0, -diff)))

    result = optimize.minimize(
        negative_log_likelihood, np.zeros(k - 1), method="BFGS", options={"gtol": 1e-10}
    )
    theta = np.zeros(k)
    theta[free] = result.x
    return theta


def simulated_league(
    seed: int, strengths: dict[str, float], n_prompts: int, round_robin: bool
) -> list[Judgment]:
    rng = np.random.default_rng(seed)
    names = list(strengths)
    pairs = [(a, "base") for a in names if a != "base"]
    if round_robin:
        pairs += [
            (a, b) for i, a in enumerate(names) for b in names[i + 1 :] if "base" not in (a, b)
        ]
    out = []
    for a, b in pairs:
        p = 1 / (1 + np.exp(-(strengths[a] - strengths[b])))
        for prompt in range(n_prompts):
            for order in (0, 1):
                u = rng.random()
                a_result = "tie" if abs(u - p) < 0.04 else ("win" if u < p else "loss")
                first, second = (a, b) if order == 0 else (b, a)
                if a_result == "tie":
                    winner = "tie"
                else:
                    winner = "A" if (a_result == "win") == (order == 0) else "B"
                out.append(game(f"{a}{b}{prompt}{order}", f"q{prompt}", first, second, winner))
    return out


STRENGTHS = {"base": 0.0, "a": 0.8, "b": 0.3, "c": -0.4, "d": 0.0}


@pytest.mark.parametrize("round_robin", [False, True])
def test_scores_equal_a_direct_scipy_fit(round_robin: bool) -> None:
    battles = battles_from_judgments(simulated_league(1, STRENGTHS, 60, round_robin))
    total = battles.wins.sum(axis=0)
    ref = battles.models.index("base")
    ours = fit_bradley_terry(total, ref)
    theirs = direct_fit(total, ref)
    np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_ties_count_half_and_invalid_are_ignored() -> None:
    js = [
        Judgment(
            key="1", prompt_id="p", judge="j", first="a", second="base", verdict="tie", winner="tie"
        ),
        Judgment(
            key="2", prompt_id="p", judge="j", first="base", second="a", verdict="B", winner="B"
        ),
        Judgment(
            key="3", prompt_id="q", judge="j", first="a", second="base", verdict=None, winner=None
        ),
    ]
    battles = battles_from_judgments(js)
    assert battles.models == ("a", "base")
    assert battles.prompt_ids == ("p",)
    np.testing.assert_allclose(battles.wins.sum(axis=0), [[0, 1.5], [0.5, 0]])
    # 1.5 of 2 points: theta = log(1.5 / 0.5) exactly.
    # (the 1e-6 ridge moves it by ~3e-6 on two games)
    assert fit_bradley_terry(battles.wins.sum(axis=0), 1)[0] == pytest.approx(np.log(3), abs=1e-5)


def test_league_ranks_planted_strengths_with_intervals() -> None:
    result = league(
        simulated_league(2, STRENGTHS, 150, round_robin=True), "base", n_boot=300, seed=0
    )
    order = [s.model for s in result.standings]
    assert order[0] == "a" and order[-1] == "c"
    by_name = {s.model: s for s in result.standings}
    assert by_name["base"].strength == 0.0
    for name, truth in STRENGTHS.items():
        if name != "base":
            assert by_name[name].interval.contains(truth), (name, by_name[name])
    assert by_name["a"].rank_interval.high <= 2  # a clearly leads
    assert 0.5 < by_name["a"].win_probability < 0.8


def test_a_model_that_never_lost_gets_a_finite_strength() -> None:
    wins = np.array([[0.0, 10.0], [0.0, 0.0]])
    theta = fit_bradley_terry(wins, reference=1)
    assert np.isfinite(theta).all() and theta[0] > 10


def test_unknown_baseline_is_a_user_error() -> None:
    from evalharness.errors import UserError

    with pytest.raises(UserError, match="baseline 'nope'"):
        league(simulated_league(0, {"base": 0.0, "a": 0.5}, 5, False), "nope", n_boot=10)


def test_a_perfect_record_gets_a_one_sided_exact_bound_not_a_zero_width_interval() -> None:
    # "x" beat the baseline on all 10 prompts: against the baseline alone the bound is the
    # exact (Clopper-Pearson) one-sided bound: P(win) = 0.025 ** (1 / 10).
    from scipy import stats as sps

    js = [game(f"x{q}", f"q{q}", "x", "base", "A") for q in range(10)]
    js += [game(f"y{q}", f"q{q}", "base", "y", "A" if q < 7 else "B") for q in range(10)]
    result = league(js, "base", n_boot=200, seed=0)
    x = next(s for s in result.standings if s.model == "x")
    assert x.bound == "lower" and x.strength == np.inf and x.win_probability == 1.0
    assert x.interval.high == np.inf and x.interval.high > x.interval.low
    exact = sps.binomtest(10, 10).proportion_ci(0.95, method="exact").low
    assert x.win_probability_interval.low == pytest.approx(exact, abs=1e-9)
    assert x.win_probability_interval.low == pytest.approx(0.025 ** 0.1, abs=1e-9)
    assert x.win_probability_interval.high == 1.0
    assert x.interval.low == pytest.approx(np.log(0.025**0.1 / (1 - 0.025**0.1)), abs=1e-9)
    y = next(s for s in result.standings if s.model == "y")
    assert y.bound is None and np.isfinite(y.strength)
    assert result.standings[0].model == "x"


def test_a_hopeless_record_against_several_opponents_gets_the_hand_computed_bound() -> None:
    # "z" lost all 6 games to the baseline and all 4 to "a"; "a" beat the baseline 3 of 5.
    from scipy import optimize

    js = [game(f"zb{q}", f"q{q}", "base", "z", "A") for q in range(6)]
    js += [game(f"za{q}", f"q{q}", "z", "a", "B") for q in range(4)]
    js += [game(f"ab{q}", f"q{q}", "a", "base", "A" if q < 3 else "B") for q in range(5)]
    result = league(js, "base", n_boot=100, seed=0)
    by = {s.model: s for s in result.standings}
    z = by["z"]
    assert z.bound == "upper" and z.strength == -np.inf and z.win_probability == 0.0
    assert z.interval.low == -np.inf and z.interval.high > z.interval.low
    theta_a = by["a"].strength
    assert by["a"].bound is None and np.isfinite(theta_a)

    def chance(u: float) -> float:  # P(lose all 10 games) at strength u, minus 2.5%
        p_lose = 6 * np.log(1 / (1 + np.exp(u))) + 4 * np.log(1 / (1 + np.exp(u - theta_a)))
        return float(p_lose - np.log(0.025))

    hand = optimize.brentq(chance, -30, 30, xtol=1e-12)
    assert z.interval.high == pytest.approx(hand, abs=1e-7)
    assert z.win_probability_interval.high == pytest.approx(1 / (1 + np.exp(-hand)), abs=1e-9)
    assert z.win_probability_interval.low == 0.0
    assert result.standings[-1].model == "z"


def soft_game(key: str, prompt: str, first: str, second: str, weight_a: float) -> Judgment:
    return Judgment(key=key, prompt_id=prompt, judge="j", first=first, second=second,
                    verdict=None, winner=None, weight_a=weight_a)


def test_soft_preferences_are_fractional_outcomes() -> None:
    # x vs base: preferences 0.9, 0.6 (x as A) and 0.3 for A = base (x takes 0.7): x took
    # 0.9 + 0.6 + 0.7 = 2.2 of 3 points, so theta = log(2.2 / 0.8) by hand.
    js = [soft_game("1", "p", "x", "base", 0.9), soft_game("2", "q", "x", "base", 0.6),
          soft_game("3", "r", "base", "x", 0.3)]
    soft = battles_from_judgments(js, "soft")
    np.testing.assert_allclose(soft.wins.sum(axis=0), [[0.0, 0.8], [2.2, 0.0]])
    assert soft.n_games == 3
    theta = fit_bradley_terry(soft.wins.sum(axis=0), reference=0)
    assert theta[1] == pytest.approx(np.log(2.2 / 0.8), abs=1e-5)
    result = league(js, "base", n_boot=50, score="soft")
    x = next(s for s in result.standings if s.model == "x")
    assert x.strength == pytest.approx(np.log(2.2 / 0.8), abs=1e-5)
    # Hard: each preference rounds to a win for x: 3 of 3, a perfect record.
    hard = league(js, "base", n_boot=50, score="hard")
    assert next(s for s in hard.standings if s.model == "x").bound == "lower"


def test_a_near_perfect_record_has_an_open_upper_end_not_the_ridge() -> None:
    """31 of 32 prompts won in both orders, one split: a resample misses the split prompt
    with probability (31/32) ** 32 = 0.362, so far more than 2.5% of rounds are perfect
    records and the 97.5th percentile is +inf (before: the ridge's +15.25)."""
    js = []
    for i in range(32):
        js.append(game(f"{i}a", f"p{i}", "ft", "base", "A"))
        js.append(game(f"{i}b", f"p{i}", "base", "ft", "B" if i else "A"))
    st = next(s for s in league(js, "base", n_boot=500).standings if s.model == "ft")
    assert st.bound is None and np.isfinite(st.strength)
    assert st.interval.low > 1.0
    assert st.interval.high == np.inf
    assert st.win_probability_interval.high == 1.0


def test_a_record_of_ties_only_gets_the_wald_interval() -> None:
    """32 prompts tied in both orders: strength 0 and, by hand, se = 1 / sqrt(64 * 0.25) =
    0.25, so the interval is +-1.96 * 0.25 = +-0.49 (win probability 38.0-62.0%), not [0, 0]."""
    js = [game(f"{i}{o}", f"p{i}", *pair, "tie") for i in range(32)
          for o, pair in (("a", ("ft", "base")), ("b", ("base", "ft")))]
    st = next(s for s in league(js, "base", n_boot=200).standings if s.model == "ft")
    assert abs(st.strength) < 1e-9
    assert st.interval.low == pytest.approx(-0.489991, abs=1e-5)
    assert st.interval.high == pytest.approx(0.489991, abs=1e-5)
    assert st.win_probability_interval.low == pytest.approx(0.3799, abs=1e-3)
