"""A run whose judge never gave a readable verdict: reported as such, not as a baseline typo.

The judge is the real fake server answering prose without the verdict marker; the run is
judged by the real stage, reported by the real report code and analysed by the real CLI.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evalharness.judging.stage import judge_run
from evalharness.report.cli import write_report
from evalharness.report.data import load_report_data
from evalharness.store import JUDGMENTS, RunDir
from tests.fakes.openai_server import FakeOpenAIServer, Reply
from tests.integration.test_cli_stats import run as _cli
from tests.judging.conftest import JudgeFactory, MakeRun

GARBAGE = 'I like both answers. [b]Verdict[/b]: "A", maybe\n<script>x</script>'


@pytest.fixture
def invalid_run(server: FakeOpenAIServer, judge_for: JudgeFactory, make_run: MakeRun) -> RunDir:
    server.responder = lambda call: Reply(GARBAGE)
    run = make_run({"lora": {f"p{i}": f"lora answer {i}" for i in range(5)},
                    "baseline": {f"p{i}": f"base answer {i}" for i in range(5)}})
    counts = judge_run(run, judge_for(invalid_retries=0), "baseline")
    assert counts.invalid == counts.total == 10
    assert counts.problem is not None and counts.problem.startswith(
        "all 10 judgments were invalid: the judge's replies could not be read as verdicts")
    return run


def test_stats_on_an_all_invalid_run_shows_the_table_and_blames_the_replies(
        invalid_run: RunDir, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(["stats", str(invalid_run.path / JUDGMENTS), "--bootstrap", "200"],
                          capsys)
    assert code == 2
    assert "baseline baseline; 10 invalid" in " ".join(out.split())  # no --baseline needed
    message = " ".join(err.split())
    assert "all 10 judgments were invalid: the judge's replies could not be read" in message
    assert 'e.g. "I like both answers. [b]Verdict[/b]: \\"A\\", maybe\\n<script>' in message
    assert "Fix: check the judge model and its template (pairwise-binary)" in message
    assert "played no valid game" not in message and "Traceback" not in err

    code, out, _ = _cli(["stats", str(invalid_run.path / JUDGMENTS), "--bootstrap", "200",
                         "--format", "json"], capsys)
    assert code == 2
    data = json.loads(out)
    assert data["n_invalid"] == 10 and data["league"]["standings"] == []
    assert data["candidates"][0]["head_to_head"]["n_games"] == 0
    assert data["problem"].startswith("all 10 judgments were invalid")


def test_an_all_invalid_run_still_gets_its_reports(invalid_run: RunDir) -> None:
    data = load_report_data(invalid_run.path, n_boot=200)
    assert data.stats.problem is not None and data.stats.n_invalid == 10
    assert [o.outcome for o in data.outcomes["lora"].values()] == ["invalid"] * 5
    for fmt in ("md", "html"):
        path = write_report(invalid_run.path, fmt, n_boot=200)
        text = path.read_text(encoding="utf-8")
        assert "10 judgment(s) had no readable verdict" in text or "10 invalid" in text, fmt
        assert "<script>x</script>" not in text.replace("<\\/script>", ""), fmt


def test_stats_on_a_compare_run_needs_no_baseline(
        server: FakeOpenAIServer, judge_for: JudgeFactory, make_run: MakeRun,
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # One candidate against the baseline: both models are in every game, so only the
    # run's manifest can say which one is the baseline.
    run = make_run({"lora": {f"p{i}": f"lora answer {i} q=2" for i in range(4)},
                    "baseline": {f"p{i}": f"base answer {i} q=1" for i in range(4)}})
    judge_run(run, judge_for(), "baseline")
    code, out, err = _cli(["stats", str(run.path / JUDGMENTS), "--bootstrap", "200"], capsys)
    assert code == 0, err
    assert "Head to head against baseline" in out

    # The same file copied out of its run cannot tell, and says how to fix it.
    alone = tmp_path / "elsewhere" / JUDGMENTS
    alone.parent.mkdir()
    alone.write_bytes((run.path / JUDGMENTS).read_bytes())
    code, _, err = _cli(["stats", str(alone), "--bootstrap", "200"], capsys)
    assert code == 2 and "--baseline" in err
