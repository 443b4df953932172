"""From judgments to outcomes: every game seen from one model's side, and per-prompt scores.

A game is one judgment: the judge saw two answers in positions A and B and named a winner
position (or a tie, or nothing readable). Seen from a ``candidate`` playing an ``opponent``,
a valid game scores 1 (the candidate's position won), 0.5 (tie) or 0 (the opponent's
position won). An invalid judgment (``winner is None``) scores nothing: it is counted, never
treated as a tie.

A prompt's score is the mean of its valid games (normally two: one in each order, which
cancels the judge's position preference). A prompt with one valid game uses that game; a
prompt with none is excluded from win rates and counted in ``PromptScores.excluded``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from evalharness.schema import Judgment

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

_CANDIDATE_SCORE = {"A": (1.0, 0.0), "B": (0.0, 1.0), "tie": (0.5, 0.5)}
"""Score of (the model in position A, the model in position B) for each winner label."""


@dataclass(frozen=True, eq=False)
class PairGames:
    """Every game between ``candidate`` and ``opponent``, seen from the candidate's side.

    All arrays have one entry per game (judgment), in input order.
    """

    candidate: str
    """The model whose score is reported."""
    opponent: str
    """The model it played (usually the baseline)."""
    prompt_ids: tuple[str, ...]
    """Prompt of each game."""
    candidate_first: BoolArray
    """Whether the candidate's answer was shown as A."""
    score: FloatArray
    """1 win, 0.5 tie, 0 loss for the candidate; NaN for an invalid judgment."""
    soft: FloatArray
    """P(candidate's answer better) from the judge's log-probs; NaN where not available."""
    candidate_length: FloatArray
    """Length of the candidate's answer in characters; NaN where unknown."""
    opponent_length: FloatArray
    """Length of the opponent's answer in characters; NaN where unknown."""

    @property
    def valid(self) -> BoolArray:
        """Which games have a verdict."""
        return ~np.isnan(self.score)

    @property
    def n_games(self) -> int:
        """Valid games."""
        return int(self.valid.sum())

    @property
    def n_invalid(self) -> int:
        """Judgments without a readable verdict."""
        return int((~self.valid).sum())


def _length(value: int | None) -> float:
    return float("nan") if value is None else float(value)


def pair_games(judgments: Iterable[Judgment], candidate: str, opponent: str) -> PairGames:
    """Collect the games between ``candidate`` and ``opponent`` (either order).

    >>> from evalharness.schema import Judgment
    >>> def game(pid, first, second, winner):
    ...     return Judgment(key=pid + first, prompt_id=pid, judge="j", first=first,
    ...                     second=second, verdict=winner, winner=winner)
    >>> g = pair_games([game("p1", "ft", "base", "A"), game("p1", "base", "ft", "A"),
    ...                 game("p2", "base", "ft", None)], "ft", "base")
    >>> g.score.tolist()[:2], g.n_games, g.n_invalid
    ([1.0, 0.0], 2, 1)
    """
    prompt_ids: list[str] = []
    first: list[bool] = []
    score: list[float] = []
    soft: list[float] = []
    cand_len: list[float] = []
    opp_len: list[float] = []
    for j in judgments:
        if (j.first, j.second) == (candidate, opponent):
            cand_is_a = True
        elif (j.first, j.second) == (opponent, candidate):
            cand_is_a = False
        else:
            continue
        prompt_ids.append(j.prompt_id)
        first.append(cand_is_a)
        if j.winner is None:
            score.append(float("nan"))
            soft.append(float("nan"))
        else:
            a_score, b_score = _CANDIDATE_SCORE[j.winner]
            score.append(a_score if cand_is_a else b_score)
            if j.weight_a is None:
                soft.append(float("nan"))
            else:
                soft.append(j.weight_a if cand_is_a else 1.0 - j.weight_a)
        a_len, b_len = _length(j.first_length), _length(j.second_length)
        cand_len.append(a_len if cand_is_a else b_len)
        opp_len.append(b_len if cand_is_a else a_len)
    return PairGames(
        candidate=candidate,
        opponent=opponent,
        prompt_ids=tuple(prompt_ids),
        candidate_first=np.array(first, dtype=np.bool_),
        score=np.array(score, dtype=np.float64),
        soft=np.array(soft, dtype=np.float64),
        candidate_length=np.array(cand_len, dtype=np.float64),
        opponent_length=np.array(opp_len, dtype=np.float64),
    )


@dataclass(frozen=True, eq=False)
class PromptScores:
    """Per-prompt scores of one candidate against one opponent (prompts sorted by id)."""

    candidate: str
    """The model scored."""
    opponent: str
    """The model it played."""
    prompt_ids: tuple[str, ...]
    """Prompts with at least one valid game, sorted."""
    score: FloatArray
    """Mean score of each prompt's valid games (1 win, 0.5 tie, 0 loss)."""
    n_games: IntArray
    """Valid games behind each prompt's score (2 normally; 1 when the other was invalid)."""
    soft: FloatArray
    """Mean soft preference of each prompt's games that have one; NaN where none has."""
    excluded: tuple[str, ...]
    """Prompts whose every game was invalid: left out of all rates, and counted."""

    @property
    def n_prompts(self) -> int:
        """Prompts with a score."""
        return len(self.prompt_ids)


def group_index(keys: Sequence[str]) -> tuple[tuple[str, ...], IntArray]:
    """Sorted distinct keys and, for each input, the index of its key.

    >>> group_index(["b", "a", "b"])
    (('a', 'b'), array([1, 0, 1]))
    """
    uniques, inverse = np.unique(np.array(keys, dtype=object), return_inverse=True)
    return tuple(str(u) for u in uniques), inverse.astype(np.int64)


def prompt_scores(games: PairGames) -> PromptScores:
    """Average each prompt's valid games into one score.

    >>> from evalharness.schema import Judgment
    >>> def game(pid, first, second, winner):
    ...     return Judgment(key=pid + first, prompt_id=pid, judge="j", first=first,
    ...                     second=second, verdict=winner, winner=winner)
    >>> s = prompt_scores(pair_games([
    ...     game("p1", "ft", "base", "A"), game("p1", "base", "ft", "tie"),
    ...     game("p2", "ft", "base", "B"), game("p2", "base", "ft", None),
    ...     game("p3", "ft", "base", None)], "ft", "base"))
    >>> s.prompt_ids, s.score.tolist(), s.n_games.tolist(), s.excluded
    (('p1', 'p2'), [0.75, 0.0], [2, 1], ('p3',))
    """
    ids, index = group_index(games.prompt_ids)
    n_all = len(ids)
    valid = games.valid
    n_games = np.bincount(index[valid], minlength=n_all).astype(np.int64)
    total = np.bincount(index[valid], weights=games.score[valid], minlength=n_all)
    has_soft = ~np.isnan(games.soft)
    n_soft = np.bincount(index[has_soft], minlength=n_all)
    soft_total = np.bincount(index[has_soft], weights=games.soft[has_soft], minlength=n_all)
    keep = n_games > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        score = total / n_games
        soft = np.where(n_soft > 0, soft_total / np.maximum(n_soft, 1), np.nan)
    return PromptScores(
        candidate=games.candidate,
        opponent=games.opponent,
        prompt_ids=tuple(p for p, k in zip(ids, keep, strict=True) if k),
        score=score[keep].astype(np.float64),
        n_games=n_games[keep],
        soft=soft[keep].astype(np.float64),
        excluded=tuple(p for p, k in zip(ids, keep, strict=True) if not k),
    )


def score_matrix(
    scores: Sequence[PromptScores],
) -> tuple[tuple[str, ...], FloatArray]:
    """Align several candidates' prompt scores on the union of their prompts.

    Returns the sorted prompt ids and a (candidates x prompts) array, NaN where a candidate
    has no score for a prompt.

    >>> import numpy as np
    >>> a = PromptScores("a", "b", ("p1", "p2"), np.array([1.0, 0.5]), np.array([2, 2]),
    ...                  np.array([np.nan, np.nan]), ())
    >>> c = PromptScores("c", "b", ("p2",), np.array([0.0]), np.array([2]),
    ...                  np.array([np.nan]), ())
    >>> score_matrix([a, c])[1].tolist()
    [[1.0, 0.5], [nan, 0.0]]
    """
    prompts = tuple(sorted({p for s in scores for p in s.prompt_ids}))
    column = {p: i for i, p in enumerate(prompts)}
    matrix = np.full((len(scores), len(prompts)), np.nan)
    for row, s in enumerate(scores):
        cols = np.array([column[p] for p in s.prompt_ids], dtype=np.int64)
        if cols.size:
            matrix[row, cols] = s.score
    return prompts, matrix
