"""Judge bias diagnostics: does the judge prefer a position, or longer answers?

- **Position consistency**: of the prompts judged in both orders, the share where both
  orders gave the same result for the same model (both a candidate win, both a tie, or both
  a loss). A judge that only looks at content scores 1; a judge that always picks "A" scores
  0 on every decided prompt.
- **First-position rate**: of the decided games (not ties), the share won by position A, with
  an exact binomial test against 50%. Judging both orders cancels this bias in the win rate;
  it is shown so a user knows how much was cancelled.

Both position diagnostics read **only prompts judged (validly) in both orders**: on a prompt
judged once, "position A won" is just the record of whichever model was shown first, not a
preference of the judge. With no such prompt they are NaN with ``n = 0``, and the summary
says so. Both read the judge's hard labels (a soft-only game's label is what its preference
rounds to), whatever the score mode.
- **Length**: the candidate's game score when its answer was longer vs shorter than the
  opponent's, and the mean length difference. A big gap between the two suggests a length
  preference; the length-controlled win rate (``length.py``) corrects for it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from evalharness.schema import Judgment
from evalharness.stats.games import PairGames, both_orders, hard_label
from evalharness.stats.headtohead import sign_test


@dataclass(frozen=True)
class PositionBias:
    """How often the judge picked position A over B, across decided games."""

    n_decided: int
    """Valid games that were not ties."""
    first_position_rate: float
    """Share of decided games won by position A (0.5 = no preference)."""
    p_value: float
    """Exact two-sided binomial test of ``first_position_rate`` against 0.5."""
    tie_rate: float
    """Share of valid games judged a tie."""
    n_both_orders: int = 0
    """Prompts (of one pair of models) judged in both orders: the games counted here."""


@dataclass(frozen=True)
class JudgeBias:
    """Position and length diagnostics for one candidate's games against one opponent."""

    candidate: str
    """The model seen from."""
    opponent: str
    """The model it played."""
    n_both_orders: int
    """Prompts with a valid game in each order."""
    position_consistency: float
    """Share of those prompts where both orders agree (NaN when there are none)."""
    position: PositionBias
    """Position-A preference in these games."""
    n_with_lengths: int
    """Valid games with both answer lengths known."""
    mean_length_difference: float
    """Mean of candidate length minus opponent length, in characters (NaN if unknown)."""
    longer_win_rate: float
    """Candidate's mean game score when its answer was longer (NaN if never)."""
    n_longer: int
    """Games where the candidate's answer was longer."""
    shorter_win_rate: float
    """Candidate's mean game score when its answer was shorter (NaN if never)."""
    n_shorter: int
    """Games where the candidate's answer was shorter."""


def _position(first_won: np.ndarray, decided: np.ndarray, ties: int, valid: int,
              n_both: int) -> PositionBias:
    n_decided = int(decided.sum())
    a_wins = int(first_won[decided].sum())
    return PositionBias(
        n_decided=n_decided,
        first_position_rate=a_wins / n_decided if n_decided else float("nan"),
        p_value=sign_test(a_wins, n_decided - a_wins),
        tie_rate=ties / valid if valid else float("nan"),
        n_both_orders=n_both,
    )


def position_bias(judgments: Iterable[Judgment]) -> PositionBias:
    """Position-A preference over the valid judgments of prompts judged in both orders,
    whoever played.

    >>> from evalharness.schema import Judgment
    >>> js = [Judgment(key=str(i) + f, prompt_id=str(i), judge="j", first=f, second=s,
    ...                verdict=w, winner=w)
    ...       for i, w in enumerate("AA") for f, s in (("x", "y"), ("y", "x"))]
    >>> p = position_bias(js + [js[0].model_copy(update={"prompt_id": "once"})])
    >>> p.first_position_rate, p.n_decided, p.n_both_orders
    (1.0, 4, 2)
    """
    valid = [j for j in judgments if j.valid]
    orders: dict[tuple[str, frozenset[str]], set[str]] = {}
    for j in valid:
        orders.setdefault((j.prompt_id, frozenset((j.first, j.second))), set()).add(j.first)
    labels = [hard_label(j) for j in valid
              if len(orders[(j.prompt_id, frozenset((j.first, j.second)))]) == 2]
    arr = np.array(labels, dtype=object)
    decided = arr != "tie"
    n_both = sum(len(firsts) == 2 for firsts in orders.values())
    return _position(arr == "A", decided, int((~decided).sum()), len(labels), n_both)


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float("nan")


def judge_bias(games: PairGames) -> JudgeBias:
    """Position consistency, position preference and length diagnostics for ``games``.

    >>> import numpy as np
    >>> g = PairGames("ft", "base", ("p1", "p1", "p2", "p2"),
    ...     np.array([True, False, True, False]), np.array([1.0, 1.0, 1.0, 0.0]),
    ...     np.full(4, np.nan), np.array([90.0, 90, 50, 50]), np.array([60.0, 60, 80, 80]))
    >>> b = judge_bias(g)
    >>> b.position_consistency, b.mean_length_difference, b.longer_win_rate
    (0.5, 0.0, 1.0)
    """
    valid = games.valid
    score = games.hard_score  # the judge's labels, whatever the score mode
    ids, both, index = both_orders(games)
    n_prompts = len(ids)
    # Consistency: per prompt, every valid game (either order) gives the same model score.
    s_valid = np.where(valid, score, 0.0)
    low = np.full(n_prompts, np.inf)
    high = np.full(n_prompts, -np.inf)
    np.minimum.at(low, index[valid], s_valid[valid])
    np.maximum.at(high, index[valid], s_valid[valid])
    consistent = both & (low == high)
    n_both = int(both.sum())
    # Position: the winner position is A when the candidate, shown first, won (or lost shown
    # second); only prompts judged in both orders, where the two models' records cancel.
    paired = valid & both[index]
    decided = paired & (score != 0.5)
    first_won = np.where(games.candidate_first, score == 1.0, score == 0.0)
    ties = int((paired & (score == 0.5)).sum())
    diff = games.candidate_length - games.opponent_length
    with_len = valid & ~np.isnan(diff)
    longer = with_len & (diff > 0)
    shorter = with_len & (diff < 0)
    return JudgeBias(
        candidate=games.candidate,
        opponent=games.opponent,
        n_both_orders=n_both,
        position_consistency=int(consistent.sum()) / n_both if n_both else float("nan"),
        position=_position(first_won, decided, ties, int(paired.sum()), n_both),
        n_with_lengths=int(with_len.sum()),
        mean_length_difference=_mean(diff[with_len]),
        longer_win_rate=_mean(score[longer]),
        n_longer=int(longer.sum()),
        shorter_win_rate=_mean(score[shorter]),
        n_shorter=int(shorter.sum()),
    )
