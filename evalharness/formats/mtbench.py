"""MT-Bench's pairwise judgments (FastChat's ``model_judgment/gpt-4_pair.jsonl``) as ours.

A record ``{"question_id", "model_1", "model_2", "g1_winner", "g2_winner", "judge",
"turn", "g1_judgment"?, "g2_judgment"?}`` holds two games: game 1 shows model_1 as A,
game 2 shows model_2 as A. Both winners name the winning *model* (``model_1``,
``model_2``), ``tie``, or ``error`` (the verdict could not be read). Each turn was judged
on its own, so question 81's turn 2 is the prompt ``81-t2``. Only judgments are imported:
they hold no answer texts, so answer lengths (and length control) are unavailable here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evalharness.formats.arenahard import question_id
from evalharness.formats.common import (
    Collector,
    Imported,
    Problems,
    field_text,
    read_sources,
)
from evalharness.rows import Row
from evalharness.schema import Winner

FORMAT = "mtbench"
_FIX = 'winners are "model_1", "model_2", "tie" or "error", as FastChat writes them'


def prompt_id(qid: str, turn: int) -> str:
    """Our prompt id of one turn of an MT-Bench question.

    >>> prompt_id("81", 2)
    '81-t2'
    """
    return f"{qid}-t{turn}"


def read_mtbench(sources: Sequence[Path], baseline: str | None = None) -> Imported:
    """Read MT-Bench pairwise judgment files.

    Args:
        sources: files, or folders holding ``.jsonl`` files.
        baseline: the model the others were compared with; default: the ``model_2`` of
            every record (FastChat's ``pairwise-baseline`` mode puts the baseline there);
            required for ``pairwise-all`` files.

    Raises:
        UserError: listing every bad record with its ``file:line``, or no baseline.
    """
    problems = Problems("MT-Bench files")
    found = Collector(FORMAT, problems)
    judged: list[Row] = []
    files, contents = read_sources(sources, (".jsonl",), "MT-Bench file")
    for rows in contents:
        for row in rows:
            if "g1_winner" in row.fields:
                judged.append(row)
            else:
                problems.add(row.where, "not a pairwise judgment (no 'g1_winner')",
                             "pass MT-Bench's model_judgment/*_pair.jsonl files")
    for row in judged:
        _read_record(row, found, problems)
    chosen = baseline or _shared_model_2(judged)
    if chosen is None and judged:
        problems.add("--baseline", "the records do not share one model_2 (pairwise-all "
                     "files compare every pair)", "pass --baseline NAME (gpt-3.5-turbo in "
                     "MT-Bench's pairwise-baseline mode)")
    return found.build(chosen, files)


def _shared_model_2(judged: list[Row]) -> str | None:
    # FastChat's pairwise-baseline mode puts the baseline in model_2 of every record.
    named = {row.fields.get("model_2") for row in judged}
    only = named.pop() if len(named) == 1 else None
    return only if isinstance(only, str) else None


def _read_record(row: Row, found: Collector, problems: Problems) -> None:
    qid = question_id(row, problems)
    fix = "name both models in model_1 and model_2"
    model_1 = field_text(row, "model_1", problems, fix)
    model_2 = field_text(row, "model_2", problems, fix)
    turn = row.fields.get("turn", 1)
    if not isinstance(turn, int) or isinstance(turn, bool) or turn < 1:
        problems.add(row.where, f"turn {json.dumps(turn)} is not a turn number",
                     "turn is 1 or 2")
        return
    if qid is None or model_1 is None or model_2 is None:
        return
    judge = row.fields.get("judge")
    judge_name = "/".join(str(j) for j in judge) if isinstance(judge, list) else \
        str(judge) if judge else FORMAT
    pid = prompt_id(qid, turn)
    # Game 1 shows model_1 as A; game 2 shows model_2 as A. Winners name models.
    games = (("g1", model_1, model_2), ("g2", model_2, model_1))
    for name, first, second in games:
        said = row.fields.get(f"{name}_winner")
        raw = row.fields.get(f"{name}_judgment")
        common: dict[str, Any] = {"prompt_id": pid, "judge": judge_name, "first": first,
                                  "second": second, "raw": raw if isinstance(raw, str) else ""}
        winner = _winner(said, first, model_1, model_2)
        if said == "error":
            found.judgment(row.where, verdict=None, winner=None,
                           error=f"{name}: the judge's verdict could not be read", **common)
        elif winner is None:
            problems.add(row.where, f"{name}_winner {json.dumps(said)} is not a verdict", _FIX)
        else:
            found.judgment(row.where, verdict=winner, winner=winner, **common)


def _winner(said: object, first: str, model_1: str, model_2: str) -> Winner | None:
    if said == "tie":
        return "tie"
    named = {"model_1": model_1, "model_2": model_2}.get(str(said))
    if named is None:
        return None
    return "A" if named == first else "B"
