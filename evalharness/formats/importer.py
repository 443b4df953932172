"""Write what a format reader returned into a run directory, and read a run for export.

An imported run is an ordinary run directory: ``answers.jsonl``, ``judgments.jsonl``, a
``prompts.jsonl`` of the prompt texts the files held (so reports show them), and a
``manifest.json`` with ``command: import``, the baseline, every model, and the provenance of
each file read (``inputs.sources``: path, sha256, records). Records are appended only when
their key is not on disk yet, so importing the same files again adds nothing.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalharness.errors import UserError
from evalharness.formats.common import Imported, imported_spec
from evalharness.keys import file_sha256
from evalharness.pipeline import bound_inputs, locked_run, prompts_ref, tracked_run, versions
from evalharness.prompts import load_prompt_set
from evalharness.schema import Answer, DataRef, Judgment, Manifest, ModelSpec, Prompt, PromptSet
from evalharness.store import ANSWERS, JUDGMENTS, RunDir, atomic_write_text, utc_now

COMMAND = "import"
PROMPTS_FILE = "prompts.jsonl"


@dataclass(frozen=True)
class ImportResult:
    """What an import wrote."""

    run_dir: Path
    """The run directory."""
    imported: Imported
    """Everything read from the files."""
    new_answers: int
    """Answers appended now (0 when the same files were imported before)."""
    new_judgments: int
    """Judgments appended now."""


def write_import(imported: Imported, run_dir: Path, argv: Sequence[str] | None = None
                 ) -> ImportResult:
    """Write ``imported`` into ``run_dir`` (a new run, or the same import's run: resumed).

    Raises:
        UserError: the run directory holds another command's run or an import of other
            files (what differs is listed), or another process is writing it.
    """
    if not imported.answers and not imported.judgments:
        raise UserError(f"the {imported.format} files hold no answers and no judgments. Fix: "
                        "pass the files the tool wrote (docs/formats.md lists them).")
    run = RunDir(run_dir)
    specs = tuple(imported_spec(name) for name in imported.models)
    sources = [DataRef(name=s.path.name, source=str(s.path.resolve()),
                       sha256=file_sha256(s.path), n=s.n) for s in imported.sources]
    inputs: dict[str, Any] = {"format": imported.format, "baseline": imported.baseline,
                              "files": sorted(s.sha256 for s in sources)}
    now = utc_now()
    judges = sorted({j.judge for j in imported.judgments})
    manifest = Manifest(
        run_id=run.run_id, command=COMMAND, created=now, updated=now, versions=versions(),
        argv=tuple(argv or sys.argv), candidates=specs, baseline=imported.baseline,
        judge=", ".join(judges) or None,
        inputs={**bound_inputs(specs, inputs),
                # Provenance beside the binding: a file moved since is still the same file.
                "sources": [s.model_dump(mode="json") for s in sources]})
    previous = run.read_manifest().inputs if run.exists() else None
    if previous is not None and _same_files(previous, inputs, specs):
        manifest = manifest.model_copy(update={"inputs": {
            **bound_inputs(specs, inputs), "sources": previous.get("sources")}})
    with locked_run(run, manifest), tracked_run(run, manifest) as updates:
        if imported.prompts:
            updates["prompts"] = prompts_ref(_write_prompts(run, imported.prompts))
        new_answers = _append_new(run, ANSWERS, Answer, imported.answers)
        new_judgments = _append_new(run, JUDGMENTS, Judgment, imported.judgments)
    return ImportResult(run.path, imported, new_answers, new_judgments)


def _same_files(previous: dict[str, Any], inputs: dict[str, Any],
                specs: Sequence[ModelSpec]) -> bool:
    """Whether a run's recorded inputs are this import's, wherever the files are now."""
    bound = bound_inputs(specs, inputs)
    return all(previous.get(k) == bound.get(k) for k in bound)


def _write_prompts(run: RunDir, prompts: Sequence[Prompt]) -> PromptSet:
    path = run.path / PROMPTS_FILE
    lines = [json.dumps({"id": p.id, "messages": [m.model_dump() for m in p.messages],
                         "category": p.category}, ensure_ascii=False) for p in prompts]
    text = "\n".join(lines) + "\n"
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        atomic_write_text(path, text)
    return load_prompt_set(path)


def _append_new(run: RunDir, filename: str, record_type: type[Any],
                records: Sequence[Answer] | Sequence[Judgment]) -> int:
    log = run.log(filename, record_type)
    on_disk = log.keys()
    new = [r for r in records if r.key not in on_disk]
    try:
        log.extend(new)
    finally:
        log.close()
    return len(new)


def run_prompts_and_answers(run_dir: Path) -> tuple[tuple[Prompt, ...], list[Answer]]:
    """A run's prompts (from the prompt file its manifest names) and answers, for export.

    Raises:
        UserError: not a run directory, or its prompt file is gone (an export needs the
            prompt texts).
    """
    run = RunDir(run_dir)
    manifest = run.read_manifest()
    if manifest.prompts is None or not Path(manifest.prompts.source).is_file():
        where = "names no prompt set" if manifest.prompts is None else \
            f"names the prompt set {manifest.prompts.source}, which is no longer there"
        raise UserError(f"{run.path}: the run {where}, and an export needs the prompt texts. "
                        "Fix: restore the prompt file, or export from a run that has it.")
    prompts = load_prompt_set(manifest.prompts.source).prompts
    answers = run.log(ANSWERS, Answer).read()
    return prompts, answers
