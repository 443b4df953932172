"""Rich tables for the terminal: run listings, run contents, perplexity, stage counts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from evalharness.perplexity import PerplexitySummary, summarize
from evalharness.schema import Answer, Manifest, PerplexityRecord
from evalharness.store import ANSWERS, PERPLEXITY, JsonlLog, RunDir


def counts_line(what: str, total: int, on_disk: int, reused: int, computed: int) -> str:
    """One line saying where a stage's records came from.

    >>> counts_line("answers", 10, 4, 2, 4)
    'answers: 10 needed, 4 already in the run, 2 reused from other runs, 4 computed now'
    """
    return (f"{what}: {total} needed, {on_disk} already in the run, {reused} reused from other "
            f"runs, {computed} computed now")


def perplexity_table(summaries: Mapping[str, PerplexitySummary]) -> Table:
    """Perplexity per model: corpus token perplexity, per-example mean, bits per byte."""
    table = Table(title="Perplexity (lower is better)")
    for column in ("model", "examples", "tokens", "mean NLL", "token ppl", "mean example ppl",
                   "bits/byte"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for name, s in summaries.items():
        table.add_row(name, str(s.n_examples), str(s.n_tokens), f"{s.mean_nll:.4f}",
                      f"{s.token_perplexity:.4f}", f"{s.mean_example_perplexity:.4f}",
                      f"{s.bits_per_byte:.4f}")
    return table


def runs_table(runs: Sequence[tuple[RunDir, Manifest | None]]) -> Table:
    """One row per run directory, newest first."""
    table = Table(title="Runs")
    for column in ("run", "command", "status", "models", "updated"):
        table.add_column(column)
    for run, manifest in runs:
        if manifest is None:
            table.add_row(run.run_id, "?", "[red]unreadable manifest[/red]", "", "")
            continue
        table.add_row(run.run_id, manifest.command, manifest.status,
                      ", ".join(c.name for c in manifest.candidates), manifest.updated)
    return table


def answers_table(answers: Sequence[Answer], limit: int) -> Table:
    """The first ``limit`` prompts with each model's answer, side by side."""
    models = list(dict.fromkeys(a.model for a in answers))
    by_prompt: dict[str, dict[str, Answer]] = {}
    for answer in answers:
        by_prompt.setdefault(answer.prompt_id, {})[answer.model] = answer
    table = Table(title=f"Answers (first {min(limit, len(by_prompt))} of {len(by_prompt)} "
                        "prompts)", show_lines=True)
    table.add_column("prompt")
    for model in models:
        table.add_column(model, overflow="fold")
    for prompt_id in list(by_prompt)[:limit]:
        row = by_prompt[prompt_id]
        table.add_row(prompt_id, *(row[m].text if m in row else "-" for m in models))
    return table


def show_run(console: Console, run: RunDir, limit: int = 5) -> None:
    """Print what a run directory holds."""
    manifest = run.read_manifest()
    console.print(f"[bold]{run.path}[/bold]  {manifest.command}  status: {manifest.status}")
    console.print(f"created {manifest.created}, updated {manifest.updated}; "
                  f"backend {manifest.backend or '-'}")
    if manifest.prompts:
        console.print(f"prompts: {manifest.prompts.source} ({manifest.prompts.n}, "
                      f"sha256 {manifest.prompts.sha256[:12]})")
    for spec in manifest.candidates:
        extra = (f" adapter {spec.adapter} (r={spec.lora_rank}, sha256 "
                 f"{(spec.adapter_sha256 or '')[:12]})" if spec.kind == "adapter" else "")
        console.print(f"  {spec.name}: {spec.kind} on {spec.base_model}{extra}")
    answers = JsonlLog(run.path / ANSWERS, Answer).read()
    if answers:
        per_model = Counter(a.model for a in answers)
        console.print("answers: " + ", ".join(f"{m} {n}" for m, n in per_model.items()))
        truncated = Counter(a.model for a in answers if a.finish_reason == "length")
        if truncated:
            console.print("[yellow]cut at max_new_tokens:[/yellow] "
                          + ", ".join(f"{m} {n}" for m, n in truncated.items()))
        console.print(answers_table(answers, limit))
    records = JsonlLog(run.path / PERPLEXITY, PerplexityRecord).read()
    if records:
        by_model: dict[str, list[PerplexityRecord]] = {}
        for record in records:
            by_model.setdefault(record.model, []).append(record)
        console.print(perplexity_table({m: summarize(m, r) for m, r in by_model.items()}))


def resolve_run(name: str, runs_root: Path) -> RunDir:
    """A run given as a path or as a run id under ``runs_root``."""
    path = Path(name)
    if not path.exists() and (runs_root / name).exists():
        path = runs_root / name
    return RunDir(path)
