"""``evalharness import FORMAT SRC... --run-dir RUN`` and ``evalharness export RUN``.

``register`` adds both commands to the typer app. Messages are printed as plain text
(``typer.echo``): model names and paths come from the imported files.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated

import typer

from evalharness.errors import UserError
from evalharness.formats.common import Imported

Reader = Callable[[Sequence[Path], str | None], Imported]


def _readers() -> dict[str, Reader]:
    from evalharness.formats.alpacaeval import read_alpacaeval
    from evalharness.formats.arenahard import read_arenahard
    from evalharness.formats.mtbench import read_mtbench
    from evalharness.formats.table import read_table

    return {"alpacaeval": read_alpacaeval, "arenahard": read_arenahard,
            "mtbench": read_mtbench, "table": read_table}


def import_command(
    format_: Annotated[str, typer.Argument(
        metavar="FORMAT", help="alpacaeval, arenahard, mtbench or table (docs/formats.md).")],
    sources: Annotated[list[Path], typer.Argument(
        metavar="SRC...", help="The files the tool wrote, or folders holding them.")],
    run_dir: Annotated[Path, typer.Option("--run-dir", help="The run directory to write "
                                          "(importing the same files again adds nothing).")],
    baseline: Annotated[str | None, typer.Option(help="The model the others are compared "
                                                 "with (default: what the files say).")] = None,
) -> None:
    """Import answers and judgments made by another tool into a run directory."""
    from evalharness.formats.importer import write_import

    readers = _readers()
    reader = readers.get(format_)
    if reader is None:
        raise UserError(f"import format {format_!r} is not known. Fix: use one of "
                        f"{', '.join(readers)}.")
    result = write_import(reader(sources, baseline), run_dir, sys.argv)
    imported = result.imported
    typer.echo(f"imported {len(imported.answers)} answers ({result.new_answers} new) and "
               f"{len(imported.judgments)} judgments ({result.new_judgments} new) from "
               f"{len(imported.sources)} {imported.format} file(s) into {result.run_dir}")
    typer.echo(f"models: {', '.join(imported.models)}; baseline: {imported.baseline or '-'}")
    if imported.judgments:
        typer.echo(f"next: evalharness stats {result.run_dir / 'judgments.jsonl'}; "
                   f"evalharness report {result.run_dir}")


def export_command(
    run: Annotated[str, typer.Argument(help="A run directory, or a run id under --runs-root.")],
    model: Annotated[str, typer.Option("--model", help="The model whose answers to write.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The file to write.")],
    format_: Annotated[str, typer.Option("--format", help="alpacaeval (model_outputs.json).")
                       ] = "alpacaeval",
    runs_root: Annotated[Path, typer.Option("--runs-root", help="Where run directories "
                                            "live.")] = Path("runs"),
) -> None:
    """Write a model's answers in another tool's format (AlpacaEval's model_outputs.json)."""
    from evalharness.formats.alpacaeval import model_outputs
    from evalharness.formats.importer import run_prompts_and_answers
    from evalharness.store import atomic_write_text, resolve_run

    if format_ != "alpacaeval":
        raise UserError(f"export format {format_!r} is not known. Fix: use --format "
                        "alpacaeval.")
    if out.is_dir():
        raise UserError(f"--out {out} is a folder. Fix: give a file name, e.g. "
                        f"{out / 'model_outputs.json'}")
    prompts, answers = run_prompts_and_answers(resolve_run(run, runs_root).path)
    records = model_outputs(prompts, answers, model)
    atomic_write_text(out, json.dumps(records, indent=2, ensure_ascii=False) + "\n")
    missing = len(prompts) - len(records)
    typer.echo(f"wrote {len(records)} answers of {model} to {out}"
               + (f" ({missing} prompts have no answer of this model)" if missing else ""))


def register(app: typer.Typer) -> None:
    """Add the ``import`` and ``export`` commands to ``app``."""
    app.command("import")(import_command)
    app.command("export")(export_command)
