"""CLI commands of the judging package (``judge``, ``judges``, ``check``); registered by cli.py.

Parsing and printing only: the work is in ``judging.stage`` and ``judging.config``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from evalharness.console import output_console
from evalharness.errors import UserError
from evalharness.judging.config import (
    available_judges,
    check_all,
    describe,
    judges_root,
    load_judge,
    resolve_judge,
)
from evalharness.judging.stage import JudgeCounts

JudgesDirOption = Annotated[Path | None, typer.Option(
    "--judges-dir", help="Folder of judge definitions (default: $EVALHARNESS_JUDGES, else the "
    "judges shipped with evalharness; `evalharness judges` shows where).")]


def _console() -> Console:
    return output_console()


def judge(
    run: Annotated[str, typer.Argument(help="A run directory, or a run id under --runs-root.")],
    judge_name: Annotated[str, typer.Option(
        "--judge", "-j", help="Judge name (a folder under the judges dir) or a judge folder; "
        "`evalharness judges` lists them.")] = "pairwise-binary",
    baseline: Annotated[str | None, typer.Option(
        "--baseline", help="Model every candidate plays (default: the run's baseline).")] = None,
    candidate: Annotated[list[str] | None, typer.Option(
        "--candidate", help="Judge only this model (repeatable; default: every other "
        "model).")] = None,
    judge_url: Annotated[str | None, typer.Option(
        "--judge-url", help="OpenAI-compatible base URL, e.g. http://localhost:8000/v1 for a "
        "local vLLM.")] = None,
    judge_model: Annotated[str | None, typer.Option(
        "--judge-model", help="Model name the endpoint serves.")] = None,
    concurrency: Annotated[int | None, typer.Option(
        min=1, help="Judge calls in flight at once (default: the judge's config).")] = None,
    judges_dir: JudgesDirOption = None,
    runs_root: Annotated[Path, typer.Option("--runs-root", help="Where run directories "
                                            "live.")] = Path("runs"),
) -> None:
    """Judge a run's answers: each candidate vs the baseline, both orders (resumable).

    Any run with answers (generate, compare, league, demo) can be judged, by the judge that
    made its judgments so far; everything is checked before the run is touched.
    """
    from evalharness.evaluate import judge_existing_run
    from evalharness.progress import RichProgress
    from evalharness.store import resolve_run

    config = resolve_judge(judge_name, judges_dir).with_overrides(
        model=judge_model, base_url=judge_url, concurrency=concurrency)
    target = resolve_run(run, runs_root)
    with RichProgress() as progress:  # a failing endpoint (JudgeError): cli.main reports it
        counts = judge_existing_run(target, config, baseline, candidate, progress, runs_root,
                                    argv=sys.argv)
    print_summary(_console(), counts)
    if counts.problem:  # every judgment invalid: the judge's replies are the problem
        raise UserError(counts.problem)


def print_summary(console: Console, counts: JudgeCounts) -> None:
    """What was judged, what it cost, and each candidate's wins, ties, losses, invalid."""
    from evalharness.report.terminal import counts_line

    console.print(counts_line("judgments", counts.total, counts.on_disk, counts.reused,
                              counts.computed))
    judged = counts.total
    console.print(f"games judged: {judged} ({counts.invalid} invalid: no readable verdict; "
                  "counted apart, never as ties)")
    if counts.skipped:
        console.print(f"skipped: {counts.skipped} games on prompts without a reference "
                      "(the reference judge cannot play them)")
    console.print(f"judge calls now: {counts.calls}; tokens now: "
                  f"{counts.usage.prompt_tokens:,} in, {counts.usage.completion_tokens:,} out; "
                  f"estimated cost now: ${counts.cost_usd:.4f}")
    if counts.tallies:
        table = Table(title=f"Games by judge {counts.judge} (both orders)")
        for column in ("candidate", "opponent", "wins", "ties", "losses", "invalid"):
            table.add_column(column, justify="left" if column in ("candidate", "opponent")
                             else "right")
        for (x, y), t in counts.tallies.items():
            table.add_row(x, y, str(t.wins), str(t.ties), str(t.losses), str(t.invalid))
        console.print(table)
    console.print(f"run directory: {counts.run_dir}")
    console.print(f"statistics: evalharness stats {counts.run_dir / 'judgments.jsonl'}")


def judges(judges_dir: JudgesDirOption = None) -> None:
    """List the judges: name, kind, model, verdict scale."""
    root = judges_root(judges_dir)
    names = available_judges(root)
    console = _console()
    if not names:
        console.print(f"no judges in {root} (a judge is a folder holding config.yaml)")
        return
    table = Table(title=f"Judges in {root}")
    for column in ("name", "kind", "model", "scale", "description"):
        table.add_column(column)
    broken = []
    configs = []
    for name in names:
        try:
            configs.append(load_judge(root / name))
        except UserError:
            broken.append(name)
    for row in describe(configs):
        table.add_row(*row.values())
    console.print(table)
    for name in broken:
        console.print(f"{name}: invalid (run `evalharness check` to see why)")


def check(
    files: Annotated[list[Path] | None, typer.Argument(
        help="Prompt sets to check (default: every *.jsonl in --prompts-dir).")] = None,
    prompts_dir: Annotated[Path | None, typer.Option(
        "--prompts-dir", help="Folder of prompt sets (default: the prompt sets shipped with "
        "evalharness).")] = None,
    judges_dir: JudgesDirOption = None,
) -> None:
    """Validate every prompt set and judge definition; list every problem found."""
    from evalharness.prompts import load_prompt_set
    from evalharness.resources import shipped_dir

    console = _console()
    problems: list[str] = []
    prompt_root = prompts_dir or shipped_dir("prompts")
    targets = list(files) if files else sorted(prompt_root.glob("*.jsonl"))
    if not targets:
        console.print(f"no prompt sets in {prompt_root}")
    for path in targets:
        try:
            loaded = load_prompt_set(path)
        except UserError as exc:
            problems.append(str(exc))
            continue
        with_reference = sum(1 for p in loaded.prompts if p.reference is not None)
        console.print(f"ok   prompt set {path} ({len(loaded.prompts)} prompts, "
                      f"{with_reference} with a reference)")
    root = judges_root(judges_dir)
    found = check_all(root)
    if not found:
        problems.append(f"{root}: no judges found (a judge is a folder holding config.yaml)")
    for name, judge_problems in found.items():
        if judge_problems:
            problems.append(f"judge {name}:\n  " + "\n  ".join(judge_problems))
        else:
            console.print(f"ok   judge {name} ({root / name})")
    if problems:
        raise UserError(f"{len(problems)} invalid input(s):\n" + "\n".join(problems))
    console.print("everything checks out")


def register(app: typer.Typer) -> None:
    """Add the judging commands (``judge``, ``judges``, ``check``) to ``app``."""
    app.command("judge")(judge)
    app.command("judges")(judges)
    app.command("check")(check)
