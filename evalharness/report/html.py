"""The self-contained HTML report: the Markdown report's tables, plots, and a prompt viewer.

One file, no external assets: CSS and JavaScript are inlined from ``templates/``, plots are
inline SVG, and a Content-Security-Policy forbids loading anything from elsewhere. Every
piece of run data is untrusted text (answers, judge rationales, even model names): tables
are escaped here with ``html.escape``; the viewer's data travels as JSON in a
``<script type="application/json">`` block with ``<``, ``>`` and ``&`` written as
``\\u003c``-style escapes, and the JavaScript only ever sets ``textContent``.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from importlib import resources
from string import Template
from typing import Any

from evalharness.report.blocks import Figure, Paragraph, Section, Table
from evalharness.report.data import ReportData
from evalharness.report.markdown import report_sections
from evalharness.report.plots import render_plots

_TEMPLATE_PACKAGE = "evalharness.report"
_VIEWER_AFTER = "bias"
"""The prompt viewer follows this section."""


def template_text(name: str) -> str:
    """A file of ``evalharness/report/templates/``."""
    return (resources.files(_TEMPLATE_PACKAGE) / "templates" / name).read_text(encoding="utf-8")


def script_json(value: Any) -> str:
    """JSON that is safe inside ``<script type="application/json">``: no ``<``, ``>``, ``&``.

    >>> script_json({"t": "</script><img src=x>"})
    '{"t": "\\\\u003c/script\\\\u003e\\\\u003cimg src=x\\\\u003e"}'
    """
    text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escape)
    return text


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _table(table: Table) -> str:
    numeric = [table.numeric(i) for i in range(len(table.columns))]

    def cell(tag: str, text: str, i: int) -> str:
        cls = ' class="num"' if numeric[i] else ""
        return f"<{tag}{cls}>{_esc(text)}</{tag}>"

    head = "".join(cell("th", c, i) for i, c in enumerate(table.columns))
    body = "".join(
        "<tr>" + "".join(cell("td", c, i) for i, c in enumerate(row)) + "</tr>"
        for row in table.rows
    )
    return (f'<div class="table-wrap"><table><caption>{_esc(table.caption)}</caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>")


def _section(section: Section, plots: Mapping[str, str]) -> str:
    parts = [f'<section id="{section.id}"><h2>{_esc(section.title)}</h2>']
    for block in section.blocks:
        if isinstance(block, Paragraph):
            parts.append(f"<p>{_esc(block.text)}</p>")
        elif isinstance(block, Table):
            parts.append(_table(block))
        elif isinstance(block, Figure) and block.name in plots:
            # Plots come from matplotlib (its SVG writer escapes the labels it draws).
            parts.append(f'<figure class="plot" data-plot="{block.name}">{plots[block.name]}'
                         f"<figcaption>{_esc(block.caption)}</figcaption></figure>")
    parts.append("</section>")
    return "".join(parts)


def viewer_data(data: ReportData) -> dict[str, Any]:
    """What the prompt viewer needs, as plain JSON values."""
    candidates = list(data.candidates)
    wanted = {*candidates, data.baseline}
    answers: dict[str, dict[str, dict[str, Any]]] = {}
    for a in data.answers:
        if a.model in wanted:
            answers.setdefault(a.model, {})[a.prompt_id] = {
                "text": a.text, "n_tokens": a.n_tokens, "finish_reason": a.finish_reason}
    games: dict[str, dict[str, list[dict[str, Any]]]] = {c: {} for c in candidates}
    for j in data.judgments:
        pair = {j.first, j.second}
        if data.baseline not in pair or len(pair) != 2:
            continue
        candidate = j.second if j.first == data.baseline else j.first
        if candidate not in games:
            continue
        winner_model = (None if j.winner is None else "tie" if j.winner == "tie"
                        else j.first if j.winner == "A" else j.second)
        games[candidate].setdefault(j.prompt_id, []).append({
            "judge": j.judge, "first": j.first, "second": j.second, "verdict": j.verdict,
            "winner": j.winner, "winner_model": winner_model, "weight_a": j.weight_a,
            "first_length": j.first_length, "second_length": j.second_length, "raw": j.raw,
            "error": j.error, "attempts": j.attempts,
        })
    for per_prompt in games.values():
        for listed in per_prompt.values():
            listed.sort(key=lambda g: g["first"] == data.baseline)  # candidate-first game first
    outcomes = {
        c: {pid: {"outcome": o.outcome, "score": o.score, "n_invalid": o.n_invalid}
            for pid, o in data.outcomes[c].items()}
        for c in candidates
    }
    prompts = [
        {"id": p.id, "category": p.category, "reference": p.reference,
         "messages": [{"role": m.role, "content": m.content} for m in p.messages]}
        for p in data.prompts
    ]
    known = {p.id for p in data.prompts}
    extra = sorted({pid for c in candidates for pid in outcomes[c]} - known)
    prompts += [{"id": pid, "category": "default", "reference": None, "messages": []}
                for pid in extra]
    return {
        "baseline": data.baseline,
        "candidates": candidates,
        "categories": sorted({str(p["category"]) for p in prompts}),
        "prompts_note": data.prompts_note,
        "prompts": prompts,
        "answers": answers,
        "outcomes": outcomes,
        "games": games,
    }


def render_html(data: ReportData) -> str:
    """The whole report as one self-contained HTML page."""
    plots = render_plots(data)
    sections = report_sections(data)
    body: list[str] = []
    nav: list[tuple[str, str]] = []
    for section in sections:
        body.append(_section(section, plots))
        nav.append((section.id, section.title))
        if section.id == _VIEWER_AFTER:
            body.append(template_text("viewer.html"))
            nav.append(("prompts", "Prompts"))
    title = f"evalharness report: {data.manifest.run_id}"
    return Template(template_text("report.html")).substitute(
        title=_esc(title),
        subtitle=_esc(f"{len(data.candidates)} candidate(s) against {data.baseline}; "
                      f"judges: {', '.join(data.stats.judges)}; run status: "
                      f"{data.manifest.status}"),
        css=template_text("report.css"),
        nav="".join(f'<a href="#{sid}">{_esc(name)}</a>' for sid, name in nav),
        body="\n".join(body),
        data=script_json(viewer_data(data)),
        js=template_text("report.js"),
    )
