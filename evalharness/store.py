"""The run directory: paths, content keys, append-only JSON lines, atomic writes, resume.

A run directory is self-describing::

    runs/<run-id>/
        manifest.json      what was run, with which versions and inputs (rewritten atomically)
        answers.jsonl      one ``Answer`` per line, appended as each finishes
        perplexity.jsonl   one ``PerplexityRecord`` per line
        judgments.jsonl    one ``Judgment`` per line
        .lock              held (``flock``) by the one command writing the run

Files are never rewritten: resuming reads the keys already on disk and does only the rest.
A line torn by a crash (the last one, without its newline) is dropped with a warning and
the work it held is redone.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Generic, TypeVar

from pydantic import ValidationError

from evalharness.errors import UserError
from evalharness.redact import redact_argv
from evalharness.schema import SCHEMA_VERSION, KeyedRecord, Manifest

R = TypeVar("R", bound=KeyedRecord)

ANSWERS = "answers.jsonl"
PERPLEXITY = "perplexity.jsonl"
JUDGMENTS = "judgments.jsonl"
MANIFEST = "manifest.json"
LOCK = ".lock"


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

    def check_writable(self) -> None:
        """Refuse, before anything is written, a run directory this process cannot write.

        Raises:
            UserError: the path (or a folder above it) is a file, or the folder is read-only.
        """
        for folder in (self.path, *self.path.parents):
            if folder.exists() and not folder.is_dir():
                what = "the run directory" if folder == self.path else \
                    f"{folder}, a folder above the run directory,"
                raise UserError(f"{self.path}: {what} is a file, not a folder. Fix: pass a "
                                "folder (or a path that does not exist yet) as --run-dir / "
                                "--runs-root.")
            if folder.exists():
                if not os.access(folder, os.W_OK | os.X_OK):
                    raise _unwritable(self.path, folder, "not writable")
                break

    @contextmanager
    def lock(self, argv: Sequence[str] = ()) -> Iterator[None]:
        """Hold the run's writer lock: one command writes a run directory at a time.

        An advisory ``flock`` on ``RUN/.lock``; the file names the holder (pid, command line
        with secrets masked, start time) for the message a second writer gets. The kernel
        drops the lock when its process dies, so a lock left by a killed run is taken over.
        Re-entrant within a process (``compare`` calls ``league``, which writes reports).

        Raises:
            UserError: another process holds the lock, or the folder cannot be written.
        """
        key = self.path.resolve()
        if key in _HELD:
            _HELD[key] += 1
            try:
                yield
            finally:
                _HELD[key] -= 1
            return
        self.check_writable()
        fd = self._open_lock()
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UserError(_held_message(self.path, _read_holder(fd))) from None
            # Ours now: replace whatever a dead holder left, so the next reader sees us.
            holder = {"pid": os.getpid(), "argv": list(redact_argv(argv or sys.argv)),
                      "started": utc_now()}
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(holder) + "\n").encode("utf-8"), 0)
            _HELD[key] = 1
            try:
                yield
            finally:
                del _HELD[key]
                os.ftruncate(fd, 0)  # released: the file must not name a process gone
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    def _open_lock(self) -> int:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            return os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise _unwritable(self.path, self.path, exc.strerror or "not writable") \
                    from None
            raise UserError(f"{self.path}: cannot use this folder as a run directory "
                            f"({exc.strerror or exc}). Fix: pass another --run-dir.") from None


_HELD: dict[Path, int] = {}
"""Run directories whose lock this process holds, and how deeply (re-entrant holds)."""


def _unwritable(run: Path, folder: Path, why: str) -> UserError:
    return UserError(f"{run}: cannot write the run directory ({folder}: {why}). Fix: make it "
                     "writable (chmod u+w), or pass a --run-dir (or --runs-root) you can "
                     "write; the records already there are reused from any run under "
                     "--runs-root.")


def _read_holder(fd: int) -> dict[str, object]:
    # The holder writes its name just after taking the lock: wait briefly for a whole line.
    for _ in range(20):
        data = os.pread(fd, 65536, 0)
        if data.endswith(b"\n"):
            try:
                found = json.loads(data)
            except ValueError:
                found = None
            if isinstance(found, dict):
                return found
        time.sleep(0.05)
    return {}


def _held_message(run: Path, holder: dict[str, object]) -> str:
    argv = holder.get("argv")
    command = " ".join(str(a) for a in argv) if isinstance(argv, list) else "unknown command"
    pid = holder.get("pid", "unknown")
    since = f" since {holder['started']}" if holder.get("started") else ""
    return (f"{run} is being written by another evalharness process (pid {pid}{since}: "
            f"{command}). Only one command writes a run directory at a time. Fix: wait for "
            f"it to finish (or stop it: kill {pid}), then rerun; its results are kept and "
            "reused. To run both at once, pass this one another --run-dir.")


def resolve_run(name: str, runs_root: Path) -> RunDir:
    """A run given as a path or as a run id under ``runs_root``."""
    path = Path(name)
    if not path.exists() and (runs_root / name).exists():
        path = runs_root / name
    return RunDir(path)


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
