"""The command line: parse arguments, call the API, print. No logic lives here.

Exit codes: 0 ok; 1 crash (a backend failure: message; a bug: traceback); 2 bad input or a
judge endpoint that keeps failing (message naming the problem and the fix, no traceback);
130 interrupted (Ctrl-C), 143 terminated (SIGTERM), 129 hung up (SIGHUP): everything finished
so far is on disk, the backend's processes are stopped, and the manifest says ``interrupted``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from evalharness import agree_cli, signals, stats_cli
from evalharness.audit import cli as audit_cli
from evalharness.backends.registry import BackendChoice
from evalharness.cli_options import (
    EvaluationOptions,
    backend_options,
    evaluation_options,
    gen_options,
    judge_options,
)
from evalharness.console import literal, output_console
from evalharness.errors import BackendError, JudgeError, UserError
from evalharness.formats import cli as formats_cli
from evalharness.judging import cli as judging_cli
from evalharness.judging.config import JudgeConfig
from evalharness.label import cli as label_cli
from evalharness.redact import redact_text
from evalharness.report import cli as report_cli
from evalharness.schema import GenConfig

app = typer.Typer(
    name="evalharness",
    help="Pairwise win-rate evaluation of LoRA adapters against a baseline, with honest "
    "statistics and perplexity beside it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
stats_cli.register(app)
report_cli.register(app)
judging_cli.register(app)
formats_cli.register(app)
audit_cli.register(app)
agree_cli.register(app)
label_cli.register(app)

EXIT_CRASH = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

RunDirOption = Annotated[
    Path | None, typer.Option("--run-dir", help="Run directory (default: runs/<derived id>, "
                              "so rerunning a command resumes it).")]
RunsRootOption = Annotated[Path, typer.Option("--runs-root", help="Where run directories live.")]
BaseOption = Annotated[str | None, typer.Option(
    "--base", help="Base model (hub id or folder); default: from the adapters' configs.")]


def _console() -> Console:
    return output_console()


@app.command()
@backend_options(verify=False)
@gen_options
def generate(
    models: Annotated[list[str], typer.Argument(help="'baseline', PEFT adapter folders, or "
                                                "merged model folders.")],
    prompts: Annotated[Path, typer.Option("--prompts", "-p", help="Prompt set file.")],
    backend: BackendChoice,
    gen: GenConfig,
    base: BaseOption = None,
    run_dir: RunDirOption = None,
    runs_root: RunsRootOption = Path("runs"),
) -> None:
    """Generate every model's answer to every prompt (resumable; reuses other runs' answers)."""
    from evalharness.pipeline import run_models
    from evalharness.progress import RichProgress
    from evalharness.report.terminal import counts_line

    with RichProgress() as progress:
        result = run_models(models, command="generate", backend=backend.spec(),
                            prompts=prompts, base=base, gen=gen, run_dir=run_dir,
                            runs_root=runs_root, argv=sys.argv, progress=progress)
    console = _console()
    assert result.answers is not None
    a = result.answers
    console.print(counts_line("answers", a.total, a.on_disk, a.reused, a.computed))
    console.print(f"run directory: {result.run_dir}")
    console.print(f"see them: evalharness show {result.run_dir}")


@app.command()
@backend_options(verify=False)
def ppl(
    models: Annotated[list[str], typer.Argument(help="'baseline', adapter or model folders.")],
    data: Annotated[Path, typer.Option("--data", "-d", help="Evaluation data: rows with "
                                       "'text', or 'prompt'/'messages' + 'response'.")],
    backend: BackendChoice,
    base: BaseOption = None,
    run_dir: RunDirOption = None,
    runs_root: RunsRootOption = Path("runs"),
    ppl_backend: Annotated[str, typer.Option(
        "--ppl-backend", help="auto: on vLLM's CPU build score with transformers (faster, "
        "same NLLs; the manifest says so); engine: the --backend as given; hf: always "
        "transformers.")] = "auto",
) -> None:
    """Perplexity (token, per-example, bits per byte) of each model on held-out data."""
    from evalharness.backends.registry import ppl_backend as choose_ppl_backend
    from evalharness.pipeline import run_models
    from evalharness.progress import RichProgress
    from evalharness.report.terminal import counts_line, perplexity_table

    chosen, why = choose_ppl_backend(backend, ppl_backend)
    with RichProgress() as progress:
        result = run_models(models, command="ppl", backend=chosen.spec(), ppl_data=data,
                            base=base, run_dir=run_dir, runs_root=runs_root, argv=sys.argv,
                            progress=progress, ppl_backend=why)
    console = _console()
    if why is not None:
        console.print(literal(f"scored with {why}"))
    console.print(perplexity_table(result.summaries))
    assert result.perplexity is not None
    p = result.perplexity
    console.print(counts_line("perplexity records", p.total, p.on_disk, p.reused, p.computed))
    console.print(f"run directory: {result.run_dir}")


@app.command()
def runs(runs_root: RunsRootOption = Path("runs")) -> None:
    """List the run directories, newest first."""
    from evalharness.report.terminal import runs_table
    from evalharness.store import list_runs

    found = list_runs(runs_root)
    if not found:
        _console().print(f"no runs under {runs_root}/ yet")
        return
    _console().print(runs_table(found))


@app.command()
def show(
    run: Annotated[str, typer.Argument(help="A run directory, or a run id under --runs-root.")],
    limit: Annotated[int, typer.Option(min=1, help="Prompts to show answers for.")] = 5,
    runs_root: RunsRootOption = Path("runs"),
) -> None:
    """Show what a run holds: models, answers side by side, perplexity."""
    from evalharness.report.terminal import show_run
    from evalharness.store import resolve_run

    show_run(_console(), resolve_run(run, runs_root), limit)


@app.command()
def kit(
    folder: Annotated[Path, typer.Argument(help="Where to build the kit.")] = Path("runs/.kit"),
    force: Annotated[bool, typer.Option(help="Rebuild even if a matching kit exists.")] = False,
) -> None:
    """Build the offline tiny-model kit (tokenizer, tiny Llama, four LoRA adapters)."""
    from evalharness.demo.kit import build_kit
    from evalharness.progress import RichProgress

    console = _console()
    with RichProgress() as progress:
        built = build_kit(folder, force=force, progress=progress)
    timings = ", ".join(f"{k} {v:.1f}s" for k, v in built.seconds.items()) or "reused"
    console.print(f"kit ready in {built.root} ({timings})")
    console.print(f"base model: {built.base}")
    for recipe in built.recipe.adapters:
        console.print(f"adapter {recipe.name}: {built.adapter(recipe.name)}")
    console.print(f"prompts: {built.prompts}\nperplexity data: {built.eval_data}")


@app.command()
@backend_options(verify=True)
@gen_options
@judge_options(default="reference")
@evaluation_options
def compare(
    candidate: Annotated[str, typer.Argument(help="An adapter folder (or merged model).")],
    backend: BackendChoice,
    gen: GenConfig,
    judge_config: JudgeConfig | list[JudgeConfig],
    evaluation: EvaluationOptions,
    baseline: Annotated[str, typer.Argument(help="'baseline' (the base model) or a model "
                                            "folder.")] = "baseline",
) -> None:
    """Does CANDIDATE beat BASELINE? Answers, judging in both orders, statistics, report."""
    from evalharness.evaluate import compare as run_compare
    from evalharness.progress import RichProgress
    from evalharness.report.terminal import print_compare

    with RichProgress() as progress:
        result = run_compare(candidate, baseline, judge=judge_config, backend=backend.spec(),
                             gen=gen, argv=sys.argv, progress=progress,
                             **evaluation.as_kwargs())
    print_compare(_console(), result)


@app.command()
@backend_options(verify=True)
@gen_options
@judge_options(default="reference")
@evaluation_options
def league(
    adapters: Annotated[list[str], typer.Argument(help="Adapter folders (or merged models).")],
    backend: BackendChoice,
    gen: GenConfig,
    judge_config: JudgeConfig | list[JudgeConfig],
    evaluation: EvaluationOptions,
    baseline: Annotated[str, typer.Option(help="'baseline' (the base model) or a model "
                                          "folder.")] = "baseline",
    round_robin: Annotated[bool, typer.Option(help="Also judge every adapter against every "
                                              "other (n(n-1)/2 more pairs).")] = False,
) -> None:
    """Rank adapters against the baseline: leaderboard, perplexity paradox, judge bias."""
    from evalharness.evaluate import league as run_league
    from evalharness.progress import RichProgress
    from evalharness.report.terminal import print_league

    with RichProgress() as progress:
        result = run_league(adapters, baseline, judge=judge_config, backend=backend.spec(),
                            gen=gen, round_robin=round_robin, argv=sys.argv,
                            progress=progress, **evaluation.as_kwargs())
    print_league(_console(), result)


def _say_interrupted(console: Console, why: str = "interrupted") -> None:
    console.print(f"{why}: everything finished so far is saved; rerun the same command "
                  "to resume")


def _error(console: Console, message: str) -> None:
    # Plain text: messages hold brackets (pip extras, model output) that rich would read as
    # markup; credentials in a URL the message quotes are masked.
    console.print(Text("error: ", style="bold red") + Text(redact_text(message)),
                  soft_wrap=True)


@app.command()
@backend_options(verify=True)
@judge_options(default="reference")
def demo(
    backend: BackendChoice,
    judge_config: JudgeConfig | list[JudgeConfig],
    kit_folder: Annotated[Path, typer.Option("--kit", help="Where the tiny model kit is built "
                                             "(or reused).")] = Path("runs/.kit"),
    runs_root: RunsRootOption = Path("runs"),
) -> None:
    """The offline demo league: build a tiny model and four adapters, rank them, report."""
    from evalharness.demo.run import run_demo
    from evalharness.progress import RichProgress
    from evalharness.report.terminal import print_league

    console = _console()
    console.print("building the tiny model kit, or reusing it (about a minute the first time)")
    with RichProgress() as progress:
        built, result = run_demo(runs_root, backend.spec(), judge_config, kit_folder,
                                 sys.argv, progress)
    print_league(console, result)
    console.print(f"kit: {built.root}")
    console.print(f"open the report: {result.run_dir / 'report.html'}")


def main(argv: Sequence[str] | None = None) -> None:
    """Run the CLI, mapping errors to exit codes (2 bad input, 130/143/129 interrupted)."""
    with signals.handled() as received:
        code = _run(argv)
    if code == EXIT_INTERRUPTED:  # typer returns any interrupt as exit code 130
        console = Console(stderr=True)
        if received.exit_code is not None:
            _say_interrupted(console, f"stopped by {received.name}")
            code = received.exit_code
        else:
            _say_interrupted(console)
    sys.exit(code)


def _run(argv: Sequence[str] | None) -> int:
    """The command's exit code; errors are printed here."""
    console = Console(stderr=True)
    try:
        code = app(args=list(argv) if argv is not None else None, prog_name="evalharness",
                   standalone_mode=False)
    except (UserError, JudgeError) as exc:
        # A judge endpoint that keeps failing is the user's to fix, like bad input: the
        # message names the endpoint and the fix, and everything judged so far is saved.
        _error(console, str(exc))
        return EXIT_BAD_INPUT
    except BackendError as exc:
        _error(console, str(exc))
        console.print("what finished is saved; rerun the same command to resume")
        return EXIT_CRASH
    except typer.Exit as exc:
        return exc.exit_code
    except typer.TyperException as exc:  # usage errors: unknown option, missing argument
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        else:
            console.print(Text(f"error: {exc.format_message()}"))
        console.print(Text("Fix: correct the command line; `evalharness COMMAND --help` lists "
                           "the arguments and options."))
        return EXIT_BAD_INPUT
    except (KeyboardInterrupt, typer.Abort):
        return EXIT_INTERRUPTED
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    main()
