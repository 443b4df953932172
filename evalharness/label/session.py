"""One annotator's pass over the plan: what is labelled, what was skipped, what comes next.

Games already labelled by the annotator (on disk when the server started, or labelled since)
are never offered again, so a reload, a closed tab or a restarted server continues where the
annotator stopped. A skipped game is not a label and nothing is written: it moves to the end
of the queue and comes back once every other game is labelled (skipping it again moves it to
the end again). Skips live in the server's memory, so a restarted server offers skipped games
in plan order again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from evalharness.label.games import Game
from evalharness.label.labels import Choice, game_keys, label_judgment, shown
from evalharness.schema import Judgment

Writer = Callable[[Judgment], None]
"""Stores one label (appends it to the run's judgments); raises if it could not."""


class AnnotatorSession:
    """The labelling queue of one annotator. Not thread-safe: the server serialises calls."""

    def __init__(self, annotator: str, plan: Sequence[Game], seed: int,
                 labelled_keys: set[str]) -> None:
        self.annotator = annotator
        self.plan = tuple(plan)
        self.seed = seed
        self._done = {i for i, game in enumerate(self.plan)
                      if game_keys(annotator, game) & labelled_keys}
        self._skipped: list[int] = []
        self.saved = 0  # labels written by this session, not counting those on disk before

    @property
    def labelled(self) -> int:
        """Games of the plan this annotator has labelled, before and during this session."""
        return len(self._done)

    def next_index(self) -> int | None:
        """The game to show: the first unlabelled, unskipped one in plan order, else the
        longest-skipped one; ``None`` when every game is labelled."""
        for index in range(len(self.plan)):
            if index not in self._done and index not in self._skipped:
                return index
        return self._skipped[0] if self._skipped else None

    def find(self, game_id: object) -> int | None:
        """The plan index a game id from the page names, or ``None`` if it names none."""
        if not isinstance(game_id, str) or not game_id.isdigit():
            return None
        index = int(game_id)
        return index if index < len(self.plan) else None

    def skip(self, index: int) -> None:
        """Put a game at the end of the queue; nothing is written."""
        if index in self._done:
            return
        if index in self._skipped:
            self._skipped.remove(index)
        self._skipped.append(index)

    def label(self, index: int, choice: Choice, write: Writer) -> bool:
        """Store the annotator's choice for a game; ``False`` if it was labelled already
        (another tab, a double key press): the first label stands."""
        if index in self._done:
            return False
        write(label_judgment(self.annotator, self.plan[index], self.seed, choice))
        self._done.add(index)  # only once it is on disk: a failed write leaves it to do
        if index in self._skipped:
            self._skipped.remove(index)
        self.saved += 1
        return True

    def state(self) -> dict[str, Any]:
        """What the page shows: progress and the next game, with no model names."""
        index = self.next_index()
        return {
            "annotator": self.annotator, "total": len(self.plan), "labelled": self.labelled,
            "skipped": len(self._skipped), "done": index is None,
            "game": None if index is None else self._view(index),
        }

    def _view(self, index: int) -> dict[str, Any]:
        game = self.plan[index]
        left, right = shown(self.annotator, game, self.seed)
        return {
            "id": str(index), "prompt_id": game.prompt_id, "category": game.prompt.category,
            "messages": [{"role": m.role, "content": m.content} for m in game.prompt.messages],
            "left": left.text, "right": right.text, "again": index in self._skipped,
        }
