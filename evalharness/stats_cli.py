"""CLI commands of the statistics package (``power``, ``stats``); registered by cli.py.

Parsing and printing only: every number comes from ``evalharness.stats``.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from evalharness.console import LiteralConsole, literal, output_console
from evalharness.errors import UserError

if TYPE_CHECKING:  # the statistics (numpy, scipy) load only when a command runs
    from evalharness.audit.run import AuditResult
    from evalharness.schema import Judgment
    from evalharness.stats import Interval, Standing, StatsSummary
    from evalharness.stats.games import ScoreMode
    from evalharness.stats.paradox import Paradox
    from evalharness.stats.raters import Headline


def _pct(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{100 * value:.1f}%"


def _ci(interval: Interval | None) -> str:
    if interval is None or math.isnan(interval.low):
        return "-"
    return f"[{100 * interval.low:.1f}, {100 * interval.high:.1f}]"


def _p(value: float) -> str:
    return f"{value:.3g}" if value >= 0.001 else "<0.001"


def _league_cells(s: Standing) -> tuple[str, str, str, str]:
    """Strength, its interval, win probability and its interval of a league row; a model that
    won (lost) every game shows its one-sided exact bound instead of a point."""
    if s.bound == "lower":
        return (f"≥ {s.interval.low:+.2f}", "won every game",
                f"≥ {_pct(s.win_probability_interval.low)}", _ci(s.win_probability_interval))
    if s.bound == "upper":
        return (f"≤ {s.interval.high:+.2f}", "lost every game",
                f"≤ {_pct(s.win_probability_interval.high)}", _ci(s.win_probability_interval))
    return (_num(s.strength), f"[{s.interval.low:+.2f}, {s.interval.high:+.2f}]",
            _pct(s.win_probability), _ci(s.win_probability_interval))


def _num(value: float, digits: int = 2) -> str:
    return "-" if math.isnan(value) else f"{value:+.{digits}f}"


def power(
    win_rate: Annotated[
        float | None,
        typer.Option("--win-rate", help="True win rate to detect (ties as half), e.g. 0.6."),
    ] = None,
    n: Annotated[
        int | None,
        typer.Option("--n", help="Prompts available: report the smallest detectable win rate."),
    ] = None,
    alpha: Annotated[float, typer.Option(help="Two-sided significance level.")] = 0.05,
    power_: Annotated[float, typer.Option("--power", help="Wanted power.")] = 0.8,
    tie_rate: Annotated[
        float,
        typer.Option("--tie-rate", help="Share of prompts expected to tie (score exactly 0.5)."),
    ] = 0.0,
) -> None:
    """Prompts needed to tell a win rate from 50%, or the smallest win rate n prompts detect.

    The test is the exact two-sided sign test over prompts that `stats` runs.
    """
    from evalharness.stats import detectable_win_rate, power_at, prompts_needed

    if win_rate is None and n is None:
        raise UserError(
            "power needs --win-rate P or --n N. Fix: e.g. evalharness power --win-rate 0.6"
        )
    console = Console()
    setting = f"two-sided exact sign test, alpha {alpha:g}, power {power_:g}"
    if tie_rate:
        setting += f", tie rate {tie_rate:g}"
    if win_rate is not None:
        need = prompts_needed(win_rate, alpha=alpha, power=power_, tie_rate=tie_rate)
        console.print(
            f"To tell a {_pct(win_rate)} win rate from 50% ({setting}) you need "
            f"[bold]{need.n}[/bold] prompts (power there {need.achieved_power:.3f}). "
            f"{need.n_first} is the first n that reaches the power, but exact power zig-zags "
            f"with n, so plan for {need.n}. Normal approximation: {need.normal_approximation}."
        )
    if n is not None:
        found = detectable_win_rate(n, alpha=alpha, power=power_, tie_rate=tie_rate)
        if found.win_rate is None:
            console.print(
                f"With {n} prompts no win rate is detected with power {power_:g} ({setting})."
            )
        else:
            console.print(
                f"With {n} prompts the smallest win rate detected ({setting}) is "
                f"[bold]{_pct(found.win_rate)}[/bold] (or, losing, {_pct(1 - found.win_rate)})."
                " Smaller differences from 50% will usually look like noise."
            )
    if win_rate is not None and n is not None:
        console.print(
            f"Power with {n} prompts at a {_pct(win_rate)} win rate: "
            f"{power_at(n, win_rate, alpha=alpha, tie_rate=tie_rate):.3f}."
        )


def _head_to_head_table(summary: StatsSummary, audit: AuditResult) -> Table:
    level = f"{100 * summary.confidence:g}%"
    h2h = Table(title=literal(f"Head to head against {summary.baseline} (ties count half)"))
    for column in (
        "candidate",
        "audit flags",
        "verdict [test interval]",
        "prompts",
        "W/T/L",
        f"win rate [Wilson {level}]",
        "SE",
        "p (t)" if summary.score == "soft" else "p (sign)",
        "p Holm",
        "length-controlled",
        "invalid",
    ):
        # The numbers never wrap; the bootstrap interval and soft rate are in --format json
        # and the reports (the terminal has no room for every column).
        # Names, verdicts and flags wrap; a long verdict ("judge split or tied ...") must
        # not squeeze the candidate's name out of the table.
        text = column in {"candidate", "verdict [test interval]", "audit flags"}
        h2h.add_column(column, justify="left" if text else "right", no_wrap=not text,
                       min_width=(18 if column == "audit flags" else 12) if text else None,
                       ratio=1 if text else None)
    for c in summary.candidates:
        h = c.head_to_head
        lc = c.length_controlled
        h2h.add_row(
            literal(h.candidate),
            audit.flags(h.candidate),
            f"{c.verdict} {_ci(c.verdict_interval)}",
            str(h.n_prompts),
            f"{h.wins}/{h.ties}/{h.losses}",
            f"{_pct(h.win_rate)} {_ci(h.wilson)}",
            f"{100 * h.standard_error:.1f}",
            _p(h.p_value),
            _p(c.p_holm),
            lc.shown(lambda r, i: f"{_pct(r)} {_ci(i)}") if lc else "-",
            str(h.n_invalid),
        )
    return h2h


def _print_summary(summary: StatsSummary, source: Path, console: Console,
                   audit: AuditResult) -> None:
    level = f"{100 * summary.confidence:g}%"
    # The path, judge and model names are the user's: shown literally, styled through Text.
    console.print(Text.assemble(
        literal(source, "bold"),
        f": {summary.n_judgments} judgments by ",
        literal(", ".join(summary.judges)),
        "; baseline ",
        literal(summary.baseline, "bold"),
        f"; {summary.n_invalid} invalid (never counted as ties)"
        + (f"; {summary.n_duplicates} duplicate keys dropped" if summary.n_duplicates else ""),
    ))
    console.print(f"{summary.orders}; scored {summary.score} "
                  f"({'soft preferences' if summary.score == 'soft' else 'winner labels'})")
    console.print(_head_to_head_table(summary, audit))
    from evalharness.report.findings import findings_section
    from evalharness.report.terminal import print_sections

    print_sections(console, [findings_section(audit)])
    from evalharness.stats.summary import length_notes

    for note in length_notes(summary):
        console.print(literal(f"Length control: {note}"), soft_wrap=True)
    bias = Table(title="Judge bias")
    for column in (
        "candidate",
        "both orders agree",
        "position A wins",
        "win rate when longer",
        "when shorter",
        "mean length diff (chars)",
    ):
        bias.add_column(column, justify="left" if column == "candidate" else "right")
    for c in summary.candidates:
        b = c.bias
        bias.add_row(
            literal(b.candidate),
            _pct(b.position_consistency),
            _pct(b.position.first_position_rate),
            f"{_pct(b.longer_win_rate)} (n={b.n_longer})",
            f"{_pct(b.shorter_win_rate)} (n={b.n_shorter})",
            _num(b.mean_length_difference, 0),
        )
    console.print(bias)
    pos = summary.position
    if pos.n_both_orders == 0:
        console.print(summary.position_note)
    else:
        console.print(
            f"Position A won {_pct(pos.first_position_rate)} of {pos.n_decided} decided games "
            f"(p = {_p(pos.p_value)}). {summary.position_note}"
        )
    bt = Table(
        title=f"League (Bradley-Terry, {summary.league.n_boot} bootstrap rounds over prompts)"
    )
    league_columns: tuple[str | Text, ...] = (
        "rank",
        "model",
        "strength",
        f"{level} interval",
        literal(f"P(beats {summary.baseline})"),
        f"{level} interval ",
        "rank range",
        "games",
    )
    for heading in league_columns:
        bt.add_column(heading, justify="left" if heading == "model" else "right")
    for s in summary.league.standings:
        bt.add_row(
            str(s.rank),
            literal(s.model),
            *_league_cells(s),
            f"{s.rank_interval.low:.0f}-{s.rank_interval.high:.0f}",
            str(s.n_games),
        )
    console.print(bt)
    if any(s.bound for s in summary.league.standings):
        console.print(
            "A model that won (lost) every game has no finite strength: ≥ (≤) is the one-sided "
            "exact bound, the strength at which a record that perfect still has a "
            f"{100 * (1 - summary.confidence) / 2:g}% chance against its opponents' fitted "
            "strengths."
        )
    if summary.paired:
        paired = Table(title="Adapter against adapter (same prompts, paired)")
        for column in (
            "a",
            "b",
            "prompts",
            "a - b",
            f"{level} interval",
            "a better / b better",
            "p (sign)",
            "p Holm",
        ):
            paired.add_column(column, justify="left" if column in "ab" else "right")
        for pair in summary.paired:
            cmp = pair.comparison
            paired.add_row(
                literal(cmp.a),
                literal(cmp.b),
                str(cmp.n_prompts),
                f"{100 * cmp.difference:+.1f}",
                _ci(cmp.interval),
                f"{cmp.a_better} / {cmp.b_better}",
                _p(cmp.p_value),
                _p(pair.p_holm),
            )
        console.print(paired)
    if summary.paradox is not None:
        _print_paradox(summary.paradox, level, console)
    if summary.hyperparameters:
        metric = summary.paradox.metric if summary.paradox is not None else "perplexity"
        hyper = Table(title=f"Win rate by hyperparameter value (mean over the candidates "
                      f"sharing it, {level} bootstrap over prompts)")
        for column in ("parameter", "value", "candidates", "win rate", f"{level} interval",
                       f"{metric.replace('_', ' ')} (range)"):
            hyper.add_column(column, justify="right" if column == "win rate" else "left")
        for row in summary.hyperparameters:
            span = row.perplexity_range
            hyper.add_row(
                literal(row.parameter), literal(row.value), literal(", ".join(row.candidates)),
                _pct(row.win_rate), _ci(row.interval),
                "-" if row.perplexity is None or span is None
                else f"{row.perplexity:.4f} ({span.low:.4f}-{span.high:.4f})",
            )
        console.print(hyper)
        console.print("With a handful of runs per value, these are hints for the next sweep, "
                      "not effects.")
    if summary.detectable is not None:
        d = summary.detectable
        console.print(
            f"With {d.n} prompts, only win rates beyond {_pct(d.win_rate)} (or below "
            f"{_pct(None if d.win_rate is None else 1 - d.win_rate)}) are detected with 80% "
            "power; a candidate inside that band may still be different from the baseline."
        )


def _print_paradox(px: Paradox, level: str, console: Console) -> None:
    metric = px.metric.replace("_", " ")
    table = Table(title=f"Perplexity against win rate (sorted by {metric}, lower first)")
    for column in ("candidate", "token ppl", "bits/byte", "win rate", f"Wilson {level}",
                   "prompts"):
        table.add_column(column, justify="left" if column == "candidate" else "right")
    for r in px.rows:
        table.add_row(literal(r.candidate), _plain(r.token_ppl, 4), _plain(r.bits_per_byte, 4),
                      _pct(r.win_rate), _ci(r.interval), str(r.n_prompts))
    console.print(table)
    if not math.isnan(px.spearman.estimate):
        console.print(
            f"Rank correlation of {metric} with win rate (negative = they agree): Spearman "
            f"{px.spearman.estimate:+.2f} [{px.spearman.interval.low:+.2f}, "
            f"{px.spearman.interval.high:+.2f}], Kendall {px.kendall.estimate:+.2f} "
            f"[{px.kendall.interval.low:+.2f}, {px.kendall.interval.high:+.2f}] ({level} "
            "bootstrap over prompts)."
        )
    if px.pairs:
        pairs = Table(title="Paradox pairs: lower perplexity, yet lower win rate")
        for column in ("lower perplexity", "higher perplexity", f"{metric} (lower / higher)",
                       "win-rate lead of the higher", f"{level} interval", "p Holm",
                       "clear reversal"):
            pairs.add_column(column, justify="left" if "perplexity" in column and "/" not in
                             column else "right")
        for p in px.pairs:
            pairs.add_row(literal(p.lower), literal(p.higher),
                          f"{p.perplexity_lower:.4f} / {p.perplexity_higher:.4f}",
                          f"{100 * p.difference:+.1f}", _ci(p.interval), _p(p.p_holm),
                          "yes" if p.significant else "no")
        console.print(pairs)
    console.print(literal(px.sentence))


def _plain(value: float, digits: int) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def _headline(file: Path, judgments: list[Judgment], judges: Sequence[str]) -> Headline:
    """The games ``stats`` reads (``stats.raters``): the judges named, else the run's."""
    from evalharness.stats.raters import headline
    from evalharness.store import MANIFEST, RunDir

    if judges:
        names = {j.judge for j in judgments}
        missing = [name for name in judges if name not in names]
        if missing:
            raise UserError(f"{file}: no games by judge {', '.join(missing)} (judges there: "
                            f"{', '.join(sorted(names)) or 'none'}). Fix: name a judge from "
                            "that list.")
        return headline(judgments, judges[0], judges if len(judges) > 1 else ())
    if file.name == "judgments.jsonl" and (file.parent / MANIFEST).is_file():
        with contextlib.suppress(UserError):  # an unreadable manifest: the games still tell
            manifest = RunDir(file.parent).read_manifest()
            return headline(judgments, manifest.judge, tuple(manifest.jury))
    return headline(judgments)


def stats(
    file: Annotated[
        Path, typer.Argument(help="Judgments file (JSON lines; schema in docs/statistics.md).")
    ],
    baseline: Annotated[
        str | None,
        typer.Option(
            help="The model every candidate is compared with (default: the baseline of the run "
            "the file is in, else the model in every pair)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    bootstrap: Annotated[int, typer.Option("--bootstrap", help="Bootstrap rounds.")] = 2000,
    format_: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
    runs: Annotated[
        Path | None,
        typer.Option(
            "--runs",
            "--ppl",
            help="CSV or JSON lines, one row per model: model, perplexity | eval_loss | "
            "bits_per_byte, and hyperparameter columns (learning_rate, lora_rank, ...). Adds "
            "the perplexity-paradox and hyperparameter tables.",
        ),
    ] = None,
    judge: Annotated[
        list[str] | None,
        typer.Option(
            "--judge",
            help="Only this judge's games (repeat it for a jury: majority of hard verdicts, "
            "or mean of soft preferences). Default: the run's judge or jury when the file is "
            "a run's judgments.jsonl, else every judge's games pooled (human labels and "
            "repeats left out).",
        ),
    ] = None,
    score: Annotated[
        str | None,
        typer.Option(
            "--score",
            help="soft (each game's weight_a) or hard (winner labels); default: soft when "
            "every valid game has a weight_a.",
        ),
    ] = None,
) -> None:
    """Every statistic of a judgments file: win rates, intervals, tests, bias, league."""
    from evalharness.audit.run import audit_file
    from evalharness.stats import read_judgments, summarize, to_jsonable
    from evalharness.stats.io import baseline_for
    from evalharness.stats.sweep import check_models, read_runs

    if format_ not in {"table", "json"}:
        raise UserError(f"--format {format_!r} is not known. Fix: use --format table or json.")
    if score not in {None, "soft", "hard"}:
        raise UserError(f"--score {score!r} is not known. Fix: use --score soft or --score "
                        "hard, or leave it out.")
    if bootstrap < 100:
        raise UserError(
            f"--bootstrap {bootstrap} is too few rounds for a 95% interval. "
            "Fix: use at least 100 (default 2000)."
        )
    recorded = read_judgments(file)
    judgments = _headline(file, recorded, judge or ()).judgments
    chosen = baseline if baseline is not None else baseline_for(file, judgments)
    table = read_runs(runs) if runs is not None else None
    if table is not None:
        models = sorted({m for j in judgments for m in (j.first, j.second)} - {chosen})
        for warning in check_models(table, models, chosen, runs or file):
            LiteralConsole(stderr=True).print(f"warning: {warning}", soft_wrap=True)
    # The baseline's row (if any) has no win rate against itself: left out of both tables.
    ppl = {m: p for m, p in table.perplexity.items() if m != chosen} if table else {}
    hyper = {m: h for m, h in table.hyperparameters.items() if m != chosen} if table else {}
    summary = summarize(judgments, chosen, seed=seed, n_boot=bootstrap,
                        perplexity=ppl or None, hyperparameters=hyper or None,
                        score=cast("ScoreMode | None", score))
    audit = audit_file(file, judgments, chosen)
    if format_ == "json":
        typer.echo(json.dumps(to_jsonable(summary) | {"audit": {
            "answers_audited": audit.answers_audited,
            "findings": [f.model_dump(mode="json") for f in audit.findings]}}, indent=2))
    else:
        _print_summary(summary, file, output_console(), audit)
    if summary.problem is not None:  # the numbers above are all "-": say why, and exit 2
        raise UserError(summary.problem)


def register(app: typer.Typer) -> None:
    """Add the statistics commands (``power``, ``stats``) to ``app``."""
    app.command("power")(power)
    app.command("stats")(stats)
