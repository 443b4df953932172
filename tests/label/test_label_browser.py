"""The labelling page in a real browser (headless Chromium driven by selenium).

What a person would notice: keys label the game on screen, each label lands on disk as a
``human:<name>`` judgment with the sides as shown, a reload continues at the next game, a
second person starts from the beginning, skip stores nothing, hostile HTML in prompts and
answers stays text, another web page cannot write labels, and 50 games by keyboard are quick.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any, NamedTuple

import pytest

from evalharness.label.server import LabelServer, serve
from tests.label.conftest import HOSTILE, MARKDOWN_PROMPT, N_GAMES, LabelRun, build_label_run
from tests.report.conftest import BASELINE, INJECTED_PROMPT, STRONG, chromium, start_browser

webdriver = pytest.importorskip(
    "selenium.webdriver", reason="browser test skipped: selenium is not installed "
    "(pip install -e '.[dev]')")

__all__ = ["chromium"]  # the report tests' fixture: Chromium and its driver, installed once
TITLE = "evalharness label"
WINNER = {"a": "A", "b": "B", "t": "tie"}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> LabelRun:
    return build_label_run(tmp_path_factory.mktemp("label-run"))


@pytest.fixture(scope="module")
def server(run: LabelRun) -> Iterator[LabelServer]:
    with serve(run.run_dir, ["alice", "bob", "dana", "erin"]) as running:
        yield running


@pytest.fixture(scope="module")
def browser(chromium: tuple[Path, Path]) -> Iterator[Any]:
    driver = start_browser(chromium)
    driver.set_script_timeout(10)
    try:
        yield driver
    finally:
        driver.quit()


class Shown(NamedTuple):
    game_id: str
    prompt_id: str
    left: str
    right: str
    progress: str


def js(browser: Any, script: str) -> Any:
    return browser.execute_script(script)


def wait_until(browser: Any, script: str, timeout: float = 10) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, timeout, poll_frequency=0.005).until(
        lambda driver: driver.execute_script(script))


def open_page(browser: Any, url: str) -> None:
    browser.get("about:blank")
    browser.get_log("browser")  # drop what earlier pages logged
    browser.get(url)
    wait_until(browser, "return ['ready', 'done'].includes(document.body.dataset.state)")


def console_errors(browser: Any) -> list[dict[str, Any]]:
    return [e for e in browser.get_log("browser") if e.get("level") in {"SEVERE", "ERROR"}]


def shown(browser: Any) -> Shown:
    return Shown(*js(browser, """
        const text = (sel) => document.querySelector(sel).textContent;
        return [document.body.dataset.gameId, text('#prompt-id').split(' ')[0],
                text('#left .answer-text'), text('#right .answer-text'),
                text('#progress-text')];"""))


def press(browser: Any, key: str) -> None:
    """Press ``key`` and wait until the page shows the next game (or is done)."""
    from selenium.webdriver.common.action_chains import ActionChains

    before = js(browser, "return document.body.dataset.gameId")
    ActionChains(browser).send_keys(key).perform()
    wait_until(browser, f"return document.body.dataset.state === 'done' || "
                        f"(document.body.dataset.state === 'ready' && "
                        f"document.body.dataset.gameId !== {before!r})")


def assert_inert(browser: Any) -> None:
    """Nothing from a prompt or an answer became an element or ran."""
    assert browser.title == TITLE
    assert js(browser, "return document.querySelectorAll('img, iframe, object, embed, "
                       "[onerror], main b').length") == 0
    assert js(browser, "return document.scripts.length") == 1  # the page's own


def test_ten_keyboard_labels_land_on_disk_and_a_reload_resumes(
    browser: Any, server: LabelServer, run: LabelRun
) -> None:
    from selenium.webdriver.common.keys import Keys

    open_page(browser, server.url_for("alice"))
    assert shown(browser).progress == f"0 of {N_GAMES} labelled"
    keys = ["a", Keys.ARROW_LEFT, "b", Keys.ARROW_RIGHT, "t", "A", "B", "T", "a", "b"]
    seen: list[tuple[Shown, str]] = []
    for key in keys:
        seen.append((shown(browser), key))
        assert_inert(browser)
        press(browser, key)
    assert not console_errors(browser)
    labels = run.labels("alice")
    assert len(labels) == 10
    for label, (page, key) in zip(labels, seen, strict=True):
        assert label.judge == "human:alice" and label.prompt_id == page.prompt_id
        assert label.first == run.model_shown(page.prompt_id, page.left)  # left = A = first
        assert label.second == run.model_shown(page.prompt_id, page.right)
        expected = {Keys.ARROW_LEFT: "A", Keys.ARROW_RIGHT: "B"}.get(key) or \
            WINNER[key.lower()]
        assert label.winner == label.verdict == expected
    browser.refresh()
    wait_until(browser, "return document.body.dataset.state === 'ready'")
    after = shown(browser)
    assert after.progress == f"10 of {N_GAMES} labelled"
    assert js(browser, "return document.getElementById('bar').value") == 10
    assert after.game_id == "10" and after.game_id not in {s.game_id for s, _ in seen}
    # The same game shows the same sides after a reload.
    browser.refresh()
    wait_until(browser, "return document.body.dataset.state === 'ready'")
    assert shown(browser) == after


def test_a_second_annotator_sees_every_game_and_skip_stores_nothing(
    browser: Any, server: LabelServer, run: LabelRun
) -> None:
    open_page(browser, server.url_for("bob"))
    first = shown(browser)
    assert (first.game_id, first.progress) == ("0", f"0 of {N_GAMES} labelled")
    press(browser, "s")
    assert shown(browser).game_id == "1"
    assert shown(browser).progress == f"0 of {N_GAMES} labelled \u00b7 1 skipped"
    assert "comes back at the end" in js(browser, "return document.getElementById("
                                                  "'message').textContent")
    assert run.labels("bob") == []


def test_hostile_html_stays_text_and_fifty_games_by_keyboard_are_timed(
    browser: Any, server: LabelServer, run: LabelRun, capsys: pytest.CaptureFixture[str]
) -> None:
    open_page(browser, server.url_for("dana"))
    hostile_seen = markdown_seen = False
    keys = "abt"
    started = time.perf_counter()
    for n in range(N_GAMES):
        page = shown(browser)
        hostile_seen |= HOSTILE in page.left + page.right
        if page.prompt_id == MARKDOWN_PROMPT and not markdown_seen:
            markdown_seen = True
            side = "left" if "Steps:" in page.left else "right"
            assert js(browser, f"return Array.from(document.querySelectorAll("
                               f"'#{side} li, #{side} pre code, #{side} strong')).map("
                               f"e => e.tagName + ':' + e.textContent)") == [
                "LI:one", "LI:two", "STRONG:two", "CODE:print('<b>x</b>')"]
        press(browser, keys[n % 3])
    seconds = time.perf_counter() - started
    with capsys.disabled():
        print(f"\nlabelled {N_GAMES} games by keyboard in {seconds:.2f} s "
              f"({1000 * seconds / N_GAMES:.0f} ms per game, browser round trip included)")
    assert hostile_seen and markdown_seen
    assert js(browser, "return document.body.dataset.state") == "done"
    assert shown(browser).progress == f"{N_GAMES} of {N_GAMES} labelled"
    assert_inert(browser)
    assert not console_errors(browser)
    assert len(run.labels("dana")) == N_GAMES
    assert seconds < 60  # a person's pace is seconds per game; the page must never be it


def test_the_hostile_game_shows_its_markup_as_text(
    browser: Any, server: LabelServer, run: LabelRun
) -> None:
    open_page(browser, server.url_for("erin"))
    for _ in range(N_GAMES):
        page = shown(browser)
        if page.prompt_id == INJECTED_PROMPT and STRONG in {
                run.model_shown(page.prompt_id, page.left),
                run.model_shown(page.prompt_id, page.right)}:
            break
        press(browser, "s")
    else:
        pytest.fail("the hostile answer was never shown")
    assert HOSTILE in page.left + page.right
    assert HOSTILE in js(browser, "return document.getElementById('prompt-text').textContent")
    assert_inert(browser)
    assert not console_errors(browser)
    assert BASELINE not in js(browser, "return document.body.innerText")  # blind


class _Evil(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<!doctype html><title>evil</title><p>another site"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_another_page_in_the_browser_cannot_write_labels(
    browser: Any, server: LabelServer, run: LabelRun
) -> None:
    evil = ThreadingHTTPServer(("127.0.0.1", 0), _Evil)
    Thread(target=evil.serve_forever, daemon=True).start()
    try:
        browser.get(f"http://127.0.0.1:{evil.server_address[1]}/")
        before = len(run.labels("bob"))
        outcomes = browser.execute_async_script("""
            const done = arguments[arguments.length - 1];
            const url = arguments[0] + 'api/label';
            const body = JSON.stringify({annotator: 'bob', game: '5', choice: 'left'});
            const tries = [
              fetch(url, {method: 'POST', mode: 'no-cors', body: body,
                          headers: {'Content-Type': 'text/plain'}}),
              fetch(url, {method: 'POST', body: body,
                          headers: {'Content-Type': 'application/json',
                                    'X-Label-Token': 'guess'}}),
              fetch(arguments[0] + 'api/state?annotator=bob'),
            ];
            Promise.allSettled(tries).then(rs => done(rs.map(r => r.status)));
        """, server.url)
        # The "simple" POST needs no preflight, so it is sent: the server refuses it (Origin,
        # token, content type) and the browser withholds the reply (Cross-Origin-Resource-
        # Policy). The JSON one dies at the CORS preflight; the state cannot be read.
        assert outcomes == ["rejected", "rejected", "rejected"]
        assert len(run.labels("bob")) == before
    finally:
        evil.shutdown()
        evil.server_close()
