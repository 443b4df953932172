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
from evalharness.stats.summary import infer_baseline
from evalharness.store import MANIFEST, RunDir

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
