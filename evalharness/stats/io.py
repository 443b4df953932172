"""Read a judgments file made here or elsewhere (JSON lines of ``Judgment`` records).

For judgments made outside evalharness, three fields may be left out: ``key`` (defaults to
a hash of the line's content, so an exact duplicate line is still recognised), ``judge``
(defaults to ``"external"``) and ``verdict`` (defaults to ``winner``). A line needs a hard
``winner``, a soft preference ``weight_a``, or both (``"winner": null`` alone is an invalid
judgment, counted; ``"winner": null`` with a ``weight_a`` is a soft-only game). Every other
rule of the schema holds: ``weight_a`` a probability, a winner that does not contradict it
(``Judgment.contradiction``), and unknown fields are an error (a typo must not pass
silently).
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from evalharness.errors import UserError
from evalharness.keys import content_key
from evalharness.rows import read_rows
from evalharness.schema import Judgment
from evalharness.stats.current import current_judgments
from evalharness.stats.summary import infer_baseline
from evalharness.store import MANIFEST, RunDir

_FIX = "Fix: each line must be one JSON object in the judgments schema (docs/statistics.md)."
_FIELD_FIX = {
    "weight_a": "Fix: weight_a is P(A better), a probability from 0 to 1; write it in that "
    "range, or leave the field out where the judge gave none.",
    "first_length": "Fix: lengths are answer lengths in characters (whole numbers from 0); "
    "leave the field out where unknown.",
    "second_length": "Fix: lengths are answer lengths in characters (whole numbers from 0); "
    "leave the field out where unknown.",
    "winner": 'Fix: winner must be "A", "B", "tie", or null for an invalid judgment.',
}
_RECORD_FIX = {
    "same_model": "Fix: name two different models in 'first' and 'second' (a model against "
    "itself compares nothing), or delete the line.",
    "blank_name": "Fix: every judgment needs a prompt_id and the names of both models.",
}


def read_judgments(path: Path) -> list[Judgment]:
    """All judgments in ``path``, in file order (JSON lines; CSV and Parquet work too),
    without the invalid records a re-judged game superseded (``current.current_judgments``).

    Besides the schema's own rules (``weight_a`` a probability, two different models), a
    repeated ``key`` of the same two models must repeat the same judgment: duplicates are
    dropped, so a key reused for another prompt or another verdict would silently lose one.

    Raises:
        UserError: the file is missing, empty, a run directory, or a line is not a valid
            judgment (``file:line``).
    """
    if path.is_dir() and (path / "judgments.jsonl").is_file():
        raise UserError(
            f"{path} is a run directory, not a judgments file. "
            f"Fix: evalharness stats {path / 'judgments.jsonl'}"
        )
    rows = read_rows(path, "judgments file")
    if not rows:
        raise UserError(
            f"{path}: the judgments file holds no judgments (it is empty). Fix: pass a file "
            "with one judgment per line (schema and example in docs/statistics.md)."
        )
    out: list[Judgment] = []
    seen: dict[tuple[str, str, str], tuple[str, Judgment]] = {}
    for row in rows:
        raw = dict(row.fields)
        if isinstance(raw.get("prompt_id"), int) and not isinstance(raw["prompt_id"], bool):
            raw["prompt_id"] = str(raw["prompt_id"])  # as prompt sets read ids (rows.text_id)
        for name in ("weight_a", "first_length", "second_length", "cost_usd", "attempts"):
            if isinstance(raw.get(name), bool):  # pydantic would take true for 1
                raise UserError(f"{row.where}: field '{name}' is {json.dumps(raw[name])}, not a "
                                f"number. {_FIELD_FIX.get(name, _FIX)}")
        if "winner" not in raw and raw.get("weight_a") is None:
            raise UserError(
                f"{row.where}: the judgment has neither a 'winner' nor a soft preference "
                "'weight_a', so it says nothing. Fix: add \"winner\": \"A\", \"B\" or "
                "\"tie\", or \"weight_a\": P(A better) from 0 to 1 (or \"winner\": null to "
                "record a judgment the judge could not make; it is counted as invalid)."
            )
        raw.setdefault("key", content_key(raw))
        raw.setdefault("judge", "external")
        raw.setdefault("verdict", raw.get("winner"))
        try:
            judgment = Judgment.model_validate(raw)
        except ValidationError as exc:
            raise UserError(_invalid(row.where, exc)) from None
        why = judgment.contradiction()
        if why is not None:
            raise UserError(
                f"{row.where}: {why}: the hard verdict and the soft preference contradict "
                "each other, so which one counts would change the result. Fix: correct "
                "the one that is wrong; if the judge sampled its verdict (temperature above "
                "0), keep weight_a and set \"winner\": null."
            )
        game = (judgment.key, judgment.first, judgment.second)
        if game in seen and seen[game][1].valid and judgment.valid:
            _check_same(row.where, judgment, *seen[game])
        elif game not in seen or not seen[game][1].valid:
            seen[game] = (row.where, judgment)  # a re-judged invalid game: the new one counts
        out.append(judgment)
    return current_judgments(out)


def _invalid(where: str, exc: ValidationError) -> str:
    first = exc.errors()[0]
    if not first["loc"]:  # a rule of the whole record (Judgment's model validator)
        return f"{where}: {first['msg']}. {_RECORD_FIX.get(first['type'], _FIX)}"
    field = ".".join(str(p) for p in first["loc"])
    if first["type"] == "extra_forbidden":
        return (f"{where}: unknown field '{field}'. Fix: remove or rename it; the fields are "
                f"{', '.join(Judgment.model_fields)} (docs/statistics.md).")
    got = "" if first["type"] == "missing" else f" (got {_shown(first['input'])})"
    return f"{where}: field '{field}': {first['msg']}{got}. {_FIELD_FIX.get(field, _FIX)}"


def _shown(value: object) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_same(where: str, judgment: Judgment, first_where: str, first: Judgment) -> None:
    """Refuse a repeated key that says something else than its first line."""
    said = [
        f"{name} {_shown(getattr(first, name))} there, {_shown(getattr(judgment, name))} here"
        for name in ("prompt_id", "winner", "weight_a")
        if getattr(first, name) != getattr(judgment, name)
    ]
    if said:
        raise UserError(
            f"{where}: key '{judgment.key}' ({judgment.first} vs {judgment.second}) was already "
            f"used at {first_where} by another judgment ({'; '.join(said)}); a repeated key is "
            "a duplicate and dropped, so one of the two would silently not count. Fix: give "
            "each judgment its own key (or leave 'key' out: it defaults to a hash of the "
            "line), or delete the line that is wrong."
        )


def baseline_for(path: Path, judgments: list[Judgment]) -> str:
    """The baseline of the judgments in ``path``: the one its run's manifest names when the
    file sits in a run directory (``stats RUN/judgments.jsonl``), else ``infer_baseline``.

    A compare run judges one pair, where both models are in every game, so only the run
    can tell which one is the baseline.

    Raises:
        UserError: no manifest beside the file and the judgments do not tell (see
            ``infer_baseline``).
    """
    if (path.parent / MANIFEST).is_file():
        try:
            named = RunDir(path.parent).read_manifest().baseline
        except UserError:
            named = None  # an unreadable manifest: the judgments alone may still tell
        if named is not None and any(named in (j.first, j.second) for j in judgments):
            return named
    return infer_baseline(judgments)
