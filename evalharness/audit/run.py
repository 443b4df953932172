"""Run every detector over a run directory, and keep the findings in it.

``audit_records`` is the pure core: answers, prompts and judgments in, findings out.
``audit_run`` reads a run directory, and reuses ``RUN/audit.json`` when nothing it depends
on changed (the answers' and judgments' keys, the prompt set, the thresholds and the
detectors' version are its fingerprint); otherwise it recomputes and replaces the file
atomically, so a killed audit leaves the old findings or the new ones, never half.
``compare``, ``league``, ``stats``, ``report`` and ``audit`` all go through it.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from evalharness.audit.config import AuditConfig
from evalharness.audit.findings import (
    SEVERITY_ORDER,
    CandidateAnswers,
    Finding,
    Severity,
    worst,
)
from evalharness.audit.judge_health import judge_health
from evalharness.keys import content_key
from evalharness.rater_names import is_repeat
from evalharness.schema import Answer, Judgment, Prompt, Record
from evalharness.store import ANSWERS, JUDGMENTS, JsonlLog, RunDir, atomic_write_text, utc_now

AUDIT_FILE = "audit.json"
"""The findings of a run directory's last audit, with the fingerprint they were made for."""
AUDIT_VERSION = 1
"""Bumped whenever a detector changes what it finds: stored findings are then recomputed."""

AnswerDetector = Callable[[CandidateAnswers, AuditConfig], list[Finding]]
JudgedDetector = Callable[[CandidateAnswers, Sequence[Judgment], AuditConfig], list[Finding]]


def answer_detectors() -> tuple[AnswerDetector, ...]:
    """Every detector that reads one candidate's answers (docs/audit.md lists their ids)."""
    from evalharness.audit import addressing, degenerate, duplicates, leakage

    return (
        addressing.judge_addressing,
        duplicates.duplicate_answers,
        degenerate.empty_answers,
        degenerate.truncated_answers,
        degenerate.repetition_loops,
        degenerate.prompt_echoes,
        degenerate.refusals,
        leakage.reference_leak,
    )


def judged_detectors() -> tuple[JudgedDetector, ...]:
    """Detectors that also read the candidate's judgments against the baseline."""
    from evalharness.audit import length_gaming

    return (length_gaming.length_gaming,)


class AuditRecord(Record):
    """What ``RUN/audit.json`` holds."""

    fingerprint: str
    """Content key of everything the findings depend on (see the module docstring)."""
    created: str
    """ISO-8601 UTC time of the audit."""
    findings: tuple[Finding, ...]
    """Every finding, most severe first."""


@dataclass(frozen=True)
class AuditResult:
    """The findings of one audit, and whether they were computed now or reused."""

    findings: tuple[Finding, ...]
    """Every finding, most severe first."""
    fingerprint: str
    """What they were computed for."""
    reused: bool = False
    """Whether they came from ``RUN/audit.json`` unchanged."""
    answers_audited: bool = True
    """False when only judgments were available (a judgments file alone): the answer
    detectors did not run."""

    def of(self, model: str) -> tuple[Finding, ...]:
        """Findings about ``model``'s answers, and the judge's findings on its games."""
        return tuple(f for f in self.findings if model in (f.subject, f.about))

    def flags(self, model: str) -> str:
        """The leaderboard cell: ``severe: a, b`` / ``warning: c``, or ``-`` when clean.

        >>> f = Finding(subject="m", check="repetition-loop", severity="warning", summary="s")
        >>> AuditResult((f,), "x").flags("m"), AuditResult((f,), "x").flags("other")
        ('warning: repetition-loop', '-')
        """
        mine = self.of(model)
        level = worst(mine)
        if level is None:
            return "-"
        checks = dict.fromkeys(f.check for f in mine if f.severity == level)
        return f"{level}: {', '.join(checks)}"

    @property
    def worst(self) -> Severity | None:
        """The highest severity found, ``None`` when clean."""
        return worst(self.findings)


def _sorted(findings: Sequence[Finding]) -> tuple[Finding, ...]:
    return tuple(sorted(findings, key=lambda f: (-SEVERITY_ORDER[f.severity], f.subject,
                                                 f.about or "", f.check)))


def identical_answers(answers: Sequence[Answer], baseline: str) -> dict[str, set[str]]:
    """Per model, the prompt ids where its answer is exactly the baseline's.

    >>> a = Answer(key="k", prompt_id="p", model="base", model_key="b", text="x",
    ...            n_tokens=1, finish_reason="stop", seconds=0.0)
    >>> identical_answers([a, a.model_copy(update={"model": "ft"})], "base")
    {'ft': {'p'}}
    """
    reference = {a.prompt_id: a.text for a in answers if a.model == baseline}
    same: dict[str, set[str]] = {}
    for a in answers:
        if a.model != baseline and reference.get(a.prompt_id) == a.text:
            same.setdefault(a.model, set()).add(a.prompt_id)
    return same


def audit_records(answers: Sequence[Answer], prompts: Sequence[Prompt],
                  judgments: Sequence[Judgment], baseline: str | None,
                  config: AuditConfig) -> tuple[Finding, ...]:
    """Every finding on these records: each model's answers (the baseline's too, compared
    with nothing) and the judges' health on each candidate's games."""
    by_prompt = {p.id: p for p in prompts}
    by_model: dict[str, dict[str, Answer]] = {}
    for a in answers:
        by_model.setdefault(a.model, {})[a.prompt_id] = a
    base = by_model.get(baseline) if baseline is not None else None
    findings: list[Finding] = []
    for model in sorted(by_model):
        own = CandidateAnswers(model, by_model[model], by_prompt,
                               None if model == baseline else base)
        for detect in answer_detectors():
            findings += detect(own, config)
        if model != baseline and baseline is not None:
            games = [j for j in judgments if {j.first, j.second} == {model, baseline}]
            for judged in judged_detectors():
                findings += judged(own, games, config)
    rated = [j for j in judgments if not is_repeat(j.judge)]  # repeats: the noise floor's
    if rated and baseline is not None:
        same: dict[str, Collection[str]] = dict(identical_answers(answers, baseline))
        findings += judge_health(rated, baseline, config, same)
    return _sorted(findings)


def fingerprint(answers: Sequence[Answer], prompts: Sequence[Prompt],
                judgments: Sequence[Judgment], baseline: str | None,
                config: AuditConfig) -> str:
    """Content key of everything an audit of these records reads."""
    return content_key({
        "version": AUDIT_VERSION,
        "answers": sorted(a.key for a in answers),
        "judgments": sorted(j.key for j in judgments),
        "prompts": content_key([p.model_dump() for p in prompts]),
        "baseline": baseline,
        "thresholds": config.fingerprint(),
    })


def _stored(path: Path, wanted: str) -> AuditRecord | None:
    try:
        record = AuditRecord.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # missing, torn or from another version: recompute
    return record if record.fingerprint == wanted else None


def audit_run(run_dir: Path | str, *, config: AuditConfig | None = None,
              baseline: str | None = None, write: bool = True) -> AuditResult:
    """Audit a run directory, reusing ``RUN/audit.json`` when its inputs are unchanged.

    Args:
        run_dir: a run directory (answers, judgments or both).
        config: thresholds (default: the shipped ones).
        baseline: the model the others were compared with (default: the manifest's).
        write: store new findings in the run directory (skipped quietly when it is
            read-only: the findings are still returned).
    """
    from evalharness.prompts import load_run_prompts
    from evalharness.stats import infer_baseline
    from evalharness.stats.current import current_judgments

    path = Path(run_dir)
    manifest = RunDir(path).read_manifest()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a torn last line is reported by the run's readers
        answers = JsonlLog(path / ANSWERS, Answer).read()
        judgments = current_judgments(JsonlLog(path / JUDGMENTS, Judgment).read())
    prompts, _ = load_run_prompts(manifest, answers, judgments)
    if baseline is None:
        baseline = manifest.baseline
        if baseline is None and judgments:
            baseline = infer_baseline(judgments)
    return audit_read(path, answers, prompts, judgments, baseline, config=config, write=write)


def audit_read(run_dir: Path, answers: Sequence[Answer], prompts: Sequence[Prompt],
               judgments: Sequence[Judgment], baseline: str | None, *,
               config: AuditConfig | None = None, write: bool = True) -> AuditResult:
    """``audit_run`` on records already read from ``run_dir`` (the report has them):
    ``judgments`` as ``stats.current.current_judgments`` leaves them (duplicates are dropped
    here)."""
    from evalharness.stats.summary import dedupe

    config = config or AuditConfig()
    judgments, _ = dedupe(judgments)
    wanted = fingerprint(answers, prompts, judgments, baseline, config)
    stored = _stored(run_dir / AUDIT_FILE, wanted)
    if stored is not None:
        return AuditResult(stored.findings, wanted, reused=True)
    findings = audit_records(answers, prompts, judgments, baseline, config)
    if write:
        record = AuditRecord(fingerprint=wanted, created=utc_now(), findings=findings)
        # A read-only run (an archive, a mount) still gets its findings shown.
        with contextlib.suppress(OSError):
            atomic_write_text(run_dir / AUDIT_FILE, record.model_dump_json(indent=1) + "\n")
    return AuditResult(findings, wanted)


def audit_judgments(judgments: Sequence[Judgment], baseline: str,
                    config: AuditConfig | None = None) -> AuditResult:
    """Judge health alone, for a judgments file without the answers beside it."""
    config = config or AuditConfig()
    findings = _sorted(judge_health(judgments, baseline, config))
    return AuditResult(findings, fingerprint([], [], judgments, baseline, config),
                       answers_audited=False)


def audit_file(path: Path, judgments: Sequence[Judgment], baseline: str,
               config: AuditConfig | None = None) -> AuditResult:
    """The audit of a judgments file: the whole run's when the file is a run directory's
    ``judgments.jsonl`` (its answers are beside it), else judge health alone."""
    from evalharness.store import MANIFEST

    if path.name == JUDGMENTS and (path.parent / MANIFEST).is_file():
        return audit_run(path.parent, config=config, baseline=baseline)
    return audit_judgments(judgments, baseline, config)
