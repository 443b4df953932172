"""The HTML report's plots, drawn with matplotlib into inline SVG.

A bare ``matplotlib.figure.Figure`` is used, never pyplot: no GUI backend is chosen, no
global state changes, and nothing needs closing.

Each function returns SVG markup that can be pasted into an HTML page: no XML prolog, text
drawn as paths (no fonts needed), ids prefixed per figure so two figures never share one.
Nothing here opens a window or touches a display.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np

from evalharness.report.data import ReportData
from evalharness.report.markdown import FIGURE_FOREST, FIGURE_LENGTH, FIGURE_PARADOX
from evalharness.stats import pair_games, prompt_scores, wilson

_STYLE: Mapping[str, Any] = {
    "svg.fonttype": "path",
    "svg.hashsalt": "evalharness-report",
    # Labels are model names: "$...$" in one must be drawn as written, not as math (an
    # unbalanced or unknown TeX command would even fail the whole report).
    "text.parse_math": False,
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
}
# No date (the same run gives the same file) and no RDF block (no URLs in the page).
_NO_METADATA = {"Date": None, "Creator": None, "Format": None, "Type": None}
_BLUE, _ORANGE, _GREY = "#1f5fa8", "#d9730d", "#888888"
_COLORS = ("#1f5fa8", "#d9730d", "#2a9d55", "#b23a48", "#7b4fa0", "#8c6d31", "#17becf")


@contextmanager
def _figure(width: float, height: float, ncols: int = 1) -> Iterator[tuple[Any, Any]]:
    import matplotlib
    from matplotlib.figure import Figure

    # A bare Figure, not pyplot: no global backend switch, no window, nothing to close.
    with matplotlib.rc_context(dict(_STYLE)):
        fig = Figure(figsize=(width, height))
        yield fig, fig.subplots(1, ncols, squeeze=False)[0]


def _svg(fig: Any, prefix: str) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight", metadata=_NO_METADATA)
    return inline_svg(buffer.getvalue(), prefix)


def inline_svg(svg: str, prefix: str) -> str:
    """SVG text made fit to paste into HTML: no prolog, ids prefixed with ``prefix``.

    >>> inline_svg('<?xml version="1.0"?>\\n<svg><path id="a"/><use xlink:href="#a"/>'
    ...            '<g clip-path="url(#a)"/></svg>', "f1")
    '<svg><path id="f1-a"/><use xlink:href="#f1-a"/><g clip-path="url(#f1-a)"/></svg>'
    """
    svg = svg[svg.index("<svg"):]
    ids = set(re.findall(r'\bid="([^"]+)"', svg))
    if not ids:
        return svg.strip()

    def rename(match: re.Match[str]) -> str:
        name = match.group(2)
        return f"{match.group(1)}{prefix}-{name}" if name in ids else match.group(0)

    svg = re.sub(r'(\bid="|href="#|url\(#)([^")]+)', rename, svg)
    return svg.strip()


def forest_svg(data: ReportData) -> str:
    """Win rate of each candidate against the baseline, Wilson interval, 50% line."""
    s = data.stats
    rows = [c for c in s.candidates if not math.isnan(c.head_to_head.win_rate)][::-1]
    with _figure(6.4, 0.9 + 0.45 * max(len(rows), 1)) as (fig, axes):
        ax = axes[0]
        y = np.arange(len(rows), dtype=float)
        for i, c in enumerate(rows):
            h = c.head_to_head
            ax.errorbar(100 * h.win_rate, y[i] + 0.12,
                        xerr=_err(h.win_rate, h.wilson.low, h.wilson.high),
                        fmt="o", color=_BLUE, capsize=3,
                        label="win rate (Wilson)" if i == 0 else None)
            ax.annotate(f"{100 * h.win_rate:.1f}%", (100 * h.wilson.high, y[i] + 0.12),
                        xytext=(4, -3), textcoords="offset points", fontsize=8)
            lc = c.length_controlled
            if lc is not None and not math.isnan(lc.interval.low):
                ax.errorbar(100 * lc.win_rate, y[i] - 0.12,
                            xerr=_err(lc.win_rate, lc.interval.low, lc.interval.high),
                            fmt="s", mfc="white", color=_ORANGE, capsize=3,
                            label="length-controlled" if i == 0 else None)
        ax.axvline(50, color=_GREY, linestyle="--", linewidth=1)
        ax.set_yticks(y, [c.head_to_head.candidate for c in rows])
        ax.set_xlim(0, 100)
        ax.set_ylim(-0.6, len(rows) - 0.4)
        ax.set_xlabel(f"win rate against {s.baseline} (%), {100 * s.confidence:g}% intervals")
        if rows:  # a run with no valid game has nothing to label
            ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize=8,
                      frameon=False)
        return _svg(fig, FIGURE_FOREST)


def paradox_svg(data: ReportData) -> str | None:
    """Win rate (with interval) against perplexity, one labelled point per candidate."""
    px = data.stats.paradox
    if px is None or not px.rows:
        return None
    metric = px.metric
    label = "bits per byte" if metric == "bits_per_byte" else "token perplexity"
    with _figure(6.4, 3.6) as (fig, axes):
        ax = axes[0]
        for r in px.rows:
            x = getattr(r, metric)
            ax.errorbar(x, 100 * r.win_rate,
                        yerr=_err(r.win_rate, r.interval.low, r.interval.high),
                        fmt="o", color=_BLUE, capsize=3)
            ax.annotate(r.candidate, (x, 100 * r.win_rate), xytext=(6, 4),
                        textcoords="offset points", fontsize=8)
        base = next((p.summary for p in data.perplexity if p.summary.model == data.baseline),
                    None)
        if base is not None:
            x = base.bits_per_byte if metric == "bits_per_byte" else base.token_perplexity
            ax.plot([x], [50], marker="D", color=_GREY, linestyle="none")
            ax.annotate(f"{data.baseline} (50% by definition)", (x, 50), xytext=(6, -10),
                        textcoords="offset points", fontsize=8, color=_GREY)
        ax.axhline(50, color=_GREY, linestyle="--", linewidth=1)
        ax.set_ylim(0, 100)
        ax.margins(x=0.25)
        ax.set_xlabel(f"{label} (lower is better)")
        ax.set_ylabel(f"win rate against {data.baseline} (%)")
        return _svg(fig, FIGURE_PARADOX)


def _err(value: float, low: float, high: float) -> list[list[float]]:
    """Error-bar lengths in percent; rounding can put a rate a hair outside its interval
    (a 100% win rate's upper bound computes as 0.99999...), and matplotlib refuses negatives.

    >>> _err(1.0, 0.75, 0.99)
    [[25.0], [0.0]]
    """
    return [[100 * max(value - low, 0.0)], [100 * max(high - value, 0.0)]]


def length_svg(data: ReportData) -> str | None:
    """Win rate when the candidate was longer vs shorter; prompt score vs length difference."""
    s = data.stats
    rows = [c for c in s.candidates if c.bias.n_with_lengths > 0]
    if not rows:
        return None
    with _figure(9.6, 3.4, ncols=2) as (fig, axes):
        left, right = axes
        for i, c in enumerate(rows):
            b = c.bias
            color = _COLORS[i % len(_COLORS)]
            labelled = False
            for j, (value, n) in enumerate(((b.shorter_win_rate, b.n_shorter),
                                             (b.longer_win_rate, b.n_longer))):
                if n == 0 or math.isnan(value):
                    continue
                low, high = wilson(value * n, n, s.confidence)
                left.errorbar(j + (i - (len(rows) - 1) / 2) * 0.12, 100 * value,
                              yerr=_err(value, low, high), fmt="o",
                              color=color, capsize=3,
                              label=None if labelled else b.candidate)
                labelled = True
            games = pair_games(data.judgments, b.candidate, s.baseline)
            scores = prompt_scores(games)
            diff = games.candidate_length - games.opponent_length
            by_prompt: dict[str, list[float]] = {}
            for pid, d in zip(games.prompt_ids, diff, strict=True):
                if not math.isnan(d):
                    by_prompt.setdefault(pid, []).append(float(d))
            xs = [float(np.mean(by_prompt[p])) for p in scores.prompt_ids if p in by_prompt]
            ys = [100 * float(v) for p, v in zip(scores.prompt_ids, scores.score, strict=True)
                  if p in by_prompt]
            jitter = (i - (len(rows) - 1) / 2) * 1.5
            right.scatter(xs, [y + jitter for y in ys], s=14, alpha=0.7, color=color,
                          label=b.candidate)
        for ax in (left, right):
            ax.axhline(50, color=_GREY, linestyle="--", linewidth=1)
            ax.set_ylim(-5, 105)
        left.set_xticks([0, 1], ["candidate shorter", "candidate longer"])
        left.set_xlim(-0.6, 1.6)
        left.set_ylabel("game score (%), Wilson intervals")
        left.legend(fontsize=8, frameon=False)
        right.axvline(0, color=_GREY, linewidth=1)
        right.set_xlabel(f"answer length minus {s.baseline}'s (characters)")
        right.set_ylabel("prompt score (%)")
        return _svg(fig, FIGURE_LENGTH)


def render_plots(data: ReportData) -> dict[str, str]:
    """Every plot the data allow, by figure name (``markdown.FIGURE_*``)."""
    plots = {FIGURE_FOREST: forest_svg(data)}
    for name, draw in ((FIGURE_PARADOX, paradox_svg), (FIGURE_LENGTH, length_svg)):
        svg = draw(data)
        if svg is not None:
            plots[name] = svg
    return plots
