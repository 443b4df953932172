"""Untrusted text (answers, model and folder names, prompt ids) is shown literally: in the
terminal no rich markup or terminal control is interpreted, and in Markdown no link, image,
emphasis, code or HTML comes from it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt
from markdown_it.token import Token

from evalharness.report.cli import write_report
from tests.report.conftest import EXTRA, STRONG, WEAK, build_run

REPO = Path(__file__).resolve().parents[2]

# Model names as adapter folder names can spell them (no "/").
NAMES = {
    STRONG: "[bold]qv[/bold]-r8 [x](javascript:alert(1))",
    WEAK: "![img](http://evil/x.png) [red]all[/red] :smile:",
    EXTRA: "# `mlp` | <b>r4</b> *em* _u_ ~~s~~ &lt; $\\nomacro{x}$",
}
ANSWER = "Sure. [/INST] then [/bold] and [red]x[/red] :thumbs_up: \x1b[2J\x1b]0;pwned\x07 end"
PROMPT_ID = "<i>vet-02</i> [/b] [p](javascript:x)"
RENAMED = {"model": NAMES, "first": NAMES, "second": NAMES, "name": NAMES, "baseline": NAMES,
           "prompt_id": {"vet-02": PROMPT_ID}, "id": {"vet-02": PROMPT_ID}}


def _rename(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (RENAMED[k].get(v, v) if k in RENAMED and isinstance(v, str)
                    else _rename(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_rename(v) for v in value]
    return value


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic run with its adapters and a prompt renamed as above and one answer full
    of markup."""
    built = build_run(tmp_path_factory.mktemp("hostile"), extra_adapter=True)
    run = built.run_dir
    manifest = run / "manifest.json"
    manifest.write_text(json.dumps(_rename(json.loads(manifest.read_text()))))
    for path in (run / "answers.jsonl", run / "judgments.jsonl", run / "perplexity.jsonl",
                 built.prompts_file):
        name = path.name
        rows = [_rename(json.loads(line)) for line in path.read_text().splitlines()]
        for row in rows:
            if name == "answers.jsonl" and row["model"] == NAMES[STRONG] \
                    and row["prompt_id"] == "vet-01":
                row["text"] = ANSWER
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


def evalharness(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """The real command, in its own process, its output piped as a user's would be."""
    env = {**os.environ, "COLUMNS": "400"}
    return subprocess.run([sys.executable, "-m", "evalharness", *map(str, args)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300, check=False)


def flat(text: str) -> str:
    """Table output as one line: borders and wrapping removed."""
    for border in "│┃║|":
        text = text.replace(border, " ")
    return " ".join(text.split())


def test_show_prints_markup_and_bracketed_names_literally(hostile_run: Path) -> None:
    done = evalharness("show", hostile_run)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "MarkupError" not in done.stderr
    out = flat(done.stdout)
    # The answer, character for character, but its escape sequences made visible.
    assert ("Sure. [/INST] then [/bold] and [red]x[/red] :thumbs_up: \\x1b[2J\\x1b]0;pwned"
            "\\x07 end") in out
    assert "\x1b" not in done.stdout  # nothing reaches the terminal as a control sequence
    for name in (NAMES[STRONG], NAMES[WEAK]):
        assert name in out  # in the answers table's header and the head-to-head table
    assert PROMPT_ID in out
    assert "Head to head against baseline" in out


def test_runs_lists_a_bracketed_folder_name_literally(hostile_run: Path,
                                                      tmp_path: Path) -> None:
    root = tmp_path / "runs"
    shutil.copytree(hostile_run, root / "[red]mine [x] [bold]")
    done = evalharness("runs", "--runs-root", root)
    assert done.returncode == 0, done.stderr
    out = flat(done.stdout)
    assert "[red]mine [x] [bold]" in out
    assert NAMES[STRONG] in out and NAMES[WEAK] in out


def _tokens(tokens: list[Token]) -> Iterator[Token]:
    for token in tokens:
        yield token
        yield from _tokens(token.children or [])


def test_markdown_renders_hostile_names_as_plain_text(hostile_run: Path) -> None:
    text = write_report(hostile_run, "md").read_text()
    parser = MarkdownIt("commonmark").enable(["table", "strikethrough"])
    tokens = list(_tokens(parser.parse(text)))
    kinds = {t.type for t in tokens}
    # The report's own Markdown is tables, bold captions and the footer's command names.
    assert not kinds & {"link_open", "image", "html_inline", "html_block", "s_open",
                        "blockquote_open", "bullet_list_open", "ordered_list_open",
                        "code_block", "fence", "em_open"}, kinds
    code = {t.content for t in tokens if t.type == "code_inline"}
    assert code == {"evalharness report", "evalharness stats"}
    headings = [t for t in tokens if t.type == "heading_open"]
    assert all(h.tag in {"h1", "h2"} for h in headings)
    # Each name reaches the reader intact, in a plain text run of a table cell.
    plain = [t.content for t in tokens if t.type == "text"]
    for name in NAMES.values():
        assert any(name in p for p in plain), name
    assert "javascript:alert(1))" in text and "](javascript" not in text.replace("\\]", "")


def test_html_escapes_names_and_prompt_ids(hostile_run: Path) -> None:
    page = write_report(hostile_run, "html").read_text()
    assert "<b>r4</b>" not in page and "&lt;b&gt;r4&lt;/b&gt;" in page
    assert "<i>vet-02</i>" not in page and "javascript:" not in page.replace(
        "(javascript:alert(1))", "").replace("(javascript:x)", "")
    assert "&lt;i&gt;vet-02&lt;/i&gt;" in page or "\\u003ci\\u003evet-02" in page
    # "$...$" in a name is drawn as written: as math, matplotlib would fail the report.
    assert "$\\nomacro{x}$" in page and page.count('<figure class="plot"') == 3
