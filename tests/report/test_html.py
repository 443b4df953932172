"""The HTML report is one self-contained file, carries the plots, and escapes the run's text."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from evalharness.report.cli import write_report
from tests.report.conftest import (
    BASELINE,
    INJECTED_PROMPT,
    INJECTION,
    STRONG,
    SyntheticRun,
    build_run,
)


@pytest.fixture(scope="module")
def page(synthetic: SyntheticRun) -> str:
    return write_report(synthetic.run_dir, "html").read_text()


def embedded_data(page: str) -> dict:  # type: ignore[type-arg]
    match = re.search(r'<script type="application/json" id="report-data">(.*?)</script>',
                      page, re.S)
    assert match is not None
    return json.loads(match.group(1))  # type: ignore[no-any-return]


def test_default_path_is_inside_the_run(synthetic: SyntheticRun) -> None:
    path = write_report(synthetic.run_dir, "html")
    assert path == synthetic.run_dir / "report.html"
    assert path.stat().st_mode & 0o044  # readable by others: a report is for sharing


def test_nothing_is_loaded_from_elsewhere(page: str) -> None:
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I)
    assert not re.search(r"url\(\s*['\"]?\s*(?:https?:)?//", page, re.I)
    assert "@import" not in page and "<link" not in page.lower()
    assert not re.search(r"<script[^>]*\bsrc=", page, re.I)
    assert "default-src 'none'" in page  # and the browser is told to refuse it


def test_the_three_plots_are_inline_svg(page: str) -> None:
    for name in ("forest", "paradox", "length"):
        match = re.search(rf'<figure class="plot" data-plot="{name}"><svg.*?</svg>', page, re.S)
        assert match is not None, f"plot {name} missing"
        assert "<path" in match.group(0)
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids)), "two elements share an id"


def test_untrusted_text_is_escaped_everywhere(page: str) -> None:
    assert "<img src=x" not in page
    assert "<b>markup</b>" not in page
    assert page.count("</script>") == 2  # the data block's and the code's, nothing else
    data = embedded_data(page)
    assert INJECTION in data["answers"][STRONG][INJECTED_PROMPT]["text"]


def test_viewer_data_holds_both_games_of_every_prompt(synthetic: SyntheticRun,
                                                      page: str) -> None:
    data = embedded_data(page)
    assert data["baseline"] == BASELINE
    games = data["games"][STRONG]["vet-04"]
    assert [g["first"] for g in games] == [STRONG, BASELINE]
    assert games[1]["winner"] is None and games[1]["error"]
    assert data["outcomes"][STRONG]["vet-04"] == {"outcome": "win", "score": 1.0,
                                                  "n_invalid": 1}
    assert data["outcomes"][STRONG]["vet-01"]["outcome"] == "loss"
    assert data["outcomes"]["all-r16"]["vet-12"]["outcome"] == "tie"
    assert len(data["prompts"]) == 25
    assert data["prompts"][2]["messages"][0]["content"].startswith("Question 3")


def test_without_prompt_file_the_viewer_shows_ids(tmp_path: Path) -> None:
    run = build_run(tmp_path, with_perplexity=False)
    run.prompts_file.unlink()
    page = write_report(run.run_dir, "html").read_text()
    data = embedded_data(page)
    assert "no longer there" in data["prompts_note"]
    assert [p["id"] for p in data["prompts"]][:2] == ["vet-01", "vet-02"]
    assert data["prompts"][0]["messages"] == []
    assert data["prompts"][0]["category"] == "advice"  # from the judgments
    assert 'data-plot="paradox"' not in page  # no perplexity, no paradox plot
