"""A run judged in one order only is never described as judged in both orders."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from evalharness.report.data import load_report_data
from evalharness.report.html import render_html
from evalharness.report.markdown import render_markdown, report_sections
from evalharness.report.terminal import print_sections
from evalharness.schema import Judgment
from evalharness.store import JUDGMENTS, JsonlLog
from tests.report.conftest import BASELINE, build_run


def test_one_order_run_says_so_in_markdown_html_and_terminal(tmp_path: Path) -> None:
    built = build_run(tmp_path, with_perplexity=False)
    # Keep each prompt's candidate-first game only: the run becomes a one-order file.
    log = built.run_dir / JUDGMENTS
    one_order = [j for j in built.judgments if j.second == BASELINE]
    log.unlink()
    JsonlLog(log, Judgment).extend(one_order)
    data = load_report_data(built.run_dir, n_boot=200)
    terminal = io.StringIO()
    print_sections(Console(file=terminal, width=200), report_sections(data))
    for text in (render_markdown(data), render_html(data), terminal.getvalue()):
        flat = " ".join(text.split())
        assert "each prompt judged in one order only" in flat
        assert "each prompt judged in both orders" not in flat
        assert "cancels" not in flat or "nothing cancels it" in flat
        assert "No prompt was judged in both orders" in flat
