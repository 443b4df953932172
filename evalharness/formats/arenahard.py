"""Arena-Hard-Auto's files as our records.

- ``question.jsonl``: ``{"question_id", "category", "cluster"?, "turns": [{"content"}]}``.
- ``model_answer/<model>.jsonl``: ``{"question_id", "model_id", "choices": [{"turns":
  [{"content", "token_len"?}]}]}`` (FastChat's answer format; MT-Bench's answers share it).
- ``model_judgment/<judge>/<model>.jsonl``: ``{"question_id", "model", "judge"?, "games":
  [{"score", "judgment"?}, {"score", ...}]}``. Game 1 shows the baseline as A and the model
  as B; game 2 swaps them (the model is A). ``score`` is one of ``A>>B``, ``A>B``, ``A=B``,
  ``B>A``, ``B>>A``, or null when the judge's verdict could not be read.

The judgment files do not name the baseline (it is ``baseline_model`` in the judge's
config): ``--baseline`` names it, or it is the one model with answers and no judgments.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evalharness.formats.common import (
    Collector,
    Imported,
    Problems,
    field_text,
    prompt_of,
    read_sources,
)
from evalharness.rows import Row, text_id
from evalharness.schema import Winner

FORMAT = "arenahard"
SCORES: dict[str, Winner] = {"A>>B": "A", "A>B": "A", "A=B": "tie", "B>A": "B", "B>>A": "B"}
"""Arena-Hard's five-level scale, the labels our ``pairwise-5level`` judge writes too."""


def read_arenahard(sources: Sequence[Path], baseline: str | None = None) -> Imported:
    """Read Arena-Hard-Auto's questions, model answers and judgments (folders searched).

    Each file's kind is told by its first record (``games``: judgments, ``choices``:
    answers, ``turns``: questions). Every game becomes one judgment with the verdict as
    Arena-Hard wrote it (``A>>B`` ...) and its winner; a strong verdict counts as one win,
    not as Arena-Hard's three (our statistics count games, and the label is kept).

    Raises:
        UserError: listing every bad record with its ``file:line``, or no baseline.
    """
    problems = Problems("Arena-Hard-Auto files")
    found = Collector(FORMAT, problems)
    judged: list[Row] = []
    files, contents = read_sources(sources, (".jsonl",), "Arena-Hard-Auto file")
    for rows in contents:
        for row in rows:
            fields = row.fields
            if "games" in fields:
                judged.append(row)
            elif "choices" in fields:
                read_answer(row, found, problems)
            elif "turns" in fields:
                read_question(row, found, problems)
            else:
                problems.add(row.where, "neither a question ('turns'), an answer ('choices') "
                             "nor a judgment ('games')",
                             "pass question.jsonl, model_answer/ and model_judgment/ files")
    chosen = baseline or _only_unjudged(found, judged)
    if chosen is None:
        problems.add("--baseline", "the judgments do not name the baseline model and no "
                     "single model has answers without judgments",
                     "pass --baseline NAME, the judge config's baseline_model (gpt-4-0314 "
                     "for arena-hard-v0.1)")
    else:
        for row in judged:
            _read_judgment(row, chosen, found, problems)
    return found.build(chosen, files)


def question_id(row: Row, problems: Problems) -> str | None:
    """The record's ``question_id`` as text (a whole number becomes its digits)."""
    try:
        return text_id(row.fields.get("question_id"))
    except ValueError as exc:
        problems.add(row.where, f"question_id: {exc}", "give every record its question_id")
        return None


def read_question(row: Row, found: Collector, problems: Problems) -> None:
    """Collect a question's first turn as a prompt (turns are text or ``{"content"}``)."""
    qid = question_id(row, problems)
    turns = row.fields.get("turns")
    first = turns[0] if isinstance(turns, list) and turns else None
    text = first.get("content") if isinstance(first, dict) else first
    if qid is None:
        return
    if not isinstance(text, str):
        problems.add(row.where, "'turns' holds no question text",
                     'write turns as [{"content": "..."}] (or ["..."])')
        return
    label = row.fields.get("cluster") or row.fields.get("category") or "default"
    found.prompt(prompt_of(qid, text, str(label)), row.where)


def read_answer(row: Row, found: Collector, problems: Problems) -> None:
    """Collect a FastChat-format answer: the turns of its first choice, joined by a blank
    line when there are several (Arena-Hard's questions have one turn)."""
    qid = question_id(row, problems)
    model = row.fields.get("model_id", row.fields.get("model"))
    choices = row.fields.get("choices")
    turns = choices[0].get("turns") if isinstance(choices, list) and choices and \
        isinstance(choices[0], dict) else None
    if not isinstance(model, str) or not model:
        problems.add(row.where, "no 'model_id'", "name the model that answered in model_id")
        return
    if qid is None:
        return
    if not isinstance(turns, list) or not turns:
        problems.add(row.where, "'choices' holds no turns",
                     'write choices as [{"turns": [{"content": "..."}]}]')
        return
    texts: list[str] = []
    tokens = 0
    for turn in turns:
        content = turn.get("content") if isinstance(turn, dict) else turn
        if not isinstance(content, str):
            problems.add(row.where, "a turn has no text content",
                         'write each turn as {"content": "..."}')
            return
        texts.append(content)
        length = turn.get("token_len") if isinstance(turn, dict) else None
        tokens += length if isinstance(length, int) and not isinstance(length, bool) else 0
    found.answer(qid, model, "\n\n".join(texts), row.where, n_tokens=tokens)


def _only_unjudged(found: Collector, judged: list[Row]) -> str | None:
    candidates = {row.fields.get("model") for row in judged}
    unjudged = [m for m in found.models if m not in candidates]
    return unjudged[0] if len(unjudged) == 1 else None


def _read_judgment(row: Row, baseline: str, found: Collector, problems: Problems) -> None:
    qid = question_id(row, problems)
    model = field_text(row, "model", problems, "name the judged model in 'model'")
    games = row.fields.get("games")
    if qid is None or model is None:
        return
    if not isinstance(games, list) or not 1 <= len(games) <= 2:
        problems.add(row.where, "'games' is not a list of one or two games",
                     "keep the games as Arena-Hard wrote them")
        return
    judge = row.fields.get("judge")
    judge_name = judge if isinstance(judge, str) and judge else _judge_of(row.where)
    category = found.prompts[qid][0].category if qid in found.prompts else "default"
    # Game 1 puts the baseline in position A, game 2 the model.
    for index, (first, second) in enumerate(((baseline, model), (model, baseline))[:len(games)]):
        game = games[index]
        score = game.get("score") if isinstance(game, dict) else None
        raw = game.get("judgment") if isinstance(game, dict) else None
        common: dict[str, Any] = {
            "prompt_id": qid, "judge": judge_name, "first": first, "second": second,
            "category": category,
            "raw": raw if isinstance(raw, str) else json.dumps(raw, ensure_ascii=False)}
        if score is None:
            found.judgment(row.where, verdict=None, winner=None,
                           error=f"game {index + 1}: no score (the judge's verdict could not "
                           "be read)", **common)
        elif isinstance(score, str) and score in SCORES:
            found.judgment(row.where, verdict=score, winner=SCORES[score], **common)
        else:
            problems.add(row.where, f"game {index + 1}: score {json.dumps(score)} is not on "
                         "Arena-Hard's scale", f"use one of {', '.join(SCORES)}, or null")


def _judge_of(where: str) -> str:
    # model_judgment/<judge>/<model>.jsonl: the folder names the judge.
    path = Path(where.rsplit(":", 1)[0])
    return path.parent.name if path.parent.parent.name == "model_judgment" else FORMAT
