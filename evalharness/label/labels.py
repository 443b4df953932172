"""A person's label as a ``Judgment`` of the judge ``human:<name>``, and who may label.

A label is stored like any judge's verdict, so everything downstream (statistics, reports,
``evalharness agree``) reads it without a special case: ``first``/``second`` are the models
in the order the person saw them (left = A = first), ``verdict`` and ``winner`` are ``A``,
``B`` or ``tie``. Its key hashes the annotator, the prompt and both answers in the order shown,
so the same person labelling the same game again makes the same key: one label per annotator
per game, and the first one stands (there is no undo; a mistaken label is one of many).
"""

from __future__ import annotations

import re
from typing import Literal

from evalharness.errors import UserError
from evalharness.keys import content_key
from evalharness.label.games import Game
from evalharness.rater_names import HUMAN_PREFIX
from evalharness.schema import Answer, Judgment

Choice = Literal["left", "right", "tie"]
VERDICTS: dict[Choice, Literal["A", "B", "tie"]] = {"left": "A", "right": "B", "tie": "tie"}
_NAME = re.compile(r"[A-Za-z0-9._-]{1,40}")


def check_annotator(name: str) -> str:
    """``name`` when it can name an annotator (it becomes part of the judge's name).

    >>> check_annotator("ana.m_2")
    'ana.m_2'
    >>> check_annotator("Ana Lopez")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    evalharness.errors.UserError: annotator name 'Ana Lopez' cannot be used: ...

    Raises:
        UserError: empty, too long, or characters other than letters, digits, ``-_.``.
    """
    if not _NAME.fullmatch(name):
        raise UserError(f"annotator name {name!r} cannot be used: names are 1 to 40 letters, "
                        "digits, '-', '_' or '.', and label the judge human:<name>. Fix: "
                        "pass e.g. --annotator ana or --annotator ana.lopez.")
    return name


def human_judge(annotator: str) -> str:
    """The judge name an annotator's labels are stored under."""
    return HUMAN_PREFIX + annotator


def candidate_on_left(annotator: str, game: Game, seed: int) -> bool:
    """Which side the candidate's answer is shown on: a coin flip per annotator and game.

    Derived from a hash, not stored, so a reload (or a restarted server) shows the same sides,
    and two annotators see a game's sides independently.
    """
    digest = content_key(["sides", seed, annotator, game.prompt_id, game.candidate.model])
    return int(digest[:8], 16) % 2 == 0


def shown(annotator: str, game: Game, seed: int) -> tuple[Answer, Answer]:
    """The (left, right) answers as the annotator sees them."""
    if candidate_on_left(annotator, game, seed):
        return game.candidate, game.baseline
    return game.baseline, game.candidate


def label_key(annotator: str, prompt_id: str, first: Answer, second: Answer) -> str:
    """The content key of a label: annotator, prompt, both answers in the order shown."""
    return content_key(["human", annotator, prompt_id, first.model, second.model, first.text,
                        second.text])


def game_keys(annotator: str, game: Game) -> frozenset[str]:
    """Both keys a label of ``game`` by ``annotator`` can have (either side shown left):
    a label made under another ``--seed`` still counts as done."""
    pid, a, b = game.prompt_id, game.candidate, game.baseline
    return frozenset({label_key(annotator, pid, a, b), label_key(annotator, pid, b, a)})


def label_judgment(annotator: str, game: Game, seed: int, choice: Choice) -> Judgment:
    """The judgment recording that ``annotator`` chose ``choice`` for ``game``."""
    left, right = shown(annotator, game, seed)
    verdict = VERDICTS[choice]
    return Judgment(
        key=label_key(annotator, game.prompt_id, left, right), prompt_id=game.prompt_id,
        judge=human_judge(annotator), first=left.model, second=right.model, verdict=verdict,
        winner=verdict, first_length=len(left.text), second_length=len(right.text),
        category=game.prompt.category, raw="",
    )
