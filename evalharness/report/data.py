"""Load a run directory into one frozen ``ReportData``: the records and every statistic.

The Markdown and HTML reports render the same ``ReportData``, so they cannot disagree, and
the statistics are computed once, by ``evalharness.stats.summarize`` (the same function
``evalharness stats`` calls). Only the run directory is read, plus the prompt file the
manifest names; when that file is gone the report shows prompt ids instead of text.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Literal

import numpy as np

from evalharness.audit.run import AuditResult, audit_read
from evalharness.errors import UserError
from evalharness.perplexity import PerplexitySummary
from evalharness.perplexity import summarize as summarize_perplexity
from evalharness.prompts import load_run_prompts
from evalharness.report.judges import Raters, rater_figures
from evalharness.schema import Answer, Judgment, Manifest, ModelSpec, PerplexityRecord, Prompt
from evalharness.stats import (
    Interval,
    Perplexity,
    StatsSummary,
    infer_baseline,
    pair_games,
    prompt_scores,
    spec_hyperparameters,
    summarize,
)
from evalharness.stats.current import current_judgments
from evalharness.stats.intervals import bootstrap_weights, percentile_interval
from evalharness.stats.raters import headline
from evalharness.stats.summary import dedupe
from evalharness.store import ANSWERS, JUDGMENTS, PERPLEXITY, JsonlLog, RunDir

Outcome = Literal["win", "tie", "loss", "invalid"]
Scalar = float | int | str


@dataclass(frozen=True)
class PerplexityRow:
    """One model's perplexity with bootstrap intervals over evaluation examples."""

    summary: PerplexitySummary
    """Token perplexity, per-example mean, bits per byte (``evalharness.perplexity``)."""
    token_ppl_interval: Interval
    """Percentile bootstrap interval of the token perplexity (examples resampled)."""
    bits_per_byte_interval: Interval
    """Percentile bootstrap interval of bits per byte (the same resamples)."""


@dataclass(frozen=True)
class PromptOutcome:
    """One prompt seen from one candidate playing the baseline."""

    outcome: Outcome
    """``win``/``loss``: prompt score above/below 0.5; ``tie``: exactly 0.5; ``invalid``:
    no valid game (the prompt is left out of the win rate)."""
    score: float | None
    """Mean of the prompt's valid games (1 win, 0.5 tie, 0 loss); None when invalid."""
    n_invalid: int
    """Invalid judgments of this prompt (one invalid game still leaves a scored prompt)."""


@dataclass(frozen=True)
class ReportData:
    """Everything a report shows, read from one run directory and computed once."""

    run_dir: Path
    """The run directory."""
    manifest: Manifest
    """The run's manifest."""
    baseline: str
    """The model every candidate is compared with."""
    prompts: tuple[Prompt, ...]
    """Prompts in file order; id-only stand-ins when the prompt file is unavailable."""
    prompts_note: str | None
    """Why prompt texts are missing, when they are."""
    answers: tuple[Answer, ...]
    """Every answer in the run."""
    judgments: tuple[Judgment, ...]
    """Every judgment in the run (adapter-vs-adapter games included), duplicate keys
    dropped as the statistics drop them."""
    perplexity: tuple[PerplexityRow, ...]
    """Per model, in manifest order; empty when the run has no perplexity records."""
    stats: StatsSummary
    """Every statistic, from ``evalharness.stats.summarize``."""
    hyperparameters: Mapping[str, Mapping[str, Scalar]]
    """Per model: LoRA shape and training hyperparameters from the manifest."""
    outcomes: Mapping[str, Mapping[str, PromptOutcome]]
    """Candidate -> prompt id -> outcome against the baseline."""
    audit: AuditResult
    """The integrity audit's findings (``evalharness.audit``), kept in ``RUN/audit.json``."""
    recorded: tuple[Judgment, ...] = ()
    """Every judgment in the run that counts (re-judged invalid ones dropped): jurors',
    people's and repeats' too (the cost table adds them all)."""
    raters: Raters | None = None
    """Per-rater win rates and agreement when the run holds several raters (a jury, human
    labels); ``None`` with one judge. ``stats`` is the headline's (``raters.headline``)."""

    @property
    def candidates(self) -> tuple[str, ...]:
        """Models that played the baseline, highest win rate first."""
        return tuple(c.head_to_head.candidate for c in self.stats.candidates)

    def spec(self, name: str) -> ModelSpec | None:
        """The manifest's ``ModelSpec`` of ``name``, if it lists one."""
        return next((c for c in self.manifest.candidates if c.name == name), None)


def perplexity_row(
    model: str,
    records: Sequence[PerplexityRecord],
    *,
    seed: int = 0,
    n_boot: int = 2000,
    confidence: float = 0.95,
) -> PerplexityRow:
    """``perplexity.summarize`` plus bootstrap intervals over the evaluation examples.

    Both figures are ratios of sums (NLL over tokens, NLL over bytes), so each resample
    reweights the examples and recomputes the ratio.

    >>> from evalharness.schema import PerplexityRecord
    >>> rs = [PerplexityRecord(key=str(i), model="m", model_key="k", example_id=str(i),
    ...                        nll_sum=float(i % 3 + 1), n_tokens=2, n_bytes=8)
    ...       for i in range(30)]
    >>> row = perplexity_row("m", rs)
    >>> row.token_ppl_interval.low < row.summary.token_perplexity < row.token_ppl_interval.high
    True
    """
    summary = summarize_perplexity(model, records)
    scored = [r for r in records if r.n_tokens > 0]
    nll = np.array([r.nll_sum for r in scored], dtype=np.float64)
    tokens = np.array([r.n_tokens for r in scored], dtype=np.float64)
    n_bytes = np.array([r.n_bytes for r in scored], dtype=np.float64)
    weights = bootstrap_weights(len(scored), n_boot, seed).astype(np.float64)
    boot_nll = weights @ nll
    token_ppl = np.exp(boot_nll / (weights @ tokens))
    bytes_total = weights @ n_bytes
    with np.errstate(invalid="ignore", divide="ignore"):
        bpb = boot_nll / (math.log(2) * bytes_total)
    return PerplexityRow(
        summary=summary,
        token_ppl_interval=percentile_interval(token_ppl, confidence),
        bits_per_byte_interval=percentile_interval(bpb, confidence),
    )


def prompt_outcomes(
    judgments: Sequence[Judgment], candidate: str, baseline: str
) -> dict[str, PromptOutcome]:
    """Each prompt's outcome for ``candidate`` against ``baseline`` (the stats package's rule).

    >>> from evalharness.schema import Judgment
    >>> def g(pid, first, winner):
    ...     second = "base" if first == "ft" else "ft"
    ...     return Judgment(key=pid + first, prompt_id=pid, judge="j", first=first,
    ...                     second=second, verdict=winner, winner=winner)
    >>> out = prompt_outcomes([g("p1", "ft", "A"), g("p1", "base", "tie"),
    ...                        g("p2", "ft", None), g("p2", "base", None)], "ft", "base")
    >>> out["p1"].outcome, out["p1"].score, out["p2"].outcome, out["p2"].n_invalid
    ('win', 0.75, 'invalid', 2)
    """
    games = pair_games(judgments, candidate, baseline)
    scores = prompt_scores(games)
    invalid: dict[str, int] = {}
    for pid, valid in zip(games.prompt_ids, games.valid, strict=True):
        invalid[pid] = invalid.get(pid, 0) + int(not valid)
    out: dict[str, PromptOutcome] = {}
    for pid, score in zip(scores.prompt_ids, scores.score, strict=True):
        value = float(score)
        outcome: Outcome = "win" if value > 0.5 else "loss" if value < 0.5 else "tie"
        out[pid] = PromptOutcome(outcome, value, invalid.get(pid, 0))
    for pid in scores.excluded:
        out[pid] = PromptOutcome("invalid", None, invalid.get(pid, 0))
    return out


def load_report_data(
    run_dir: Path | str,
    *,
    seed: int = 0,
    n_boot: int = 2000,
    confidence: float = 0.95,
) -> ReportData:
    """Read a judged run directory and compute every statistic once.

    Args:
        run_dir: a run made by ``compare``/``league`` or judged by ``evalharness judge``.
        seed: bootstrap seed (the same seed gives the same intervals as ``evalharness stats``).
        n_boot: bootstrap rounds.
        confidence: interval level.

    Raises:
        UserError: not a run directory, or a run without judgments (the message says which
            command to run).
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise UserError(
            f"{path}: no such run directory. Fix: pass a folder under runs/ "
            "(`evalharness runs` lists them)."
        )
    run = RunDir(path)
    manifest = run.read_manifest()
    with warnings.catch_warnings():
        # A torn last line is a crash's leftover; the report shows what is complete.
        warnings.simplefilter("ignore")
        answers = tuple(JsonlLog(path / ANSWERS, Answer).read())
        recorded = tuple(current_judgments(JsonlLog(path / JUDGMENTS, Judgment).read()))
        ppl_records = JsonlLog(path / PERPLEXITY, PerplexityRecord).read()
    if not recorded:
        raise UserError(
            f"{path}: the run has no judgments ({JUDGMENTS} is missing or empty), so there "
            f"is nothing to report. Fix: judge it first: `evalharness judge {path}` (or make "
            "a judged run with `evalharness compare`); `evalharness show` prints the answers "
            "and perplexity of an unjudged run."
        )
    # A run may hold human labels, repeats and several jurors: the headline reads one source.
    head = headline(recorded, manifest.judge, tuple(manifest.jury))
    judgments = head.judgments or list(recorded)
    models = {m for j in judgments for m in (j.first, j.second)}
    if manifest.baseline is not None and manifest.baseline in models:
        baseline = manifest.baseline
    else:
        baseline = infer_baseline(judgments)

    by_model: dict[str, list[PerplexityRecord]] = {}
    for record in ppl_records:
        by_model.setdefault(record.model, []).append(record)
    order = [c.name for c in manifest.candidates]
    ordered = sorted(by_model, key=lambda m: (order.index(m) if m in order else len(order), m))
    perplexity = tuple(
        perplexity_row(m, by_model[m], seed=seed, n_boot=n_boot, confidence=confidence)
        for m in ordered
        if any(r.n_tokens > 0 for r in by_model[m])
    )
    ppl_for_stats = {
        row.summary.model: Perplexity(row.summary.token_perplexity, row.summary.bits_per_byte)
        for row in perplexity
    }
    hyper = {c.name: spec_hyperparameters(c) for c in manifest.candidates}
    stats = summarize(
        judgments,
        baseline,
        seed=seed,
        n_boot=n_boot,
        confidence=confidence,
        perplexity=ppl_for_stats or None,
        hyperparameters={k: v for k, v in hyper.items() if v and k != baseline} or None,
    )
    prompts, note = load_run_prompts(manifest, answers, judgments)
    unique, _ = dedupe(judgments)
    outcomes = {
        c.head_to_head.candidate: MappingProxyType(
            prompt_outcomes(unique, c.head_to_head.candidate, baseline)
        )
        for c in stats.candidates
    }
    return ReportData(
        run_dir=path,
        manifest=manifest,
        baseline=baseline,
        prompts=prompts,
        prompts_note=note,
        answers=answers,
        judgments=tuple(unique),
        perplexity=perplexity,
        stats=stats,
        hyperparameters=MappingProxyType({k: MappingProxyType(v) for k, v in hyper.items()}),
        outcomes=MappingProxyType(outcomes),
        audit=audit_read(path, answers, prompts, recorded, baseline),
        recorded=recorded,
        raters=rater_figures(recorded, head, baseline,
                             [c.head_to_head.candidate for c in stats.candidates], seed=seed,
                             n_boot=min(n_boot, 1000), confidence=confidence),
    )
