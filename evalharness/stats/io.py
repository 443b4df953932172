"""Read a judgments file made here or elsewhere (JSON lines of ``Judgment`` records).

For judgments made outside evalharness, three fields may be left out: ``key`` (defaults to
a hash of the line's content, so an exact duplicate line is still recognised), ``judge``
(defaults to ``"external"``) and ``verdict`` (defaults to ``winner``). Every other rule of
the schema holds, and unknown fields are an error (a typo must not pass silently).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from evalharness.errors import UserError
from evalharness.keys import content_key
from evalharness.rows import read_rows
from evalharness.schema import Judgment

_FIX = "Fix: each line must be one JSON object in the judgments schema (docs/statistics.md)."


def read_judgments(path: Path) -> list[Judgment]:
    """All judgments in ``path``, in file order (JSON lines; CSV and Parquet work too).

    Raises:
        UserError: the file is missing, or a line is not a valid judgment (``file:line``).
    """
    out: list[Judgment] = []
    for row in read_rows(path, "judgments file"):
        raw = dict(row.fields)
        raw.setdefault("key", content_key(raw))
        raw.setdefault("judge", "external")
        raw.setdefault("verdict", raw.get("winner"))
        try:
            out.append(Judgment.model_validate(raw))
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "(record)"
            raise UserError(f"{row.where}: field '{field}': {first['msg']}. {_FIX}") from None
    return out
