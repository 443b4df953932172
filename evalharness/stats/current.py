"""Which judgments count when a game was asked more than once: re-judging without rewriting.

The judgments file is append-only, so re-asking a game (``evalharness judge RUN
--retry-invalid``) appends a second record with the same key and models; nothing is edited
or deleted. The invalid record stays on disk as history, and ``current_judgments`` decides
what counts: an invalid record is superseded by any valid record of the same game, and by
any later record of it. Valid records are all kept, so duplicates (a file imported twice)
still reach ``summary.dedupe``, which keeps the first and counts the rest.

A game is the judge, the key and the two models in their positions: the same content judged
for another pair of models, or by another judge (a person, a repeat of the noise floor), is
another game.
"""

from __future__ import annotations

from collections.abc import Sequence

from evalharness.schema import Judgment

Game = tuple[str, str, str, str]
"""(judge, key, first, second)."""


def game_of(judgment: Judgment) -> Game:
    """The game a judgment is a verdict on."""
    return (judgment.judge, judgment.key, judgment.first, judgment.second)


def current_judgments(judgments: Sequence[Judgment]) -> list[Judgment]:
    """``judgments`` without the invalid records that a later or a valid record of the same
    game supersedes, in their order. Statistics read this, then ``dedupe``.

    >>> def j(winner, raw=""):
    ...     return Judgment(key="k", prompt_id="p", judge="j", first="a", second="b",
    ...                     verdict=winner, winner=winner, raw=raw)
    >>> [r.raw for r in current_judgments([j(None, "1st"), j("A", "2nd")])]
    ['2nd']
    >>> [r.raw for r in current_judgments([j(None, "1st"), j(None, "2nd")])]
    ['2nd']
    >>> [r.raw for r in current_judgments([j("A", "1st"), j(None, "2nd")])]
    ['1st']
    >>> len(current_judgments([j("A"), j("A")]))  # duplicates are dedupe's to count
    2
    """
    has_valid: set[Game] = set()
    last: dict[Game, int] = {}
    for index, judgment in enumerate(judgments):
        game = game_of(judgment)
        last[game] = index
        if judgment.valid:
            has_valid.add(game)
    return [j for index, j in enumerate(judgments)
            if j.valid or (game_of(j) not in has_valid and last[game_of(j)] == index)]


def superseded(judgments: Sequence[Judgment]) -> int:
    """How many records of ``judgments`` a re-judged game superseded (shown, never scored).

    >>> j = Judgment(key="k", prompt_id="p", judge="j", first="a", second="b", verdict=None)
    >>> superseded([j, j.model_copy(update={"verdict": "A", "winner": "A"})])
    1
    """
    return len(judgments) - len(current_judgments(judgments))
