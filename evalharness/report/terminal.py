"""Rich tables for the terminal: run listings, run contents, perplexity, stage counts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from rich.text import Text

from evalharness.console import literal
from evalharness.perplexity import PerplexitySummary, summarize
from evalharness.report.blocks import Paragraph, Section
from evalharness.report.blocks import Table as ReportTable
from evalharness.report.markdown import report_sections
from evalharness.schema import Answer, Manifest, PerplexityRecord
from evalharness.store import ANSWERS, JUDGMENTS, PERPLEXITY, JsonlLog, RunDir

if TYPE_CHECKING:
    from evalharness.evaluate import LeagueResult


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
        table.add_row(literal(name), str(s.n_examples), str(s.n_tokens), f"{s.mean_nll:.4f}",
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
            table.add_row(literal(run.run_id), "?", Text("unreadable manifest", style="red"),
                          "", "")
            continue
        table.add_row(literal(run.run_id), literal(manifest.command), literal(manifest.status),
                      literal(", ".join(c.name for c in manifest.candidates)),
                      literal(manifest.updated))
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
        table.add_column(literal(model), overflow="fold")
    for prompt_id in list(by_prompt)[:limit]:
        row = by_prompt[prompt_id]
        table.add_row(literal(prompt_id),
                      *(literal(row[m].text) if m in row else "-" for m in models))
    return table


def show_run(console: Console, run: RunDir, limit: int = 5) -> None:
    """Print what a run directory holds."""
    manifest = run.read_manifest()
    # Everything below but the styles comes from the run's files: shown through `literal`.
    console.print(Text.assemble(literal(run.path, "bold"), literal(
        f"  {manifest.command}  status: {manifest.status}")))
    console.print(literal(f"created {manifest.created}, updated {manifest.updated}; "
                          f"backend {manifest.backend or '-'}"))
    if manifest.prompts:
        console.print(literal(f"prompts: {manifest.prompts.source} ({manifest.prompts.n}, "
                              f"sha256 {manifest.prompts.sha256[:12]})"))
    for spec in manifest.candidates:
        extra = (f" adapter {spec.adapter} (r={spec.lora_rank}, sha256 "
                 f"{(spec.adapter_sha256 or '')[:12]})" if spec.kind == "adapter" else "")
        console.print(literal(f"  {spec.name}: {spec.kind} on {spec.base_model}{extra}"))
    answers = JsonlLog(run.path / ANSWERS, Answer).read()
    if answers:
        per_model = Counter(a.model for a in answers)
        console.print(literal("answers: " + ", ".join(f"{m} {n}" for m, n in per_model.items())))
        truncated = Counter(a.model for a in answers if a.finish_reason == "length")
        if truncated:
            console.print(Text.assemble(
                Text("cut at max_new_tokens: ", style="yellow"),
                literal(", ".join(f"{m} {n}" for m, n in truncated.items()))))
        console.print(answers_table(answers, limit))
    records = JsonlLog(run.path / PERPLEXITY, PerplexityRecord).read()
    if (run.path / JUDGMENTS).is_file():
        # A judged run: its head-to-head results, as the reports show them.
        from evalharness.report.data import load_report_data

        summary = load_report_data(run.path, n_boot=1000)
        print_sections(console, [s for s in report_sections(summary)
                                 if s.id in {"summary", "findings"}])
    if records:
        by_model: dict[str, list[PerplexityRecord]] = {}
        for record in records:
            by_model.setdefault(record.model, []).append(record)
        console.print(perplexity_table({m: summarize(m, r) for m, r in by_model.items()}))


def print_sections(console: Console, sections: Sequence[Section]) -> None:
    """The report's sections as rich text and tables (figures are left to the HTML)."""
    for section in sections:
        console.rule(literal(section.title, "bold"))
        for block in section.blocks:
            if isinstance(block, Paragraph):
                console.print(literal(block.text), highlight=False)
            elif isinstance(block, ReportTable):
                # Captions and headers name models ("Head to head against NAME").
                table = Table(title=literal(block.caption))
                for index, column in enumerate(block.columns):
                    table.add_column(literal(column), overflow="fold",
                                     justify="right" if block.numeric(index) else "left")
                for row in block.rows:
                    table.add_row(*(literal(cell) for cell in row))
                console.print(table)


def _footer(console: Console, result: LeagueResult) -> None:
    a, j, p = result.answers, result.judging, result.perplexity
    console.rule()
    console.print(counts_line("answers", a.total, a.on_disk, a.reused, a.computed))
    if p is not None:
        console.print(counts_line("perplexity records", p.total, p.on_disk, p.reused,
                                  p.computed))
    console.print(counts_line("judgments", j.total, j.on_disk, j.reused, j.computed)
                  + f"; {j.invalid} invalid; {j.calls} judge calls now, "
                  f"{j.usage.prompt_tokens + j.usage.completion_tokens} tokens, "
                  f"${j.cost_usd:.4f}")
    if result.serving_check:
        console.print(literal(f"serving self-check passed: {result.serving_check}"),
                      highlight=False)
    console.print(literal(f"run directory: {result.run_dir}"))
    for path in result.reports:
        console.print(literal(f"report: {path}"))


def mean_lengths(answers: Sequence[Answer]) -> dict[str, float]:
    """Mean answer length in characters per model.

    >>> a = Answer(key="k", prompt_id="p", model="m", model_key="x", text="abcd", n_tokens=1,
    ...            finish_reason="stop", seconds=0.0)
    >>> mean_lengths([a, a.model_copy(update={"text": "ab"})])
    {'m': 3.0}
    """
    totals: dict[str, list[int]] = {}
    for answer in answers:
        totals.setdefault(answer.model, []).append(len(answer.text))
    return {model: sum(lengths) / len(lengths) for model, lengths in totals.items()}


def print_compare(console: Console, result: LeagueResult) -> None:
    """``compare``'s summary: the head to head, perplexity of both, judge bias, cost."""
    wanted = {"summary", "findings", "judges", "perplexity", "bias", "cost"}
    print_sections(console, [s for s in report_sections(result.report) if s.id in wanted])
    lengths = mean_lengths(result.report.answers)
    console.print(literal("mean answer length: " + ", ".join(
        f"{model} {chars:.0f} chars" for model, chars in lengths.items())))
    _footer(console, result)


def print_league(console: Console, result: LeagueResult) -> None:
    """``league``'s leaderboard, paradox analysis, judge bias, hyperparameters and cost."""
    print_sections(console, [s for s in report_sections(result.report)
                             if s.id != "provenance"])
    _footer(console, result)
