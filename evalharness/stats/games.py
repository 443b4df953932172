"""From judgments to outcomes: every game seen from one model's side, and per-prompt scores.

A game is one judgment: the judge saw two answers in positions A and B and named a winner
position (or a tie), gave a soft preference ``weight_a`` = P(A better), both, or nothing
readable. A game is valid when it has a winner or a soft preference; an invalid judgment
scores nothing: it is counted, never treated as a tie.

Two scores, chosen by the *score mode* (``ScoreMode``; ``resolve_score`` picks it):

- **hard**: seen from a ``candidate`` playing an ``opponent``, 1 (the candidate's position
  won), 0.5 (tie) or 0. A game with only a soft preference gets the hard label its
  preference rounds to (above 0.5: A, below: B, exactly 0.5: a tie), the *discrete* win rate
  of AlpacaEval.
- **soft**: the candidate's side of the soft preference, a fraction in [0, 1]. Every
  statistic that takes ``PairGames.score`` or ``PromptScores.score`` (win rate, intervals,
  tests, length control, paired comparisons) then works on fractional outcomes.

A prompt's score is the mean of its valid games (one in each order when both orders were
judged, which cancels the judge's position preference). A prompt with one valid game uses
that game; a prompt with none is excluded from win rates and counted in
``PromptScores.excluded``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from evalharness.errors import UserError
from evalharness.schema import Judgment, Winner

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

_CANDIDATE_SCORE = {"A": (1.0, 0.0), "B": (0.0, 1.0), "tie": (0.5, 0.5)}
"""Score of (the model in position A, the model in position B) for each winner label."""

ScoreMode = Literal["soft", "hard"]
"""Which score drives the headline, intervals, tests, Bradley-Terry and length control."""


def hard_label(judgment: Judgment) -> Winner | None:
    """The game's hard label: its ``winner``, else what its soft preference rounds to.

    >>> from evalharness.schema import Judgment
    >>> j = Judgment(key="k", prompt_id="p", judge="j", first="a", second="b", verdict=None,
    ...              winner=None, weight_a=0.3)
    >>> hard_label(j), hard_label(j.model_copy(update={"weight_a": 0.5}))
    ('B', 'tie')
    """
    if judgment.winner is not None or judgment.weight_a is None:
        return judgment.winner
    if judgment.weight_a == 0.5:
        return "tie"
    return "A" if judgment.weight_a > 0.5 else "B"


def position_a_score(judgment: Judgment, score: ScoreMode) -> float | None:
    """What position A took from the game (B took the rest); ``None`` for an invalid game.

    ``soft``: ``weight_a`` where the game has one (a game with only a hard label counts as a
    certain preference); ``hard``: 1, 0.5 or 0 from ``hard_label``. Bradley-Terry and every
    other consumer of single judgments read outcomes through this one function.

    >>> from evalharness.schema import Judgment
    >>> j = Judgment(key="k", prompt_id="p", judge="j", first="a", second="b", verdict="A",
    ...              winner="A", weight_a=0.7)
    >>> position_a_score(j, "soft"), position_a_score(j, "hard")
    (0.7, 1.0)
    """
    if score == "soft" and judgment.weight_a is not None:
        return judgment.weight_a
    label = hard_label(judgment)
    return None if label is None else _CANDIDATE_SCORE[label][0]


def resolve_score(judgments: Iterable[Judgment], requested: ScoreMode | None) -> ScoreMode:
    """The score mode to use: ``requested``, or (``None``) soft when every valid game has a
    soft preference, hard otherwise.

    Raises:
        UserError: ``soft`` was asked for but some valid games have only a hard winner
            (mixing the two would weigh those games as certain preferences).

    >>> from evalharness.schema import Judgment
    >>> j = Judgment(key="k", prompt_id="p", judge="j", first="a", second="b", verdict=None,
    ...              winner=None, weight_a=0.8)
    >>> resolve_score([j], None), resolve_score([j], "hard")
    ('soft', 'hard')
    """
    valid = [j for j in judgments if j.valid]
    hard_only = [j for j in valid if j.weight_a is None]
    if requested is None:
        return "soft" if valid and not hard_only else "hard"
    if requested == "soft" and hard_only:
        example = hard_only[0]
        raise UserError(
            f"score 'soft' needs a soft preference (weight_a) on every valid game, but "
            f"{len(hard_only)} of {len(valid)} have only a hard winner (e.g. prompt "
            f"{example.prompt_id!r}, {example.first!r} vs {example.second!r}). Fix: use "
            "--score hard, or give every judgment a weight_a."
        )
    return requested


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
    """The candidate's score in the chosen ``mode`` (hard: 1 win, 0.5 tie, 0 loss; soft: its
    side of the soft preference); NaN for an invalid judgment."""
    soft: FloatArray
    """P(candidate's answer better) from the judge's log-probs; NaN where not available."""
    candidate_length: FloatArray
    """Length of the candidate's answer in characters; NaN where unknown."""
    opponent_length: FloatArray
    """Length of the opponent's answer in characters; NaN where unknown."""
    hard: FloatArray | None = None
    """The hard score (1, 0.5, 0; NaN invalid) when ``score`` is soft; ``None``: ``score``
    is the hard score. Judge-bias diagnostics read labels, so they use ``hard_score``."""
    mode: ScoreMode = "hard"
    """Which score ``score`` holds."""

    @property
    def hard_score(self) -> FloatArray:
        """The hard score of each game, whatever the mode."""
        return self.score if self.hard is None else self.hard

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


def pair_games(
    judgments: Iterable[Judgment], candidate: str, opponent: str, score: ScoreMode = "hard"
) -> PairGames:
    """Collect the games between ``candidate`` and ``opponent`` (either order), scored in
    mode ``score``.

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
    hard: list[float] = []
    chosen: list[float] = []
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
        a_hard = position_a_score(j, "hard")
        a_chosen = a_hard if score == "hard" else position_a_score(j, score)
        for out, a_score in ((hard, a_hard), (chosen, a_chosen)):
            out.append(float("nan") if a_score is None
                       else a_score if cand_is_a else 1.0 - a_score)
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
        score=np.array(chosen, dtype=np.float64),
        soft=np.array(soft, dtype=np.float64),
        candidate_length=np.array(cand_len, dtype=np.float64),
        opponent_length=np.array(opp_len, dtype=np.float64),
        hard=None if score == "hard" else np.array(hard, dtype=np.float64),
        mode=score,
    )


def both_orders(games: PairGames) -> tuple[tuple[str, ...], BoolArray, IntArray]:
    """Sorted prompt ids, which of them have a valid game in each order, and the index of
    each game's prompt (position-bias diagnostics use only the first kind).

    >>> import numpy as np
    >>> g = PairGames("ft", "base", ("p1", "p1", "p2"), np.array([True, False, True]),
    ...     np.ones(3), np.full(3, np.nan), np.full(3, np.nan), np.full(3, np.nan))
    >>> ids, both, _ = both_orders(g)
    >>> ids, both.tolist()
    (('p1', 'p2'), [True, False])
    """
    ids, index = group_index(games.prompt_ids)
    valid = games.valid
    has_first = np.bincount(index[valid & games.candidate_first], minlength=len(ids)) > 0
    has_second = np.bincount(index[valid & ~games.candidate_first], minlength=len(ids)) > 0
    return ids, has_first & has_second, index


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
    hard: FloatArray | None = None
    """Mean hard score of each prompt when ``score`` is soft; ``None``: ``score`` is hard."""
    both_orders: BoolArray | None = None
    """Which prompts have a valid game in each order; ``None``: not recorded."""

    @property
    def n_prompts(self) -> int:
        """Prompts with a score."""
        return len(self.prompt_ids)

    @property
    def hard_score(self) -> FloatArray:
        """Each prompt's mean hard score (1 win, 0.5 tie or split, 0 loss)."""
        return self.score if self.hard is None else self.hard


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
    ids, both, index = both_orders(games)
    n_all = len(ids)
    valid = games.valid
    n_games = np.bincount(index[valid], minlength=n_all).astype(np.int64)
    total = np.bincount(index[valid], weights=games.score[valid], minlength=n_all)
    hard_total = np.bincount(index[valid], weights=games.hard_score[valid], minlength=n_all)
    has_soft = ~np.isnan(games.soft)
    n_soft = np.bincount(index[has_soft], minlength=n_all)
    soft_total = np.bincount(index[has_soft], weights=games.soft[has_soft], minlength=n_all)
    keep = n_games > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        score = total / n_games
        hard = hard_total / n_games
        soft = np.where(n_soft > 0, soft_total / np.maximum(n_soft, 1), np.nan)
    return PromptScores(
        candidate=games.candidate,
        opponent=games.opponent,
        prompt_ids=tuple(p for p, k in zip(ids, keep, strict=True) if k),
        score=score[keep].astype(np.float64),
        n_games=n_games[keep],
        soft=soft[keep].astype(np.float64),
        excluded=tuple(p for p, k in zip(ids, keep, strict=True) if not k),
        hard=None if games.hard is None else hard[keep].astype(np.float64),
        both_orders=both[keep],
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
