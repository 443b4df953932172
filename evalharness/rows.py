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
        return _read_pandas(path, suffix, what)
    raise UserError(
        f"{path}: unknown {what} format '{suffix or '(no extension)'}'. Fix: use {SUPPORTED}."
    )


def read_text_utf8(path: Path, what: str) -> str:
    """The text of ``path``, which must be UTF-8 (a UTF-8 byte-order mark is accepted).

    Never replaces undecodable bytes: a Latin-1 or UTF-16 file read with replacement would
    silently turn accented letters into U+FFFD, and every answer would be to another prompt.

    Raises:
        UserError: naming the encoding the file seems to be in and the first bad byte's
            offset and line.
    """
    data = path.read_bytes()
    utf16 = _utf16_kind(data)
    if utf16:
        raise UserError(
            f"{path}: this {what} is {utf16}, not UTF-8. Fix: re-save it as UTF-8 (e.g. "
            f"iconv -f UTF-16 -t UTF-8 {path.name} > fixed{path.suffix}).")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        bad = data[exc.start]
        line = data.count(b"\n", 0, exc.start) + 1
        raise UserError(
            f"{path}:{line}: {what} is not UTF-8 (byte 0x{bad:02x} at offset {exc.start}, "
            f"line {line}); it looks like {_guess_encoding(data)}. Fix: re-save it as UTF-8 "
            f"(e.g. iconv -f LATIN1 -t UTF-8 {path.name} > fixed{path.suffix})."
        ) from None


def _utf16_kind(data: bytes) -> str | None:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        order = "little" if data.startswith(b"\xff\xfe") else "big"
        return f"UTF-16 ({order}-endian, with a byte-order mark)"
    # UTF-16 without a BOM: ASCII text puts a NUL beside every letter; UTF-8 text has none.
    sample = data[:4096]
    if sample and sample.count(0) * 4 >= len(sample):
        return "UTF-16 (no byte-order mark; many NUL bytes)"
    return None


def _guess_encoding(data: bytes) -> str:
    # Bytes 0x80-0x9f are control codes in Latin-1 but letters and quotes in Windows-1252.
    if any(0x80 <= b <= 0x9F for b in data):
        return "Windows-1252 (Latin-1 with curly quotes)"
    return "Latin-1 (ISO-8859-1)"


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"field '{key}' appears twice")
        seen[key] = value
    return seen


def _read_jsonl(path: Path, what: str) -> list[Row]:
    rows: list[Row] = []
    problems: list[str] = []
    text = read_text_utf8(path, what)
    _refuse_json_array(path, text, what)
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            value = json.loads(line, object_pairs_hook=_no_duplicate_keys)
        except json.JSONDecodeError as exc:
            problems.append(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        except ValueError as exc:  # a duplicated field: which value was meant is unknowable
            problems.append(f"{where}: {exc}")
            continue
        if not isinstance(value, dict):
            problems.append(f"{where}: expected a JSON object, got {type(value).__name__}")
            continue
        rows.append(Row(where, value))
    if problems:
        raise UserError(
            f"{path}: {len(problems)} line(s) are not readable JSON objects:\n  "
            + "\n  ".join(problems[:20])
            + f"\nFix: each line of a {what} must be one JSON object, each field once."
        )
    return rows


def _refuse_json_array(path: Path, text: str, what: str) -> None:
    # A .json file holding one array (or one pretty-printed object) is a common export; read
    # line by line it would give one confusing error per line.
    if not text.lstrip().startswith("["):
        return
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return
    raise UserError(
        f"{path}:1: this {what} is one JSON array, not JSON lines. Fix: write one JSON object "
        f"per line (e.g. jq -c '.[]' {path.name} > {path.stem}.jsonl).")


def _clean_cell(value: Any) -> Any:
    # pandas reads empty CSV cells as NaN; a missing optional field must look missing.
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def _read_pandas(path: Path, suffix: str, what: str) -> list[Row]:
    import io

    import pandas as pd

    try:
        if suffix == ".csv":
            # Decoded here, not by pandas: pandas names neither the encoding nor the line.
            text = read_text_utf8(path, what)
            frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False,
                                na_values=[""])
        else:
            frame = pd.read_parquet(path)
    except UserError:
        raise
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



def text_id(value: Any) -> str:
    """A record's ``id`` as text: a string, or a whole number taken as its decimal digits.

    CSV cells are always text, so ``1`` in a CSV file and ``1`` in JSON lines must be the
    same id; anything else (``1.0``, ``true``, a list) has no single textual form and is
    refused rather than coerced into an id nobody wrote.

    >>> text_id("q-1"), text_id(7)
    ('q-1', '7')

    Raises:
        ValueError: a missing, empty or non-text, non-integer id.
    """
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"'id' must be text (or a whole number), got {type(value).__name__} "
                         f"{json.dumps(value, default=str)[:40]}; write it as a JSON string")
    text = str(value)
    if not text.strip():
        raise ValueError("missing 'id'")
    return text
