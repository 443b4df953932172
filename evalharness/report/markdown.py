"""The report's content as sections of paragraphs and tables, and its Markdown rendering.

``report_sections`` decides what the report says (which tables, which numbers, with which
intervals); ``render_markdown`` and ``html.render_html`` only lay it out, so the two formats
always show the same numbers. Every rate is printed with its interval.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Sequence

from evalharness.audit.run import identical_answers
from evalharness.redact import redact_text
from evalharness.report.blocks import Block, Figure, Paragraph, Section, Table
from evalharness.report.data import ReportData
from evalharness.report.findings import findings_section
from evalharness.report.judges import judge_agreement_line, judges_section
from evalharness.stats import Interval, Standing, wilson
from evalharness.stats.summary import CandidateStats, length_notes

FIGURE_FOREST = "forest"
FIGURE_PARADOX = "paradox"
FIGURE_LENGTH = "length"


# --- number formatting -------------------------------------------------------------------


def _nan(value: float | None) -> bool:
    return value is None or math.isnan(value)


def pct(value: float | None) -> str:
    """A rate as a percentage with one decimal.

    >>> pct(0.62), pct(float("nan"))
    ('62.0%', '-')
    """
    return "-" if value is None or _nan(value) else f"{100 * value:.1f}%"


def ci(interval: Interval | None) -> str:
    """An interval of rates, in percent.

    >>> ci(Interval(0.4816, 0.7414))
    '[48.2, 74.1]'
    """
    if interval is None or _nan(interval.low) or _nan(interval.high):
        return "[-]"
    return f"[{100 * interval.low:.1f}, {100 * interval.high:.1f}]"


def rate(value: float | None, interval: Interval | None) -> str:
    """A rate with its interval: ``62.0% [48.2, 74.1]``."""
    return "-" if _nan(value) else f"{pct(value)} {ci(interval)}"


def pval(value: float) -> str:
    """A p-value: three significant digits, or ``<0.001``.

    >>> pval(0.11894), pval(0.00001)
    ('0.119', '<0.001')
    """
    if math.isnan(value):
        return "-"
    return f"{value:.3g}" if value >= 0.001 else "<0.001"


def num(value: float | None, digits: int = 2, sign: bool = False) -> str:
    """A plain number (``-`` when missing)."""
    if value is None or _nan(value):
        return "-"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def num_ci(value: float, interval: Interval, digits: int = 2, sign: bool = False) -> str:
    """A number with its interval: ``+0.85 [+0.10, +1.62]``."""
    if _nan(value):
        return "-"
    if _nan(interval.low) or _nan(interval.high):
        return f"{num(value, digits, sign)} [-]"
    return (f"{num(value, digits, sign)} [{num(interval.low, digits, sign)}, "
            f"{num(interval.high, digits, sign)}]")


def points(difference: float, interval: Interval) -> str:
    """A difference of rates in percentage points: ``+25.0 points [+1.0, +52.0]``."""
    scaled = Interval(100 * interval.low, 100 * interval.high)
    return f"{num_ci(100 * difference, scaled, 1, sign=True)} points"


def share(rate_: float, n: int, confidence: float) -> str:
    """A share of ``n`` units with its Wilson interval and n: ``75.0% [53.1, 88.8] (n=20)``."""
    if n == 0 or _nan(rate_):
        return "- (n=0)"
    return f"{rate(rate_, wilson(rate_ * n, n, confidence))} (n={n})"


# --- sections ----------------------------------------------------------------------------


def _verdict_interval(rate_: float, interval: Interval, level: float, nominal: float) -> str:
    """The interval the verdict was read from, its level named when Holm raised it."""
    if _nan(rate_):
        return "-"
    raised = "" if math.isclose(level, nominal) else f" at {100 * level:.3g}%"
    return f"{ci(interval)}{raised}"


def shown_verdict(data: ReportData, candidate: CandidateStats) -> str:
    """The verdict as reports show it: the statistics' verdict, except that a candidate whose
    answers are the baseline's on most prompts is said to be so (its ties are the judge
    doing right, not a judge that cannot tell answers apart)."""
    h = candidate.head_to_head
    same = len(identical_answers(data.answers, data.baseline).get(h.candidate, ()))
    if h.undecided and same * 2 > h.n_prompts:
        return (f"answers identical to {data.baseline}'s on {same} of {h.n_prompts} prompts: "
                "nothing to judge")
    return candidate.verdict


def _summary(data: ReportData) -> Section:
    s = data.stats
    level = f"{100 * s.confidence:g}%"
    n_prompts = len({j.prompt_id for j in data.judgments})
    scored = ("soft preferences (the judge's P(candidate better), averaged per prompt)"
              if s.score == "soft" else "verdicts (win 1, tie 0.5, loss 0)")
    intro = (
        f"Run {data.manifest.run_id}: {n_prompts} prompts, {s.n_judgments} judgments by "
        f"{', '.join(s.judges)}, {s.orders}. Baseline: {s.baseline}. Scored on {scored}. "
        f"{s.n_invalid} judgment(s) had no readable verdict; they are counted here and never "
        "scored as ties."
        + (f" {s.n_duplicates} duplicate judgment(s) were dropped." if s.n_duplicates else "")
    )
    soft = any(c.head_to_head.soft_win_rate is not None for c in s.candidates)
    test = "t-test" if s.score == "soft" else "sign test"
    columns = ["candidate", "verdict", f"{test} interval", "prompts", "W/T/L games",
               f"win rate, Wilson {level}", "SE", f"bootstrap {level}",
               "p (t)" if s.score == "soft" else "p (sign)", "p Holm",
               f"length-controlled, {level}"]
    if soft:
        columns.append("soft win rate")
    columns += ["invalid", "audit flags"]
    rows = []
    for c in s.candidates:
        h = c.head_to_head
        lc = c.length_controlled
        row = [h.candidate, shown_verdict(data, c),
               _verdict_interval(h.win_rate, c.verdict_interval, c.verdict_level, s.confidence),
               str(h.n_prompts), f"{h.wins}/{h.ties}/{h.losses}", rate(h.win_rate, h.wilson),
               num(100 * h.standard_error, 1), ci(h.bootstrap), pval(h.p_value), pval(c.p_holm),
               lc.shown(rate) if lc else "- (fewer than 20 prompts)"]
        if soft:
            row.append(f"{pct(h.soft_win_rate)} (n={h.n_soft_prompts})")
        row += [str(h.n_invalid), data.audit.flags(h.candidate)]
        rows.append(tuple(row))
    blocks: list[Block] = [Paragraph(intro)]
    if s.problem:  # every judgment invalid: say why there is no win rate
        blocks.append(Paragraph(f"Warning: {s.problem}"))
    if data.prompts_note:
        blocks.append(Paragraph(f"Note: {data.prompts_note}."))
    blocks.append(Paragraph(judge_agreement_line(
        data.raters, data.raters.headline.source if data.raters else ", ".join(s.judges))))
    blocks += [Paragraph(f"Length control: {note}") for note in length_notes(s)]
    blocks += [
        Table(f"Head to head against {s.baseline} (ties count half)", tuple(columns),
              tuple(rows)),
        Paragraph(
            f"Verdict: read from the {test} interval beside it, which holds 50% exactly when "
            f"the Holm-adjusted {test} does not reject a 50% win rate at "
            f"{100 * (1 - s.confidence):g}%: 'better' or 'worse' when the interval lies above "
            "or below 50%, otherwise 'cannot tell'. With several candidates Holm's procedure "
            "raises that interval's level (named in the cell). A judge that split or tied "
            "most prompts gives no evidence either way and is named as such. A prompt's score "
            "is the mean of its valid games; SE is sd / sqrt(prompts) of the prompt scores, "
            "in points; the Wilson and bootstrap intervals resample prompts."
        ),
        Figure(FIGURE_FOREST, f"Win rate against {s.baseline} with Wilson {level} intervals "
               "(and the length-controlled rate); the line is 50%."),
    ]
    d = s.detectable
    if d is not None and d.win_rate is not None:
        blocks.append(Paragraph(
            f"With {d.n} prompts, only win rates beyond {pct(d.win_rate)} (or below "
            f"{pct(1 - d.win_rate)}) are detected with {100 * d.power:g}% power; a candidate "
            "inside that band may still differ from the baseline."
        ))
    return Section("summary", "Summary", tuple(blocks))


def _league(data: ReportData) -> Section | None:
    s = data.stats
    if len(s.candidates) < 2:
        return None
    level = f"{100 * s.confidence:g}%"
    lg = s.league
    rows = tuple(
        (st.model, str(st.rank), f"{st.rank_interval.low:.0f}-{st.rank_interval.high:.0f}",
         *_league_cells(st), str(st.n_games), data.audit.flags(st.model))
        for st in lg.standings
    )
    round_robin = any(s.baseline not in (j.first, j.second) for j in data.judgments)
    scope = ("adapter-vs-adapter games included" if round_robin
             else f"all against {s.baseline}; --round-robin adds adapter-vs-adapter games")
    blocks: list[Block] = [
        Paragraph(
            f"Bradley-Terry strengths from every valid game ({lg.n_games} games on "
            f"{lg.n_prompts} prompts, {scope}), {lg.n_boot} bootstrap "
            f"rounds over prompts. Strength is the log-odds of beating {s.baseline} "
            f"(fixed at 0); the rank range is the {level} bootstrap interval of the rank."
            + (f" A model that won (lost) every game has no finite strength: ≥ (≤) gives the "
               f"one-sided exact bound, the strength at which a record that perfect still has "
               f"a {100 * (1 - s.confidence) / 2:g}% chance against its opponents' fitted "
               "strengths." if any(st.bound for st in lg.standings) else "")
        ),
        Table("League (Bradley-Terry)", ("model", "rank", f"rank range {level}",
                                         f"strength, {level}",
                                         f"P(beats {s.baseline}), {level}", "games",
                                         "audit flags"), rows),
    ]
    if s.paired:
        blocks.append(Table(
            "Adapter against adapter (same prompts, paired; each measured against "
            f"{s.baseline})",
            ("a", "b", "prompts", f"win rate a - b, {level}", "a better / b better",
             "p (sign)", "p Holm"),
            tuple(
                (p.comparison.a, p.comparison.b, str(p.comparison.n_prompts),
                 points(p.comparison.difference, p.comparison.interval),
                 f"{p.comparison.a_better} / {p.comparison.b_better}",
                 pval(p.comparison.p_value), pval(p.p_holm))
                for p in s.paired
            ),
        ))
    return Section("league", "League", tuple(blocks))


def _league_cells(st: Standing) -> tuple[str, str]:
    """Strength and win-probability cells of a league row: point and interval, or the
    one-sided bound of a model that won (lost) every game.

    >>> from evalharness.stats import Interval
    >>> st = Standing("a", float("inf"), Interval(0.81, float("inf")), 1.0,
    ...               Interval(0.692, 1.0), 1, Interval(1, 1), 10, "lower")
    >>> _league_cells(st)
    ('≥ +0.81 (won every game)', '≥ 69.2%')
    """
    if st.bound == "lower":
        return (f"≥ {num(st.interval.low, 2, True)} (won every game)",
                f"≥ {pct(st.win_probability_interval.low)}")
    if st.bound == "upper":
        return (f"≤ {num(st.interval.high, 2, True)} (lost every game)",
                f"≤ {pct(st.win_probability_interval.high)}")
    return (num_ci(st.strength, st.interval, sign=True),
            rate(st.win_probability, st.win_probability_interval))


def _perplexity(data: ReportData) -> Section | None:
    if not data.perplexity:
        return None
    s = data.stats
    level = f"{100 * s.confidence:g}%"
    ref = data.manifest.ppl_data
    where = f" on {ref.name} ({ref.n} examples, sha256 {ref.sha256[:12]})" if ref else ""
    blocks: list[Block] = [
        Paragraph(
            f"Perplexity{where}; lower is better. Intervals resample the evaluation "
            "examples. Token perplexity is exp(total NLL / total tokens); bits per byte does "
            "not depend on the tokenizer."
        ),
        Table("Perplexity", ("model", "examples", "tokens", f"token ppl, {level}",
                             "mean example ppl", f"bits/byte, {level}"),
              tuple((r.summary.model, str(r.summary.n_examples), str(r.summary.n_tokens),
                     num_ci(r.summary.token_perplexity, r.token_ppl_interval, 3),
                     num(r.summary.mean_example_perplexity, 3),
                     num_ci(r.summary.bits_per_byte, r.bits_per_byte_interval, 4))
                    for r in data.perplexity)),
    ]
    px = s.paradox
    if px is not None and px.rows:
        metric = px.metric.replace("_", " ")
        blocks += [
            Table(f"Perplexity against win rate (sorted by {metric})",
                  ("candidate", "token ppl", "bits/byte", f"win rate, Wilson {level}",
                   "prompts"),
                  tuple((r.candidate, num(r.token_ppl, 3), num(r.bits_per_byte, 4),
                         rate(r.win_rate, r.interval), str(r.n_prompts)) for r in px.rows)),
        ]
        if not math.isnan(px.spearman.estimate):
            blocks.append(Paragraph(
                f"Rank correlation of {metric} with win rate (negative = they agree): Spearman "
                f"{num_ci(px.spearman.estimate, px.spearman.interval, sign=True)}, Kendall "
                f"{num_ci(px.kendall.estimate, px.kendall.interval, sign=True)} ({level} "
                "bootstrap intervals over prompts)."
            ))
        if px.pairs:
            blocks.append(Table(
                "Paradox pairs: lower perplexity, yet lower win rate",
                ("lower perplexity", "higher perplexity", f"{metric} (lower / higher)",
                 f"win-rate lead of the higher, {level}", "p Holm", "clear reversal"),
                tuple((p.lower, p.higher,
                       f"{num(p.perplexity_lower, 4)} / {num(p.perplexity_higher, 4)}",
                       points(p.difference, p.interval), pval(p.p_holm),
                       "yes" if p.significant else "no")
                      for p in px.pairs),
            ))
        else:
            blocks.append(Paragraph("No paradox pairs: no candidate with lower perplexity "
                                    "has a lower win rate."))
        blocks += [Paragraph(px.sentence),
                   Figure(FIGURE_PARADOX, f"Win rate (Wilson {level}) against {metric}.")]
    return Section("perplexity", "Perplexity and win rate", tuple(blocks))


def _bias(data: ReportData) -> Section:
    s = data.stats
    level = f"{100 * s.confidence:g}%"
    rows = []
    for c in s.candidates:
        b = c.bias
        rows.append((
            b.candidate,
            share(b.position_consistency, b.n_both_orders, s.confidence),
            f"{share(b.position.first_position_rate, b.position.n_decided, s.confidence)}, "
            f"p {pval(b.position.p_value)}",
            share(b.longer_win_rate, b.n_longer, s.confidence),
            share(b.shorter_win_rate, b.n_shorter, s.confidence),
            num(b.mean_length_difference, 0, sign=True),
        ))
    pos = s.position
    if pos.n_both_orders == 0:
        overall = s.position_note
    else:
        overall = (
            "Over the prompts judged in both orders position A won "
            f"{share(pos.first_position_rate, pos.n_decided, s.confidence)} "
            f"of decided games (p {pval(pos.p_value)}); ties were {pct(pos.tie_rate)} of those "
            f"valid games. {s.position_note}"
        )
    return Section("bias", "Judge bias", (
        Paragraph(
            "Both orders agree: share of prompts judged in both orders where the two games "
            "gave the same result (n = prompts). Position A wins: on those prompts only, the "
            "share of decided games won by the answer shown first (50% = no preference; "
            "n = games). Longer/shorter: the "
            "candidate's mean game score when its answer was longer/shorter than the "
            f"baseline's (n = games). Intervals: Wilson {level}; games of one prompt share "
            "answers, so treat game-level intervals as diagnostics."
        ),
        Table("Judge bias per candidate", (
            "candidate", "both orders agree", "position A wins", "win rate when longer",
            "win rate when shorter", "mean length diff (chars)"), tuple(rows)),
        Paragraph(overall),
        Figure(FIGURE_LENGTH, "Length effect: win rate when the candidate's answer was longer "
               "or shorter, and each prompt's score against the length difference."),
    ))


def _hyperparameters(data: ReportData) -> Section | None:
    models = [m for m, h in data.hyperparameters.items() if h]
    if not models:
        return None
    keys = sorted({k for m in models for k in data.hyperparameters[m]})
    s = data.stats
    level = f"{100 * s.confidence:g}%"
    blocks: list[Block] = [
        Table("Hyperparameters (from the manifest)", ("model", *keys),
              tuple((m, *(str(data.hyperparameters[m].get(k, "-")) for k in keys))
                    for m in models)),
    ]
    if s.hyperparameters:
        blocks.append(Table(
            f"Win rate by hyperparameter value (mean over the candidates sharing it, {level} "
            "bootstrap over prompts)",
            ("parameter", "value", "candidates", f"win rate, {level}", "perplexity (range)"),
            tuple((r.parameter, r.value, ", ".join(r.candidates), rate(r.win_rate, r.interval),
                   "-" if r.perplexity is None or r.perplexity_range is None else
                   f"{num(r.perplexity, 4)} ({num(r.perplexity_range.low, 4)}-"
                   f"{num(r.perplexity_range.high, 4)})")
                  for r in s.hyperparameters),
        ))
        blocks.append(Paragraph("With a handful of adapters per value, these are hints for "
                                "the next sweep, not effects."))
    return Section("hyperparameters", "Hyperparameters", tuple(blocks))


def _cost(data: ReportData) -> Section:
    groups: dict[tuple[str, str], list[int | float]] = {}
    for j in data.recorded or data.judgments:
        key = (j.judge, " vs ".join(sorted((j.first, j.second))))
        g = groups.setdefault(key, [0, 0, 0, 0, 0.0])
        g[0] += 1
        g[1] += j.attempts
        g[2] += j.usage.prompt_tokens
        g[3] += j.usage.completion_tokens
        g[4] += j.cost_usd
    rows = [(judge, pair, str(g[0]), str(g[1]), f"{int(g[2]):,}", f"{int(g[3]):,}",
             f"${g[4]:.4f}") for (judge, pair), g in sorted(groups.items())]
    totals = [sum(g[i] for g in groups.values()) for i in range(5)]
    rows.append(("total", "", str(totals[0]), str(totals[1]), f"{int(totals[2]):,}",
                 f"{int(totals[3]):,}", f"${totals[4]:.4f}"))
    return Section("cost", "Judge tokens and cost", (
        Table("Judge calls", ("judge", "models", "judgments", "calls (retries included)",
                              "prompt tokens", "completion tokens", "cost (USD)"), tuple(rows)),
        Paragraph("Cost is estimated from the judge's prices ("
                  + ("; ".join(f"{judge}: {source}" for judge, source
                               in sorted(data.manifest.price_sources.items()))
                     or "its config") + "); judgments reused from other runs carry the cost "
                  "of their first computation."),
    ))


def _provenance(data: ReportData) -> Section:
    m = data.manifest
    s = data.stats
    rows: list[tuple[str, str]] = [
        ("run id", m.run_id),
        ("run directory", str(data.run_dir)),
        ("command", m.command),
        ("command line", shlex.join(m.argv)),
        ("status", m.status),
        ("created / updated", f"{m.created} / {m.updated}"),
        ("backend", m.backend or "-"),
    ]
    if m.prompts is not None:
        rows.append(("prompt set", f"{m.prompts.name} ({m.prompts.n} prompts) from "
                                   f"{m.prompts.source}"))
        rows.append(("prompt set sha256", m.prompts.sha256))
    if m.ppl_data is not None:
        rows.append(("perplexity data", f"{m.ppl_data.name} ({m.ppl_data.n} examples) from "
                                        f"{m.ppl_data.source}"))
        rows.append(("perplexity data sha256", m.ppl_data.sha256))
    if m.gen is not None:
        g = m.gen
        rows.append(("generation", f"max_new_tokens={g.max_new_tokens} "
                                   f"temperature={g.temperature} top_p={g.top_p} seed={g.seed}"
                     + (f" stop={list(g.stop)}" if g.stop else "")))
    rows.append(("judges", ", ".join(s.judges)))
    rows.append(("statistics", f"seed {s.seed}, {s.n_boot} bootstrap rounds, "
                               f"{100 * s.confidence:g}% intervals"))
    rows += [(f"version: {k}", v) for k, v in sorted(m.versions.items())]
    models = tuple(
        (c.name, c.kind, c.base_model, c.base_fingerprint[:12],
         c.adapter or "-", (c.adapter_sha256 or "-")[:12])
        for c in m.candidates
    )
    return Section("provenance", "Provenance", (
        # Settings are shared with the report: the manifest's argv is masked already, the
        # rest (paths, data sources, versions) is masked here in case it carries a URL's key.
        Table("Run", ("field", "value"), tuple((k, redact_text(v)) for k, v in rows)),
        Table("Models", ("model", "kind", "base model", "base fingerprint", "adapter",
                         "adapter sha256"), models),
    ))


def report_sections(data: ReportData) -> tuple[Section, ...]:
    """The report's sections, in order; sections without data are left out."""
    found = [_summary(data), findings_section(data.audit),
             judges_section(data.raters, data.candidates), _league(data), _perplexity(data),
             _bias(data), _hyperparameters(data), _cost(data), _provenance(data)]
    return tuple(s for s in found if s is not None)


# --- Markdown ----------------------------------------------------------------------------

# Markdown meaning of a character, escaped wherever it appears: emphasis and code (`*`, `_`,
# backtick), table cells (`|`), strikethrough (`~`) and the escape character itself. `<` and
# `&` become entities: no HTML tag, no `<http://...>` autolink, no entity (`&lt;`) turned
# into another character.
_SPECIAL = re.compile(r"([\\`*|~])")
# Links, images, references and their definitions all need a "]" right before "(", "[" or
# ":"; escaping that one keeps the intervals of the report ("62.0% [48.2, 74.1]") readable.
_LINK_CLOSE = re.compile(r"\](?=[(\[:])")
_EDGE_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
# At the start of a line: headings, block quotes, list items, setext underlines, and an
# indented code block (leading spaces go with the whitespace collapse).
_LINE_START = re.compile(
    r"^(?:(?P<mark>>|[#+=-](?=\s|$|#))|(?P<num>\d{1,9})(?P<dot>[.)])(?=\s|$))")
# GitHub turns a bare http://... into a link; an escaped colon breaks the match.
_AUTOLINK = re.compile(r"(?<=[A-Za-z0-9]):(?=//)")
_DOLLAR = re.compile(r"\$")


def md_escape(text: str, *, line: bool = False) -> str:
    r"""Escape text so Markdown shows it literally: no link, image, emphasis, code, HTML,
    heading, quote or list comes from it. Newlines become spaces (a cell is one line).

    ``line``: the text starts a line (a paragraph), where ``#``, ``>``, ``-`` or ``1.`` would
    open a block; inside a table cell they are plain text and stay unescaped (``-0.25``).

    Underscores inside words are left alone (GitHub never reads them as emphasis).

    >>> md_escape("lora_rank *x* <img src=x> a|b")
    'lora_rank \\*x\\* &lt;img src=x> a\\|b'
    >>> md_escape("[x](javascript:alert(1)) ![i](http://e/x.png)")
    '[x\\](javascript:alert(1)) ![i\\](http\\://e/x.png)'
    >>> [md_escape(t, line=True) for t in ("# 1. x", "2) item", ">q", "-0.5", "2.5 a")]
    ['\\# 1. x', '2\\) item', '\\>q', '-0.5', '2.5 a']
    >>> md_escape("$0.0100"), md_escape("$x$ and $$")
    ('$0.0100', '\\$x\\$ and \\$\\$')
    """
    text = text.replace("&", "&amp;").replace("<", "&lt;")
    text = _SPECIAL.sub(r"\\\1", text)
    text = _LINK_CLOSE.sub(r"\\]", text)
    text = _EDGE_UNDERSCORE.sub(r"\\_", text)
    text = _AUTOLINK.sub(r"\\:", text)
    if text.count("$") > 1:  # GitHub math needs a pair; a lone price ($0.01) stays as it is
        text = _DOLLAR.sub(r"\\$", text)
    text = " ".join(text.split())
    if not line:
        return text
    return _LINE_START.sub(
        lambda m: f"\\{m['mark']}" if m["mark"] else f"{m['num']}\\{m['dot']}", text)


def _md_table(table: Table) -> list[str]:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(md_escape(c) or " " for c in cells) + " |"

    align = ["---:" if table.numeric(i) else "---" for i in range(len(table.columns))]
    return [f"**{md_escape(table.caption)}**", "", line(table.columns),
            "| " + " | ".join(align) + " |", *(line(r) for r in table.rows), ""]


def render_markdown(data: ReportData) -> str:
    """The whole report as GitHub-flavoured Markdown."""
    lines = [f"# evalharness report: {md_escape(data.manifest.run_id)}", ""]
    for section in report_sections(data):
        lines += [f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Paragraph):
                lines += [md_escape(block.text, line=True), ""]
            elif isinstance(block, Table):
                lines += _md_table(block)
    lines.append("Made by `evalharness report` from the run directory alone; "
                 "`evalharness stats` on its judgments gives the same numbers.")
    return "\n".join(lines) + "\n"
