"""Judge bias diagnostics on judges whose bias we planted."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from evalharness.stats import judge_bias, pair_games, position_bias
from tests.helpers import game


def games(winners: list[tuple[str, str]], lengths: tuple[int, int] = (100, 100)):
    out = []
    for i, pair in enumerate(winners):
        for order, winner in enumerate(pair):
            first, second = ("ft", "base") if order == 0 else ("base", "ft")
            a_len, b_len = lengths if order == 0 else lengths[::-1]
            out.append(game(f"{i}{order}", f"p{i}", first, second, winner,
                            first_length=a_len, second_length=b_len))
    return out


def test_a_judge_that_always_picks_a_is_never_consistent() -> None:
    bias = judge_bias(pair_games(games([("A", "A")] * 30), "ft", "base"))
    assert bias.position_consistency == 0.0
    assert bias.position.first_position_rate == 1.0
    assert bias.position.p_value == pytest.approx(sps.binomtest(60, 60).pvalue)


def test_a_content_judge_is_consistent_and_position_neutral() -> None:
    # The candidate wins 20 prompts in both orders, loses 10 in both orders.
    bias = judge_bias(pair_games(games([("A", "B")] * 20 + [("B", "A")] * 10), "ft", "base"))
    assert bias.position_consistency == 1.0
    assert bias.position.first_position_rate == 0.5
    assert bias.n_both_orders == 30


def test_length_split_and_mean_difference() -> None:
    long_wins = games([("A", "B")] * 8 + [("B", "A")] * 2, lengths=(300, 100))
    short_loses = [
        j.model_copy(update={"key": "s" + j.key, "prompt_id": "s" + j.prompt_id})
        for j in games([("B", "A")] * 6 + [("A", "B")] * 4, lengths=(50, 100))
    ]
    bias = judge_bias(pair_games(long_wins + short_loses, "ft", "base"))
    assert bias.longer_win_rate == pytest.approx(0.8)
    assert bias.shorter_win_rate == pytest.approx(0.4)
    assert (bias.n_longer, bias.n_shorter) == (20, 20)
    assert bias.mean_length_difference == pytest.approx((200 * 20 - 50 * 20) / 40)


def test_overall_position_bias_ignores_invalid_and_reports_ties() -> None:
    js = games([("A", "A"), ("A", "tie"), ("B", "A")])
    js.append(js[0].model_copy(update={"key": "bad", "winner": None, "verdict": None}))
    overall = position_bias(js)
    assert overall.n_decided == 5
    assert overall.first_position_rate == pytest.approx(4 / 5)
    assert overall.tie_rate == pytest.approx(1 / 6)
    assert np.isnan(judge_bias(pair_games([], "x", "y")).position_consistency)
