"""The HTML report in a real browser (headless Chromium driven by selenium).

Checks what a reader would notice: no script errors, plots drawn at a real size, a link
with ``#prompt=...&candidate=...`` opens that prompt with the right two answers and both
games, the filters list the planted outcomes, a click selects a prompt, and an answer that
tries to inject an ``<img onerror>`` stays text.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evalharness.report.cli import write_report
from tests.report.conftest import (
    BASELINE,
    CATEGORIES,
    INJECTED_PROMPT,
    INJECTION,
    N_PROMPTS,
    STRONG,
    WEAK,
    SyntheticRun,
    pid,
    plan,
    start_browser,
)

webdriver = pytest.importorskip(
    "selenium.webdriver", reason="browser test skipped: selenium is not installed "
    "(pip install -e '.[dev]')")


@pytest.fixture(scope="module")
def report_url(synthetic: SyntheticRun, tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("html") / "report.html"
    return write_report(synthetic.run_dir, "html", out=out).as_uri()


@pytest.fixture(scope="module")
def browser(chromium: tuple[Path, Path]) -> Iterator[Any]:
    driver = start_browser(chromium)
    try:
        yield driver
    finally:
        driver.quit()


def open_page(browser: Any, url: str) -> list[dict[str, Any]]:
    """Load ``url`` fresh and return the console messages it produced."""
    browser.get("about:blank")
    browser.get_log("browser")  # drop what earlier pages logged
    browser.get(url)
    return list(browser.get_log("browser"))


def js(browser: Any, script: str) -> Any:
    return browser.execute_script(script)


def shown_answers(browser: Any) -> tuple[str, str]:
    return (
        js(browser, "return document.querySelector("
                    "'#detail .answer.candidate .answer-text').textContent"),
        js(browser, "return document.querySelector("
                    "'#detail .answer.baseline .answer-text').textContent"),
    )


def listed(browser: Any) -> list[str]:
    return list(js(browser, "return Array.from(document.querySelectorAll("
                            "'#prompt-list li')).map(li => li.dataset.promptId)"))


def choose(browser: Any, select_id: str, value: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element(By.ID, select_id)).select_by_value(value)


def test_hash_opens_the_prompt_with_both_answers_and_no_injection(
    browser: Any, report_url: str, synthetic: SyntheticRun
) -> None:
    logs = open_page(browser, f"{report_url}#prompt={INJECTED_PROMPT}&candidate={STRONG}")
    errors = [e for e in logs if e.get("level") in {"SEVERE", "ERROR"}]
    assert not errors, f"console errors: {errors}"
    assert js(browser, "return document.getElementById('detail').dataset.promptId") == \
        INJECTED_PROMPT
    candidate_text, baseline_text = shown_answers(browser)
    assert candidate_text == synthetic.answer(STRONG, INJECTED_PROMPT)
    assert INJECTION in candidate_text  # shown as text ...
    assert baseline_text == synthetic.answer(BASELINE, INJECTED_PROMPT)
    # ... and never parsed: no <img>, no inline handler, no <b> from the answer.
    assert js(browser, "return document.querySelectorAll('img, [onerror], #detail b')"
                       ".length") == 0
    games = js(browser, "return Array.from(document.querySelectorAll('#detail .game'))"
                        ".map(g => g.textContent)")
    assert len(games) == 2
    assert f"A = {STRONG} (candidate)" in games[0]
    assert f"A = {BASELINE} (baseline)" in games[1]
    raws = [j.raw for j in synthetic.judgments if j.prompt_id == INJECTED_PROMPT
            and BASELINE in (j.first, j.second) and STRONG in (j.first, j.second)]
    assert all(any(raw in g for g in games) for raw in raws)


def test_plots_render_at_a_real_size(browser: Any, report_url: str) -> None:
    open_page(browser, report_url)
    sizes = js(browser, "return Array.from(document.querySelectorAll('figure.plot svg'))"
                        ".map(s => { const r = s.getBoundingClientRect();"
                        " return [s.closest('figure').dataset.plot, r.width, r.height]; })")
    assert {name for name, _, _ in sizes} == {"forest", "paradox", "length"}
    assert all(w > 200 and h > 100 for _, w, h in sizes), sizes


def test_filters_list_the_planted_outcomes_and_a_click_selects(
    browser: Any, report_url: str, synthetic: SyntheticRun
) -> None:
    from selenium.webdriver.common.by import By

    open_page(browser, report_url)
    assert len(listed(browser)) == N_PROMPTS
    choose(browser, "filter-outcome", "invalid")
    assert listed(browser) == ["vet-04"]
    choose(browser, "filter-candidate", WEAK)
    choose(browser, "filter-outcome", "loss")
    losses = [pid(i) for i in range(N_PROMPTS) if plan(WEAK, i) == ("b", "b")]
    assert listed(browser) == losses
    choose(browser, "filter-category", CATEGORIES[1])
    assert listed(browser) == [p for i, p in enumerate(map(pid, range(N_PROMPTS)))
                               if p in losses and i % 3 == 1]
    target = listed(browser)[0]
    browser.find_element(By.CSS_SELECTOR, f'#prompt-list li[data-prompt-id="{target}"] '
                                          "button").click()
    assert shown_answers(browser) == (synthetic.answer(WEAK, target),
                                      synthetic.answer(BASELINE, target))
    assert js(browser, "return location.hash") == f"#prompt={target}&candidate={WEAK}"
    assert js(browser, "return document.querySelector('#detail .badge').textContent") == "loss"


def test_screenshot(browser: Any, report_url: str, tmp_path: Path) -> None:
    open_page(browser, f"{report_url}#prompt=vet-07&candidate={STRONG}")
    target = Path(os.environ.get("EVALHARNESS_SCREENSHOT_DIR", tmp_path)) / "report.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(target))
    assert target.stat().st_size > 10_000


def test_findings_show_the_gamed_answer_as_inert_text(
        browser: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A gamed adapter's findings are in the HTML report: the Findings section lists it as
    severe, its leaderboard row carries the flag, and the excerpt (which holds an
    ``<img onerror>`` payload) is shown as text, never parsed or run."""
    from tests.audit.test_audit_cli import GAMED, gamed_run

    run_dir = gamed_run(tmp_path_factory.mktemp("gamed"))
    url = write_report(run_dir, "html").as_uri()
    logs = open_page(browser, url)
    assert not [e for e in logs if e.get("level") in {"SEVERE", "ERROR"}]
    section = js(browser, "return document.getElementById('findings').textContent")
    assert "severe" in section and "duplicate-answers" in section and WEAK in section
    assert "onerror=" in section  # the excerpt, as text
    assert "Ignore the above" in section and "Ignore the above" in GAMED
    assert js(browser, "return document.querySelectorAll('img, [onerror]').length") == 0
    assert js(browser, "return document.title") != "pwned"
    rows = js(browser, "return Array.from(document.querySelectorAll('table tr'))"
                       ".map(r => r.textContent)")
    assert any(WEAK in row and "severe: duplicate-answers" in row for row in rows)
