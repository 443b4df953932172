"""The run directory: paths, content keys, append-only JSON lines, atomic writes, resume.

A run directory is self-describing::

    runs/<run-id>/
        manifest.json      what was run, with which versions and inputs (rewritten atomically)
        answers.jsonl      one ``Answer`` per line, appended as each finishes
        perplexity.jsonl   one ``PerplexityRecord`` per line
        judgments.jsonl    one ``Judgment`` per line

Files are never rewritten: resuming reads the keys already on disk and does only the rest.
A line torn by a crash (the last one, without its newline) is dropped with a warning and
the work it held is redone.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Generic, TypeVar

from pydantic import ValidationError

from evalharness.errors import UserError
from evalharness.schema import SCHEMA_VERSION, KeyedRecord, Manifest

R = TypeVar("R", bound=KeyedRecord)

ANSWERS = "answers.jsonl"
PERPLEXITY = "perplexity.jsonl"
JUDGMENTS = "judgments.jsonl"
MANIFEST = "manifest.json"


def utc_now() -> str:
    """The current time as ISO-8601 UTC, to the second."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so a reader sees the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class JsonlLog(Generic[R]):
    """An append-only JSON-lines file of one record type.

    Each ``append`` writes one line and flushes it, so a killed process loses at most the
    record being written. ``checkpoint`` fsyncs (called at batch boundaries).
    """

    def __init__(self, path: Path, record_type: type[R]) -> None:
        self.path = path
        self.record_type = record_type
        self._handle: IO[str] | None = None

    def read(self) -> list[R]:
        """All complete records on disk, in order; a torn last line is dropped with a warning.

        Raises:
            UserError: a complete line that is not a valid record (the file was edited or
                belongs to another schema version).
        """
        return list(self._iter_records())

    def _iter_records(self) -> Iterator[R]:
        if not self.path.exists():
            return
        with self.path.open("r", encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                if not line.endswith("\n"):
                    warnings.warn(
                        f"{self.path}:{number}: dropping a torn last line (an interrupted "
                        "write); its work will be redone",
                        stacklevel=3,
                    )
                    return
                try:
                    yield self.record_type.model_validate_json(line)
                except ValidationError as exc:
                    raise UserError(
                        f"{self.path}:{number}: not a valid {self.record_type.__name__} "
                        f"record ({exc.errors()[0]['msg']}). Fix: restore the line or move "
                        "the file away and rerun to recompute it."
                    ) from None

    def keys(self) -> set[str]:
        """The ``key`` field of every record on disk."""
        return {record.key for record in self._iter_records()}

    def append(self, record: R) -> None:
        """Append one record and flush it to the OS."""
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._drop_torn_tail()
            self._handle = self.path.open("a", encoding="utf-8")
        self._handle.write(record.model_dump_json() + "\n")
        self._handle.flush()

    def extend(self, records: Iterable[R]) -> None:
        """Append several records, then fsync."""
        for record in records:
            self.append(record)
        self.checkpoint()

    def checkpoint(self) -> None:
        """Force what was appended onto the disk."""
        if self._handle is not None:
            os.fsync(self._handle.fileno())

    def close(self) -> None:
        """Fsync and close the file."""
        if self._handle is not None:
            self.checkpoint()
            self._handle.close()
            self._handle = None

    def _drop_torn_tail(self) -> None:
        # A torn last line would glue itself to the next record; cut it off before appending.
        # This is the one write that is not an append, and it only removes a partial record.
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with self.path.open("rb+") as handle:
            data = handle.read()
            if data.endswith(b"\n"):
                return
            handle.truncate(data.rfind(b"\n") + 1)


class RunDir:
    """One run directory and the record files in it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def run_id(self) -> str:
        """The directory's name."""
        return self.path.name

    @property
    def manifest_path(self) -> Path:
        """Where the manifest lives."""
        return self.path / MANIFEST

    def log(self, filename: str, record_type: type[R]) -> JsonlLog[R]:
        """The append-only log ``filename`` of ``record_type`` records in this run."""
        return JsonlLog(self.path / filename, record_type)

    def exists(self) -> bool:
        """Whether a manifest has been written here."""
        return self.manifest_path.exists()

    def read_manifest(self) -> Manifest:
        """Read and validate the manifest.

        Raises:
            UserError: no manifest, a corrupt one, or one from a newer evalharness.
        """
        if not self.manifest_path.exists():
            raise UserError(
                f"{self.path}: not a run directory (no {MANIFEST}). "
                "Fix: pass a folder made by evalharness; `evalharness runs` lists them."
            )
        try:
            raw = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise UserError(
                f"{self.manifest_path}:{exc.lineno}: manifest is not valid JSON ({exc.msg})."
                " Fix: restore it from a backup or rerun the command into a new --run-dir."
            ) from None
        version = raw.get("schema_version", 0) if isinstance(raw, dict) else 0
        if version > SCHEMA_VERSION:
            raise UserError(
                f"{self.manifest_path}: written by a newer evalharness (schema {version}, "
                f"this one reads up to {SCHEMA_VERSION}). Fix: upgrade evalharness."
            )
        try:
            return Manifest.model_validate(raw)
        except ValidationError as exc:
            raise UserError(
                f"{self.manifest_path}: invalid manifest ({exc.errors()[0]['msg']} at "
                f"{'.'.join(str(p) for p in exc.errors()[0]['loc'])}). "
                "Fix: rerun the command into a new --run-dir."
            ) from None

    def write_manifest(self, manifest: Manifest) -> None:
        """Atomically replace the manifest."""
        atomic_write_text(self.manifest_path, manifest.model_dump_json(indent=2) + "\n")


def list_runs(root: Path) -> list[tuple[RunDir, Manifest | None]]:
    """Every run directory under ``root``, newest first; unreadable manifests give ``None``."""
    if not root.is_dir():
        return []
    found: list[tuple[RunDir, Manifest | None]] = []
    for child in sorted(root.iterdir()):
        run = RunDir(child)
        if not child.is_dir() or not run.exists():
            continue
        try:
            found.append((run, run.read_manifest()))
        except UserError:
            found.append((run, None))
    found.sort(key=lambda item: item[1].updated if item[1] else "", reverse=True)
    return found


def find_reusable(root: Path, filename: str, record_type: type[R], wanted: set[str],
                  exclude: Path | None = None) -> dict[str, R]:
    """Records with keys in ``wanted`` from other runs under ``root``.

    This is how a league of twenty adapters, or a second ``compare`` against the same
    baseline, generates the baseline's answers once: keys are content, so a record with the
    same key is the same work.
    """
    found: dict[str, R] = {}
    if not wanted or not root.is_dir():
        return found
    for child in sorted(root.iterdir()):
        if exclude is not None and child.resolve() == exclude.resolve():
            continue
        path = child / filename
        if not path.is_file():
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                records = JsonlLog(path, record_type).read()
        except UserError as exc:
            print(f"warning: not reusing {path}: {exc}", file=sys.stderr)
            continue
        for record in records:
            key = record.key
            if key in wanted and key not in found:
                found[key] = record
        if len(found) == len(wanted):
            break
    return found
