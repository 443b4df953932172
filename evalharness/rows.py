"""Read tabular records (JSON lines, CSV, Parquet, or a `datasets` dataset) with locations.

Prompt sets and perplexity data share this reader, so both accept the same formats and both
report errors as ``file:line``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalharness.errors import UserError

SUPPORTED = ".jsonl, .json (JSON lines), .csv, .parquet, or a folder saved by datasets"


@dataclass(frozen=True)
class Row:
    """One record and where it came from."""

    where: str
    """``file:line`` (JSON lines, CSV) or ``file:row N`` (Parquet, datasets)."""
    fields: dict[str, Any]
    """The record's fields; missing CSV cells are absent, not NaN."""


def read_rows(path: Path, what: str) -> list[Row]:
    """Read every record of ``path``.

    Args:
        path: a ``.jsonl``/``.json``/``.csv``/``.parquet`` file, or a folder written by
            ``datasets.Dataset.save_to_disk`` (or holding data files ``datasets`` can load).
        what: what the file is for, used in messages ("prompt set", "perplexity data").

    Raises:
        UserError: the file is missing, of an unknown format, or a line is not a JSON object.
    """
    if not path.exists():
        raise UserError(f"{path}: {what} not found. Fix: check the path (formats: {SUPPORTED}).")
    if path.is_dir():
        return _read_datasets_dir(path, what)
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".json"}:
        return _read_jsonl(path, what)
    if suffix in {".csv", ".parquet"}:
        return _read_pandas(path, suffix)
    raise UserError(
        f"{path}: unknown {what} format '{suffix or '(no extension)'}'. Fix: use {SUPPORTED}."
    )


def _read_jsonl(path: Path, what: str) -> list[Row]:
    rows: list[Row] = []
    problems: list[str] = []
    text = path.read_text(encoding="utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(value, dict):
            problems.append(f"{where}: expected a JSON object, got {type(value).__name__}")
            continue
        rows.append(Row(where, value))
    if problems:
        raise UserError(
            f"{path}: {len(problems)} line(s) are not JSON objects:\n  "
            + "\n  ".join(problems[:20])
            + f"\nFix: each line of a {what} must be one JSON object."
        )
    return rows


def _clean_cell(value: Any) -> Any:
    # pandas reads empty CSV cells as NaN; a missing optional field must look missing.
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def _read_pandas(path: Path, suffix: str) -> list[Row]:
    import pandas as pd

    try:
        frame = pd.read_csv(path, dtype=str) if suffix == ".csv" else pd.read_parquet(path)
    except Exception as exc:  # pandas raises many types for unreadable files
        raise UserError(f"{path}: cannot read ({exc}). Fix: check the file is valid.") from None
    rows: list[Row] = []
    # CSV line numbers: header is line 1, first record line 2 (true unless cells hold newlines).
    offset = 2 if suffix == ".csv" else 0
    for index, record in enumerate(frame.to_dict(orient="records")):
        fields = {str(k): _clean_cell(v) for k, v in record.items()}
        where = f"{path}:{index + offset}" if suffix == ".csv" else f"{path}:row {index}"
        rows.append(Row(where, {k: v for k, v in fields.items() if v is not None}))
    return rows


def _read_datasets_dir(path: Path, what: str) -> list[Row]:
    import datasets

    try:
        loaded: Any = datasets.load_from_disk(str(path))
    except Exception:
        try:
            loaded = datasets.load_dataset(str(path), split="train")
        except Exception as exc:
            raise UserError(
                f"{path}: not a {what} folder datasets can read ({exc}). "
                f"Fix: pass a file ({SUPPORTED})."
            ) from None
    if isinstance(loaded, datasets.DatasetDict):
        split = "test" if "test" in loaded else next(iter(loaded))
        loaded = loaded[split]
    return [
        Row(f"{path}:row {i}", {k: _clean_cell(v) for k, v in dict(rec).items() if v is not None})
        for i, rec in enumerate(loaded)
    ]

