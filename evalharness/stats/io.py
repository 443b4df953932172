"""Read a judgments file made here or elsewhere (JSON lines of ``Judgment`` records).

For judgments made outside evalharness, three fields may be left out: ``key`` (defaults to
a hash of the line's content, so an exact duplicate line is still recognised), ``judge``
(defaults to ``"external"``) and ``verdict`` (defaults to ``winner``). Every other rule of
the schema holds, and unknown fields are an error (a typo must not pass silently).
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from evalharness.errors import UserError
from evalharness.keys import content_key
from evalharness.schema import Judgment

_FIX = "Fix: each line must be one JSON object in the judgments schema (docs/statistics.md)."


def read_judgments(path: Path) -> list[Judgment]:
    """All judgments in ``path``, in file order.

    Raises:
        UserError: the file is missing, or a line is not a valid judgment (``file:line``).
    """
    if not path.is_file():
        raise UserError(
            f"{path}: judgments file not found. Fix: pass a JSON-lines file of judgments, "
            "e.g. runs/<run-id>/judgments.jsonl."
        )
    out: list[Judgment] = []
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(
                    f"{where}: not valid JSON ({exc.msg} at column {exc.colno}). {_FIX}"
                ) from None
            if not isinstance(raw, dict):
                raise UserError(f"{where}: expected a JSON object. {_FIX}")
            raw.setdefault("key", content_key(raw))
            raw.setdefault("judge", "external")
            raw.setdefault("verdict", raw.get("winner"))
            try:
                out.append(Judgment.model_validate(raw))
            except ValidationError as exc:
                first = exc.errors()[0]
                field = ".".join(str(p) for p in first["loc"]) or "(record)"
                raise UserError(f"{where}: field '{field}': {first['msg']}. {_FIX}") from None
    return out
