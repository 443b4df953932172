"""A generic table of games (CSV or Parquet, read through pandas; JSON lines work too).

One row per game: ``prompt_id``, ``first`` and ``second`` (the models shown as A and B), and
a ``winner`` (``A``, ``B``, ``tie``) and/or ``weight_a`` (P(A better), from 0 to 1).
Optional: ``judge``, ``category``, ``prompt`` (the prompt's text), ``first_text`` and
``second_text`` (the two answers). A row with only ``weight_a`` gets the hard winner of its
side above one half (a tie at exactly 0.5); a ``winner`` the ``weight_a`` contradicts is an
error. Any other column is an error too: a typo must not be dropped silently.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evalharness.formats.common import (
    Collector,
    Imported,
    Problems,
    SourceFile,
    expand,
    prompt_of,
    winner_of_weight,
)
from evalharness.rows import Row, read_rows, text_id

FORMAT = "table"
COLUMNS = ("prompt_id", "first", "second", "winner", "weight_a", "judge", "category",
           "prompt", "first_text", "second_text")
_WINNERS = {"A", "B", "tie"}


def read_table(sources: Sequence[Path], baseline: str | None = None) -> Imported:
    """Read tables of games.

    Args:
        sources: ``.csv``/``.parquet``/``.jsonl`` files, or folders holding them.
        baseline: the model the others were compared with; default: the one model in
            every row.

    Raises:
        UserError: listing every bad row with its ``file:line`` (``file:row N`` for Parquet).
    """
    problems = Problems("tables")
    found = Collector(FORMAT, problems)
    files: list[SourceFile] = []
    rows: list[Row] = []
    for path in expand(sources, (".csv", ".parquet", ".jsonl")):
        read = read_rows(path, "table of games")
        files.append(SourceFile(path, len(read)))
        rows.extend(read)
    games = [game for row in rows if (game := _game(row, problems)) is not None]
    for game in games:  # texts first: the games' keys and lengths use them
        pid, where = game["prompt_id"], game["where"]
        if "prompt" in game:
            found.prompt(prompt_of(pid, game.pop("prompt"), game.get("category", "default")),
                         where)
        for side, model in (("first_text", game["first"]), ("second_text", game["second"])):
            if side in game:
                found.answer(pid, model, game.pop(side), where)
    everywhere: set[str] | None = None
    for game in games:
        pair = {game["first"], game["second"]}
        everywhere = pair if everywhere is None else everywhere & pair
        found.judgment(game.pop("where"), **game)
    chosen = baseline
    if chosen is None and everywhere is not None and len(everywhere) == 1:
        chosen = next(iter(everywhere))
    if chosen is None and games:
        problems.add("--baseline", "no single model is in every row",
                     "pass --baseline NAME, the model the others were compared with")
    return found.build(chosen, files)


def _game(row: Row, problems: Problems) -> dict[str, Any] | None:
    fields = row.fields
    unknown = sorted(set(fields) - set(COLUMNS))
    if unknown:
        problems.add(row.where, f"unknown column(s) {', '.join(unknown)}",
                     f"rename or remove them; the columns are {', '.join(COLUMNS)}")
        return None
    try:
        pid = text_id(fields.get("prompt_id"))
    except ValueError as exc:
        problems.add(row.where, f"prompt_id: {exc}", "give every row its prompt_id")
        return None
    texts = {k: v for k, v in fields.items() if k not in {"prompt_id", "weight_a"}}
    if any(not isinstance(v, str) for v in texts.values()):
        bad = next(k for k, v in texts.items() if not isinstance(v, str))
        problems.add(row.where, f"column '{bad}' is not text", "write it as text")
        return None
    if not texts.get("first") or not texts.get("second"):
        problems.add(row.where, "'first' or 'second' is empty",
                     "name the models shown as A and B")
        return None
    weight_a = _weight(fields.get("weight_a"), row, problems)
    winner = texts.pop("winner", None)
    if winner is not None and winner not in _WINNERS:
        problems.add(row.where, f"winner {json.dumps(winner)} is not A, B or tie",
                     "write A, B or tie (or leave it empty and give weight_a)")
        return None
    if weight_a is None:
        if winner is None and "weight_a" not in fields:
            problems.add(row.where, "neither a winner nor a weight_a",
                         "give the game's winner (A, B, tie) or weight_a, P(A better)")
        if winner is None:
            return None
    elif winner is None:
        winner = winner_of_weight(weight_a)
    elif (winner == "A" and weight_a < 0.5) or (winner == "B" and weight_a > 0.5):
        problems.add(row.where, f"winner {winner} contradicts weight_a {weight_a:g}",
                     "make them agree (weight_a is P(A better)), or leave one of them out")
        return None
    return {"where": row.where, "prompt_id": pid, "judge": texts.pop("judge", FORMAT),
            "verdict": winner, "winner": winner, "weight_a": weight_a, **texts}


def _weight(value: Any, row: Row, problems: Problems) -> float | None:
    if value is None:
        return None
    try:
        weight = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        weight = math.nan
    if not 0.0 <= weight <= 1.0:  # NaN fails this too
        problems.add(row.where, f"weight_a {json.dumps(value)} is not a probability",
                     "weight_a is P(A better), from 0 to 1")
        return None
    return weight
