"""``evalharness agree RUN|FILE``: how far the raters of a run agree (judges, people, juries).

Registered by cli.py. Parsing and printing only: the figures come from
``evalharness.stats.agreement``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from evalharness.console import literal, output_console
from evalharness.errors import UserError

if TYPE_CHECKING:
    from rich.console import Console

    from evalharness.stats.agreement import Agreement, GroupAgreement, PairAgreement


def _pct(value: float) -> str:
    return "-" if math.isnan(value) else f"{100 * value:.1f}%"


def _kappa(a: Agreement) -> str:
    if math.isnan(a.kappa):
        return f"- ({a.kappa_note})" if a.kappa_note else "-"
    return f"{a.kappa:.2f} [{a.kappa_interval.low:.2f}, {a.kappa_interval.high:.2f}]"


def _figures_row(label: str, a: Agreement) -> tuple[str, ...]:
    return (label, str(a.n), _pct(a.agreement),
            f"{_pct(a.agreement_without_ties)} (n={a.n_without_ties})", _kappa(a))


def _figures_table(title: str, rows: list[tuple[str, ...]]) -> Table:
    table = Table(title=literal(title))
    for column in ("", "items", "agreement", "without ties", "Cohen's kappa [95%]"):
        table.add_column(column, justify="left" if not column else "right")
    for row in rows:
        table.add_row(*(literal(cell) for cell in row))
    return table


def _confusion(p: PairAgreement) -> Table:
    from evalharness.stats.agreement import LABELS

    table = Table(title=literal(f"Per prompt: rows {p.x}, columns {p.y}"))
    table.add_column("")
    for label in LABELS:
        table.add_column(label, justify="right")
    for label, row in zip(LABELS, p.prompts.confusion, strict=True):
        table.add_row(label, *(str(n) for n in row))
    return table


def _groups(title: str, groups: tuple[GroupAgreement, ...]) -> Table:
    return _figures_table(title, [_figures_row(g.group, g.prompts) for g in groups])


def _print_pair(console: Console, p: PairAgreement) -> None:
    console.rule(literal(f"{p.x} ({p.x_kind}) vs {p.y} ({p.y_kind})", "bold"))
    console.print(_figures_table("Agreement", [_figures_row("per prompt", p.prompts),
                                               _figures_row("per game, same order", p.games)]))
    console.print(_confusion(p))
    if len(p.by_candidate) > 1:
        console.print(_groups("Per candidate (per prompt)", p.by_candidate))
    if len(p.by_category) > 1:
        console.print(_groups("Per category (per prompt)", p.by_category))
    console.print(literal(
        f"both-order consistency: {p.x} {_pct(p.x_consistency.share)} of "
        f"{p.x_consistency.n_both_orders} prompts; {p.y} {_pct(p.y_consistency.share)} of "
        f"{p.y_consistency.n_both_orders}; invalid games left out: {p.x} {p.x_invalid}, "
        f"{p.y} {p.y_invalid}"))


def agree(
    target: Annotated[Path, typer.Argument(
        metavar="RUN|FILE", help="A run directory or a judgments file.")],
    rater: Annotated[list[str] | None, typer.Option(
        "--rater", help="Compare only these raters (repeatable; judge names, human:NAME). "
        "Default: every rater in the file.")] = None,
    baseline: Annotated[str | None, typer.Option(
        help="The model the others were compared with (default: the run's).")] = None,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    bootstrap: Annotated[int, typer.Option("--bootstrap", help="Bootstrap rounds of "
                                           "kappa's interval.")] = 2000,
    format_: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
) -> None:
    """Agreement between a run's raters: judge vs human, judge vs judge, human vs human."""
    from evalharness.rater_names import is_repeat
    from evalharness.stats import read_judgments, to_jsonable
    from evalharness.stats.agreement import agreement_table
    from evalharness.stats.io import baseline_for

    if format_ not in {"table", "json"}:
        raise UserError(f"--format {format_!r} is not known. Fix: use --format table or json.")
    if bootstrap < 100:
        raise UserError(f"--bootstrap {bootstrap} is too few rounds for a 95% interval. Fix: "
                        "use at least 100 (default 2000).")
    file = target / "judgments.jsonl" if target.is_dir() else target
    if not file.is_file():
        raise UserError(f"{target}: no judgments there. Fix: pass a judged run directory or a "
                        "judgments file; `evalharness label RUN` adds human labels to a run.")
    judgments = [j for j in read_judgments(file) if not is_repeat(j.judge)]
    chosen = baseline if baseline is not None else baseline_for(file, judgments)
    table = agreement_table(judgments, chosen, rater, n_boot=bootstrap, seed=seed)
    if not table:
        raters = sorted({j.judge for j in judgments})
        raise UserError(f"{file}: one rater only ({', '.join(raters)}), nothing to compare. "
                        "Fix: add human labels (`evalharness label RUN --annotator NAME`) or "
                        "a second judge (`evalharness judge RUN --judge A --judge B`).")
    if format_ == "json":
        typer.echo(json.dumps(to_jsonable(table), indent=2))
        return
    console = output_console()
    for pair in table:
        _print_pair(console, pair)


def register(app: typer.Typer) -> None:
    """Add ``agree`` to ``app``."""
    app.command("agree")(agree)
