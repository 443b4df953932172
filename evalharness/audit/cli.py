"""``evalharness audit RUN|FILE`` and ``evalharness audit --probe-judge JUDGE``.

Registered by cli.py. Parsing and printing only: findings come from ``evalharness.audit.run``
and the probe from ``evalharness.audit.probe``; the terminal shows the same Findings section
as the reports.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from evalharness.audit.config import AuditConfig
from evalharness.audit.findings import STRICT_EXIT
from evalharness.errors import UserError
from evalharness.judging.cli import JudgesDirOption

if TYPE_CHECKING:
    from evalharness.audit.run import AuditResult


def _audit_target(target: Path, baseline: str | None, config: AuditConfig) -> AuditResult:
    from evalharness.audit.run import audit_file, audit_run

    if target.is_dir():
        return audit_run(target, config=config, baseline=baseline)
    if not target.is_file():
        raise UserError(f"{target}: no such run directory or judgments file. Fix: pass a "
                        "folder under runs/ (`evalharness runs` lists them) or a judgments "
                        "file (JSON lines).")
    from evalharness.stats import read_judgments
    from evalharness.stats.io import baseline_for

    judgments = read_judgments(target)
    chosen = baseline if baseline is not None else baseline_for(target, judgments)
    return audit_file(target, judgments, chosen, config)


def _print(result: AuditResult) -> None:
    from evalharness.console import output_console
    from evalharness.report.findings import findings_section
    from evalharness.report.terminal import print_sections

    print_sections(output_console(), [findings_section(result)])


def _probe(judge_name: str, judges_dir: Path | None, judge_url: str | None,
           judge_model: str | None, n_prompts: int, seed: int, format_: str,
           out: Path | None) -> None:
    from evalharness.audit.probe import probe_judge, render_text, to_jsonable
    from evalharness.judging.config import resolve_judge
    from evalharness.progress import RichProgress
    from evalharness.store import atomic_write_text

    config = resolve_judge(judge_name, judges_dir).with_overrides(
        model=judge_model, base_url=judge_url)
    with RichProgress() as progress:
        report = probe_judge(config, n_prompts=n_prompts, seed=seed, progress=progress)
    data = json.dumps(to_jsonable(report), indent=2)
    if out is not None:
        try:
            atomic_write_text(out, data + "\n")
        except OSError as exc:
            raise UserError(f"{out}: cannot write the probe report ({exc.strerror}). Fix: "
                            "pass --out a path in a writable folder.") from None
    if format_ == "json":
        typer.echo(data)
    else:
        for line in render_text(report):
            typer.echo(line)
        if out is not None:
            typer.echo(f"probe report: {out}")


def audit(
    target: Annotated[Path | None, typer.Argument(
        metavar="[RUN|FILE]", help="A run directory, or a judgments file (judge health only "
        "unless it is a run's judgments.jsonl).")] = None,
    baseline: Annotated[str | None, typer.Option(
        help="The model the others were compared with (default: the run's).")] = None,
    thresholds: Annotated[Path | None, typer.Option(
        help="A TOML file overriding any shipped threshold (docs/audit.md).")] = None,
    format_: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
    strict: Annotated[bool, typer.Option(
        "--strict", help=f"Exit {STRICT_EXIT} when any finding is severe (for CI and league "
        "submission checks).")] = False,
    probe_judge: Annotated[str | None, typer.Option(
        "--probe-judge", help="Instead of a run: send the shipped attack catalogue to this "
        "judge (name or folder) and report its attack success per family.",
        rich_help_panel="Judge probe")] = None,
    judges_dir: JudgesDirOption = None,
    judge_url: Annotated[str | None, typer.Option(
        help="OpenAI-compatible base URL of the probed judge.",
        rich_help_panel="Judge probe")] = None,
    judge_model: Annotated[str | None, typer.Option(
        help="Model name the probed judge's endpoint serves.",
        rich_help_panel="Judge probe")] = None,
    probe_prompts: Annotated[int, typer.Option(
        min=1, help="Shipped prompts each attack is tried on (both orders each).",
        rich_help_panel="Judge probe")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the probe's prompt sample.",
                                      rich_help_panel="Judge probe")] = 0,
    out: Annotated[Path | None, typer.Option(
        help="Also save the probe report as JSON here.",
        rich_help_panel="Judge probe")] = None,
) -> None:
    """Flag gamed, degenerate and leaked answers and an unreliable judge (docs/audit.md)."""
    if format_ not in {"table", "json"}:
        raise UserError(f"--format {format_!r} is not known. Fix: use --format table or json.")
    if probe_judge is not None:
        if target is not None:
            raise UserError("--probe-judge tests a judge, not a run: pass one or the other. "
                            f"Fix: `evalharness audit {target}`, then `evalharness audit "
                            f"--probe-judge {probe_judge}`.")
        _probe(probe_judge, judges_dir, judge_url, judge_model, probe_prompts, seed,
               format_, out)
        return
    if target is None:
        raise UserError("audit needs a run directory or a judgments file. Fix: "
                        "`evalharness audit runs/NAME` (`evalharness runs` lists them).")
    result = _audit_target(target, baseline, AuditConfig(thresholds))
    if format_ == "json":
        typer.echo(json.dumps({
            "target": str(target),
            "answers_audited": result.answers_audited,
            "reused": result.reused,
            "worst": result.worst,
            "findings": [f.model_dump(mode="json") for f in result.findings],
        }, indent=2))
    else:
        _print(result)
    if strict and result.worst == "severe":
        raise typer.Exit(STRICT_EXIT)


def register(app: typer.Typer) -> None:
    """Add ``audit`` to ``app``."""
    app.command("audit")(audit)
