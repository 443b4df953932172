"""The demo's figures as the README quotes them, rendered from a demo run.

The README's "What the demo shows" numbers sit between two markers and are this module's
output for a fresh demo run; a test runs the demo and compares, so the README cannot drift
from what `make demo` prints. After a change that moves the numbers::

    python -m evalharness.demo.figures runs/<the demo run> README.md
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from evalharness.errors import UserError

if TYPE_CHECKING:
    from evalharness.report.data import ReportData

START = "<!-- demo-figures:start (written by python -m evalharness.demo.figures) -->"
END = "<!-- demo-figures:end -->"


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _points(value: float) -> str:
    return f"{100 * value:+.1f}"


def render(data: ReportData) -> str:
    """The README's bullet list of demo figures for a demo league's run."""
    from evalharness.report.markdown import shown_verdict

    stats = data.stats
    lines = []
    for c in stats.candidates:
        h = c.head_to_head
        lines.append(f"- `{h.candidate}`: win rate {_pct(h.win_rate)} "
                     f"[{100 * h.wilson.low:.1f}, {100 * h.wilson.high:.1f}] against the "
                     f"baseline, {h.wins}/{h.ties}/{h.losses} games, Holm-adjusted p "
                     f"{c.p_holm:.2g}: {shown_verdict(data, c)}.")
    ranks = ", ".join(f"`{s.model}` {s.rank_interval.low:.0f}-{s.rank_interval.high:.0f}"
                      for s in stats.league.standings)
    lines.append(f"- League (Bradley-Terry) rank ranges: {ranks}.")
    if stats.paired:
        top = stats.paired[0]
        cmp = top.comparison
        lines.append(f"- Best two, paired on the same prompts: `{cmp.a}` minus `{cmp.b}` = "
                     f"{_points(cmp.difference)} points [{_points(cmp.interval.low)}, "
                     f"{_points(cmp.interval.high)}], Holm-adjusted p {top.p_holm:.2g}.")
    if stats.paradox is not None:
        px = stats.paradox
        lowest = min(px.rows, key=lambda r: r.bits_per_byte)
        lines.append(f"- Perplexity: lowest bits per byte `{lowest.candidate}` "
                     f"({lowest.bits_per_byte:.3f}); Spearman (perplexity vs win rate) "
                     f"{px.spearman.estimate:+.2f}; {len(px.pairs)} paradox pair(s), "
                     f"{sum(p.significant for p in px.pairs)} a clear reversal.")
    return "\n".join(lines)


def replace_block(text: str, block: str) -> str:
    """``text`` (the README) with the figures between the markers replaced by ``block``.

    Raises:
        UserError: the markers are missing.
    """
    if START not in text or END not in text:
        raise UserError(f"the README has no demo-figures markers ({START} ... {END}). Fix: "
                        "put them back around the demo's figures.")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{block}\n{END}{tail}"


def quoted_block(text: str) -> str:
    """The figures the README quotes now (between the markers)."""
    return text.split(START, 1)[1].split(END, 1)[0].strip("\n")


def main(argv: list[str]) -> None:
    """``python -m evalharness.demo.figures RUN README``: rewrite the README's figures."""
    from evalharness.report.data import load_report_data

    run, readme = Path(argv[0]), Path(argv[1])
    data = load_report_data(run)
    readme.write_text(replace_block(readme.read_text(encoding="utf-8"), render(data)),
                      encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1:])
