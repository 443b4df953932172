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
from evalharness.judging.prices import PRICE_FLAG, parse_price
from evalharness.judging.repeats import DEFAULT_SAMPLE
from evalharness.judging.stage import JudgeCounts, JudgeOptions, check_options
from evalharness.stats.noise import noise_lines

JudgesDirOption = Annotated[Path | None, typer.Option(
    "--judges-dir", help="Folder of judge definitions (default: $EVALHARNESS_JUDGES, else the "
    "judges shipped with evalharness; `evalharness judges` shows where).")]


def _console() -> Console:
    return output_console()


def judge(
    run: Annotated[str, typer.Argument(help="A run directory, or a run id under --runs-root.")],
    judge_names: Annotated[list[str] | None, typer.Option(
        "--judge", "-j", help="Judge name (a folder under the judges dir) or a judge folder; "
        "`evalharness judges` lists them. Repeat it for a jury: each juror's verdicts are "
        "stored under its own name and the headline combines them (default: "
        "pairwise-binary).")] = None,
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
    judge_price: Annotated[str | None, typer.Option(
        PRICE_FLAG, metavar="IN,OUT", help="USD per 1,000 input and output tokens, e.g. "
        "0.00015,0.0006 (default: the judge config's prices, but 0 for any --judge-url other "
        "than the config's own).")] = None,
    judge_mode: Annotated[str | None, typer.Option(
        "--judge-mode", metavar="online|batch", help="batch: send the games through the "
        "provider's Batch API (about half price; a killed run resumes polling; docs/judging.md)"
        ". Default: the judge's config (online).")] = None,
    judge_backend: Annotated[str | None, typer.Option(
        "--judge-backend", metavar="http|vllm", help="vllm: judge with vLLM's offline engine in "
        "this process, --judge-model being a local folder or hub name (docs/judging.md). "
        "Default: the judge's config (http).")] = None,
    retry_invalid: Annotated[bool, typer.Option(
        "--retry-invalid", help="Ask again the games stored invalid (no readable verdict); "
        "the new judgment supersedes the old.")] = False,
    repeats: Annotated[int, typer.Option(
        "--repeats", min=0, metavar="K", help="Noise floor: ask a sample of judged games K "
        "more times (new fence ids; a sampling judge gets a new seed) and print the judge's "
        "self-consistency and the win-rate difference its noise can explain.")] = 0,
    repeat_sample: Annotated[int | None, typer.Option(
        "--repeat-sample", min=1, metavar="N", help=f"(candidate, prompt) pairs --repeats "
        f"asks, both orders each: K x 2N calls (default {DEFAULT_SAMPLE}).")] = None,
    judges_dir: JudgesDirOption = None,
    runs_root: Annotated[Path, typer.Option("--runs-root", help="Where run directories "
                                            "live.")] = Path("runs"),
) -> None:
    """Judge a run's answers: each candidate vs the baseline, both orders (resumable).

    Any run with answers (generate, compare, league, demo) can be judged, by the judge that
    made its judgments so far or by a jury (--judge a --judge b); everything is checked
    before the run is touched. --judge-url, --judge-model, --concurrency and --judge-price
    apply to every juror.
    """
    from evalharness.evaluate import judge_with
    from evalharness.progress import RichProgress
    from evalharness.store import resolve_run

    if repeat_sample is not None and not repeats:
        raise UserError("--repeat-sample sizes the noise floor's sample, which only --repeats "
                        "asks for. Fix: add --repeats K (e.g. --repeats 3), or drop "
                        "--repeat-sample.")
    price = parse_price(judge_price) if judge_price is not None else None
    configs = [resolve_judge(name, judges_dir).with_overrides(
        model=judge_model, base_url=judge_url, concurrency=concurrency, price=price,
        mode=judge_mode, backend=judge_backend)
        for name in judge_names or ["pairwise-binary"]]
    options = JudgeOptions(retry_invalid=retry_invalid, repeats=repeats,
                           repeat_sample=repeat_sample or DEFAULT_SAMPLE)
    for config in configs:
        check_options(config, options)
    target = resolve_run(run, runs_root)
    with RichProgress() as progress:  # a failing endpoint (JudgeError): cli.main reports it
        done = judge_with(target, configs, baseline, candidate, progress, runs_root,
                          argv=sys.argv, options=options)
    for counts in done:
        print_summary(_console(), counts)
    if len(done) > 1:
        _console().print(f"jury: {', '.join(c.judge for c in done)}; the run's statistics "
                         "combine their verdicts (`evalharness agree` compares them)")
    for counts in done:
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
    if counts.retried:
        console.print(f"re-judged: {counts.retried} games stored invalid; their new "
                      "judgments supersede the old (kept on disk as history)")
    console.print(f"judge calls now: {counts.calls}; tokens now: "
                  f"{counts.usage.prompt_tokens:,} in, {counts.usage.completion_tokens:,} out; "
                  f"estimated cost now: ${counts.cost_usd:.4f} (prices: "
                  f"{counts.price_source or 'config'})")
    if counts.noise is not None or counts.repeated:
        console.print(f"noise-floor repeats now: {counts.repeated} (stored as "
                      f"{counts.judge}#1, #2...: never counted in the win rates)")
    if counts.tallies:
        table = Table(title=f"Games by judge {counts.judge} (both orders)")
        for column in ("candidate", "opponent", "wins", "ties", "losses", "invalid"):
            table.add_column(column, justify="left" if column in ("candidate", "opponent")
                             else "right")
        for (x, y), t in counts.tallies.items():
            table.add_row(x, y, str(t.wins), str(t.ties), str(t.losses), str(t.invalid))
        console.print(table)
    if counts.noise is not None:
        for line in noise_lines(counts.noise):
            console.print(line)
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
