"""AlpacaEval's files as our records, and a model's answers as its ``model_outputs.json``.

- ``model_outputs.json``: a JSON list of ``{"instruction", "output", "generator",
  "dataset"?}``, one per prompt, for one model.
- ``annotations.json``: a JSON list of games ``{"instruction", "output_1", "generator_1",
  "output_2", "generator_2", "preference", "annotator"?, "raw_completion"?, "dataset"?}``.
  ``output_1`` is always the reference model's (AlpacaEval's baseline). ``preference`` is 1
  when output_1 is preferred, 2 when output_2 is, anything between for a soft (log-prob
  weighted) annotator, 1.5 (or 0, AlpacaEval's older code) for a draw, null when the
  annotator's reply could not be read.

AlpacaEval has no prompt ids: a prompt's id is ``ae-`` and the first 16 hex digits of the
SHA-256 of its instruction's UTF-8 text, the same in every file and every import.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evalharness.errors import UserError
from evalharness.formats.common import (
    Collector,
    Imported,
    Problems,
    field_text,
    prompt_of,
    read_sources,
    winner_of_weight,
)
from evalharness.rows import Row
from evalharness.schema import Answer, Prompt

FORMAT = "alpacaeval"
DEFAULT_JUDGE = "alpacaeval"
"""The judge's name when an annotation names no ``annotator``."""
_HARD = {0.0, 1.0, 1.5, 2.0}
_OUTPUTS_FIX = ('each record of a model_outputs.json needs "instruction", "output" and '
                '"generator" as text, as AlpacaEval writes it')
_ANNOTATIONS_FIX = ('each record of an annotations.json needs "instruction", "output_1", '
                    '"generator_1", "output_2", "generator_2" as text and a "preference"')


def prompt_id(instruction: str) -> str:
    """The stable id of an AlpacaEval instruction (AlpacaEval itself has none).

    >>> prompt_id("Say hi.")
    'ae-e276e57b8ac9f385'
    """
    return "ae-" + hashlib.sha256(instruction.encode("utf-8")).hexdigest()[:16]


def read_alpacaeval(sources: Sequence[Path], baseline: str | None = None) -> Imported:
    """Read model_outputs.json and annotations.json files (folders are searched).

    Each file's kind is told by its records: ``preference`` makes annotations, ``output``
    model outputs. A file whose preferences are all 1, 2, 1.5 or 0 is hard (``winner``
    only); any other value makes the whole file soft: every game then also carries
    ``weight_a = 2 - preference``, P(output_1 better), and its winner is the side above one
    half (a tie at exactly 1.5).

    Args:
        sources: files, or folders holding them.
        baseline: the reference model; default: the annotations' ``generator_1``.

    Raises:
        UserError: listing every bad record with its file and record number.
    """
    problems = Problems("AlpacaEval files")
    found = Collector(FORMAT, problems)
    outputs: list[list[Row]] = []
    annotations: list[list[Row]] = []
    files, contents = read_sources(sources, (".json", ".jsonl"), "AlpacaEval file")
    for source, rows in zip(files, contents, strict=True):
        if not rows:
            problems.add(str(source.path), "the file holds no records",
                         "pass a non-empty file")
        elif "preference" in rows[0].fields:
            annotations.append(rows)
        elif "output" in rows[0].fields:
            outputs.append(rows)
        else:
            problems.add(rows[0].where, "neither a model output (no 'output') nor an "
                         "annotation (no 'preference')",
                         "pass AlpacaEval's model_outputs.json or annotations.json files")
    for rows in outputs:  # answers first: the games' keys and lengths use their texts
        for row in rows:
            _read_output(row, found, problems)
    references: dict[str, str] = {}
    for rows in annotations:
        soft = any(_number(r.fields.get("preference")) not in _HARD | {None} for r in rows)
        for row in rows:
            reference = _read_annotation(row, soft, found, problems)
            if reference is not None:
                references.setdefault(reference, row.where)
    chosen = baseline
    if chosen is None and len(references) > 1:
        listed = ", ".join(f"'{m}' ({w})" for m, w in references.items())
        problems.add("annotations", f"the reference (generator_1) is not one model: {listed}",
                     "pass --baseline NAME to say which model the others are compared with")
    elif chosen is None and references:
        chosen = next(iter(references))
    if chosen is not None and chosen not in found.models and not problems.found:
        problems.add("--baseline", f"model '{chosen}' is in none of the files (models: "
                     f"{', '.join(found.models) or 'none'})", "pass one of those names")
    return found.build(chosen, files)


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if math.isnan(value) else float(value)


def _read_output(row: Row, found: Collector, problems: Problems) -> None:
    texts = [field_text(row, name, problems, _OUTPUTS_FIX)
             for name in ("instruction", "output", "generator")]
    instruction, output, generator = texts
    if instruction is None or output is None or generator is None:
        return
    pid = prompt_id(instruction)
    found.prompt(prompt_of(pid, instruction, _category(row)), row.where)
    found.answer(pid, generator, output, row.where)


def _category(row: Row) -> str:
    dataset = row.fields.get("dataset")
    return dataset if isinstance(dataset, str) and dataset.strip() else "default"


def _read_annotation(row: Row, soft: bool, found: Collector, problems: Problems) -> str | None:
    """Collect one annotation; return its reference model (``generator_1``)."""
    names = ("instruction", "output_1", "generator_1", "output_2", "generator_2")
    texts = [field_text(row, name, problems, _ANNOTATIONS_FIX) for name in names]
    instruction, output_1, generator_1, output_2, generator_2 = texts
    if (instruction is None or output_1 is None or generator_1 is None or output_2 is None
            or generator_2 is None):
        return None
    raw_preference = row.fields.get("preference")
    preference = _number(raw_preference)
    if raw_preference is not None and preference is None and not _is_nan(raw_preference):
        problems.add(row.where, f"preference {json.dumps(raw_preference)} is not a number",
                     "preference is 1 (output_1 better) to 2 (output_2 better), or null")
        return None
    if preference is not None and preference != 0.0 and not 1.0 <= preference <= 2.0:
        problems.add(row.where, f"preference {preference:g} is outside [1, 2]",
                     "preference is 1 (output_1 better) to 2 (output_2 better), 1.5 or 0 "
                     "for a draw, or null for an unreadable annotation")
        return None
    pid = prompt_id(instruction)
    category = _category(row)
    found.prompt(prompt_of(pid, instruction, category), row.where)
    found.answer(pid, generator_1, output_1, row.where)
    found.answer(pid, generator_2, output_2, row.where)
    judge = row.fields.get("annotator")
    raw = {"preference": raw_preference if preference is not None else None,
           "raw_completion": row.fields.get("raw_completion")}
    common: dict[str, Any] = {
        "prompt_id": pid, "judge": judge if isinstance(judge, str) and judge else
        DEFAULT_JUDGE, "first": generator_1, "second": generator_2, "category": category,
        "raw": json.dumps(raw, ensure_ascii=False, default=str)}
    if preference is None:
        found.judgment(row.where, verdict=None, winner=None,
                       error="no preference (AlpacaEval could not read the annotator's "
                       "reply)", **common)
        return generator_1
    # 0 is AlpacaEval's older code for a draw, the same as 1.5.
    weight_a = 0.5 if preference == 0.0 else 2.0 - preference
    winner = winner_of_weight(weight_a)
    found.judgment(row.where, verdict=winner, winner=winner,
                   weight_a=weight_a if soft else None, **common)
    return generator_1


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def model_outputs(prompts: Sequence[Prompt], answers: Sequence[Answer],
                  model: str) -> list[dict[str, str]]:
    """``model``'s answers as AlpacaEval's ``model_outputs.json`` records, in prompt order.

    A prompt's category becomes ``dataset`` (left out when it is ``default``), so an
    exported and re-imported run has the same categories.

    Raises:
        UserError: a prompt that is not a single user message (AlpacaEval has no place for
            a system message or earlier turns), or no answer of ``model`` at all.
    """
    by_prompt = {a.prompt_id: a for a in answers if a.model == model}
    if not by_prompt:
        models = sorted({a.model for a in answers})
        raise UserError(f"model '{model}' has no answers in this run (models with answers: "
                        f"{', '.join(models) or 'none'}). Fix: pass --model with one of them.")
    records: list[dict[str, str]] = []
    for prompt in prompts:
        answer = by_prompt.get(prompt.id)
        if answer is None:
            continue
        if len(prompt.messages) != 1 or prompt.messages[0].role != "user":
            raise UserError(f"prompt '{prompt.id}' has {len(prompt.messages)} messages "
                            f"({', '.join(m.role for m in prompt.messages)}); AlpacaEval's "
                            "model_outputs.json holds one instruction per answer. Fix: export "
                            "a run whose prompts are single user messages.")
        record = {"instruction": prompt.messages[0].content, "output": answer.text,
                  "generator": model}
        if prompt.category != "default":
            record["dataset"] = prompt.category
        records.append(record)
    return records
