"""`compare`, `league` and `demo` end to end through the CLI on the tiny kit (transformers +
peft), judged by the reference judge and by an LLM judge behind a loopback OpenAI server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from evalharness.schema import Judgment
from evalharness.stats import head_to_head, league
from tests.fakes.openai_server import Call, FakeOpenAIServer, Reply, answers_in
from tests.helpers import judge_folder, read_jsonl

KEY_ENV = "EVALHARNESS_IT_JUDGE_KEY"
SECRET = "sk-it-0a1b2c3d4e5f-NEVER-STORED"


def _run_dir(output: str) -> Path:
    flat = output.replace("\n", " ")
    start = flat.index("run directory: ") + len("run directory: ")
    return Path(flat[start:].split()[0])


def _judgments(run_dir: Path) -> list[Judgment]:
    return [Judgment.model_validate(row) for row in read_jsonl(run_dir / "judgments.jsonl")]


def longer_wins(call: Call) -> Reply:
    """A judge that prefers the longer answer (ties on equal length)."""
    a, b = answers_in(call)
    marker = "A" if len(a) > len(b) else "B" if len(b) > len(a) else "C"
    return Reply(f"The longer one says more.\n[[{marker}]]", prompt_tokens=100,
                 completion_tokens=10)


@pytest.fixture
def judge_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAIServer]:
    monkeypatch.setenv(KEY_ENV, SECRET)
    with FakeOpenAIServer(longer_wins) as server:
        yield server


@pytest.fixture
def llm_judge(tmp_path: Path) -> Path:
    """pairwise-binary with the key read from a test variable."""
    return judge_folder(tmp_path / "judges" / "it-binary", KEY_ENV)


def test_compare_with_reference_judge_reports_the_stats_of_its_judgments(cli, kit) -> None:  # type: ignore[no-untyped-def]
    result = cli("compare", kit.adapter("all-r16"), "--prompts", kit.prompts, "--ppl-data",
                 kit.eval_data, "--max-new-tokens", "40")
    assert result.code == 0, result.text
    run_dir = _run_dir(result.out)
    for name in ("manifest.json", "answers.jsonl", "judgments.jsonl", "perplexity.jsonl",
                 "report.md", "report.html"):
        assert (run_dir / name).is_file(), name
    judgments = _judgments(run_dir)
    assert len(judgments) == 64  # 32 prompts x 2 orders
    assert {(j.first, j.second) for j in judgments} == {("all-r16", "baseline"),
                                                       ("baseline", "all-r16")}
    expected = head_to_head(judgments, "all-r16", "baseline")
    flat = " ".join(result.out.split())
    win_rate = f"{100 * expected.win_rate:.1f}% [{100 * expected.wilson.low:.1f}, " \
               f"{100 * expected.wilson.high:.1f}]"
    assert win_rate.replace(" ", "") in flat.replace(" ", "").replace("│", "")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["judge"] == "reference"
    assert manifest["serving_check"].startswith("adapter effect")

    again = cli("compare", kit.adapter("all-r16"), "--prompts", kit.prompts, "--ppl-data",
                kit.eval_data, "--max-new-tokens", "40")
    assert again.code == 0, again.text
    flat = " ".join(again.out.split())
    assert "answers: 64 needed, 64 already in the run" in flat
    assert "judgments: 64 needed, 64 already in the run, 0 reused from other runs, 0 computed" \
        in flat
    assert "serving self-check" in flat  # recorded, though no model was loaded this time
    assert len(_judgments(run_dir)) == 64

    shown = cli("show", run_dir)
    assert shown.code == 0, shown.text
    assert "Head to head against baseline" in shown.out
    assert f"{expected.wins}/{expected.ties}/{expected.losses}" in shown.out


def test_compare_with_an_llm_judge_on_a_loopback_server(cli, kit, judge_server,  # type: ignore[no-untyped-def]
                                                        llm_judge: Path) -> None:
    args = ("compare", kit.adapter("qv-r8"), "--prompts", kit.prompts, "--judge", llm_judge,
            "--judge-url", judge_server.base_url, "--judge-model", "fake-judge",
            "--max-new-tokens", "40")
    result = cli(*args)
    assert result.code == 0, result.text
    run_dir = _run_dir(result.out)
    judgments = _judgments(run_dir)
    assert judge_server.n_calls == len(judgments) == 64
    assert all(j.winner is not None for j in judgments)
    answers = {(r["model"], r["prompt_id"]): r["text"]
               for r in read_jsonl(run_dir / "answers.jsonl")}
    for j in judgments:  # the verdicts map back to the models that were longer
        a, b = answers[(j.first, j.prompt_id)], answers[(j.second, j.prompt_id)]
        assert j.winner == ("A" if len(a) > len(b) else "B" if len(b) > len(a) else "tie")
    expected = head_to_head(judgments, "qv-r8", "baseline")
    assert f"{expected.wins}/{expected.ties}/{expected.losses}" in result.out
    assert "64 judge calls now, 7040 tokens" in " ".join(result.out.split())  # 64 x 110
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(errors="replace"), path

    again = cli(*args)
    assert again.code == 0 and judge_server.n_calls == 64  # nothing asked twice


def test_league_round_robin_ranks_with_bradley_terry(cli, kit) -> None:  # type: ignore[no-untyped-def]
    result = cli("league", kit.adapter("qv-r8"), kit.adapter("all-r16"),
                 kit.adapter("under-qv-r4"), "--round-robin", "--prompts", kit.prompts,
                 "--ppl-data", kit.eval_data, "--max-new-tokens", "40")
    assert result.code == 0, result.text
    run_dir = _run_dir(result.out)
    judgments = _judgments(run_dir)
    pairs = {frozenset((j.first, j.second)) for j in judgments}
    assert len(pairs) == 6  # 3 vs baseline + 3 adapter pairs
    assert len(judgments) == 6 * 32 * 2
    standings = league(judgments, "baseline").standings
    flat = " ".join(result.out.split())
    assert "League (Bradley-Terry)" in flat
    assert "Paradox pairs" in flat or "No paradox pairs" in flat
    best = standings[0]
    assert f"{best.strength:+.2f}" in flat
    assert "Adapter against adapter" in flat


@pytest.mark.parametrize(("args", "expected"), [
    (("compare", "ADAPTER", "--judge", "no-such-judge"), "unknown judge 'no-such-judge'"),
    (("compare", "ADAPTER", "--prompts", "missing.jsonl"), "prompt set not found"),
    (("compare", "ADAPTER", "ADAPTER"), "is the baseline itself"),
    (("league",), "Missing argument"),
    (("compare", "baseline"), "is the baseline itself"),
])
def test_bad_input_at_the_product_level(cli, kit, args: tuple[str, ...], expected: str) -> None:  # type: ignore[no-untyped-def]
    filled = [str(kit.adapter("qv-r8")) if a == "ADAPTER" else a for a in args]
    if "--prompts" not in filled:
        filled += ["--prompts", str(kit.prompts)]
    result = cli(*filled)
    assert result.code == 2, result.text
    assert expected in " ".join(result.text.split())
    assert "Traceback" not in result.text


def test_missing_judge_key_fails_before_any_model_loads(cli, kit, llm_judge: Path,  # type: ignore[no-untyped-def]
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    result = cli("compare", kit.adapter("qv-r8"), "--prompts", kit.prompts, "--judge", llm_judge)
    assert result.code == 2, result.text
    assert f"environment variable {KEY_ENV}, which is not set" in " ".join(result.text.split())
    assert not Path("runs").exists()


def test_demo_prints_the_leaderboard_and_the_report_path(cli, kit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("demo", "--kit", kit.root, "--runs-root", tmp_path / "demo-runs")
    assert result.code == 0, result.text
    flat = " ".join(result.out.split())
    for adapter in ("qv-r8", "all-r16", "under-qv-r4", "over-all-r32"):
        assert adapter in flat
    assert "League (Bradley-Terry)" in flat and "Perplexity and win rate" in flat
    report = Path(flat.split("open the report: ")[1].split()[0])
    assert report.is_file() and report.read_text().startswith("<!DOCTYPE html>")
    # The audit ran and found nothing on these honest adapters; the no-op adapter's ties are
    # explained by its answers, not blamed on the judge.
    assert "No findings. Checked: answers" in flat
    summary = (report.parent / "report.md").read_text()
    assert "answers identical to baseline's on 32 of 32 prompts: nothing to judge" in summary
    assert json.loads((report.parent / "audit.json").read_text())["findings"] == []

    # The figures the README quotes are this fresh demo run's (regenerate them with the
    # command in evalharness/demo/figures.py when a change moves them).
    from evalharness.demo.figures import quoted_block, render
    from evalharness.report.data import load_report_data

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert quoted_block(readme) == render(load_report_data(report.parent))


def test_python_api_as_an_optimisation_objective(kit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import evalharness

    def objective(adapter: str) -> float:
        result = evalharness.compare(adapter, prompts=kit.prompts, judge="reference",
                                     gen=evalharness.GenConfig(max_new_tokens=32),
                                     runs_root=tmp_path / "runs", report_formats=())
        return result.win_rate

    scores = {name: objective(str(kit.adapter(name))) for name in ("all-r16", "under-qv-r4")}
    assert scores["all-r16"] > 0.8 > scores["under-qv-r4"]
    result = evalharness.compare(str(kit.adapter("all-r16")), prompts=kit.prompts,
                                 gen=evalharness.GenConfig(max_new_tokens=32),
                                 runs_root=tmp_path / "runs", report_formats=())
    assert result.p_value < 0.05 and result.answers.computed == 0


def test_reference_judge_without_references_fails_before_any_answer(cli, kit,  # type: ignore[no-untyped-def]
                                                                   tmp_path: Path) -> None:
    bare = tmp_path / "bare.jsonl"
    bare.write_text(json.dumps({"id": "q1", "prompt": "Where is Redmoor?"}) + "\n")
    result = cli("compare", kit.adapter("qv-r8"), "--prompts", bare)
    assert result.code == 2, result.text
    assert "has none. Fix: add references" in " ".join(result.text.split())
    assert not (tmp_path / "runs").exists()


def test_compare_with_a_jury_of_two_offline_judges(cli, kit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`compare --judge reference --judge reference-rouge`: both jurors' verdicts are kept
    under their names, the headline is the jury's, the report shows how they agree."""
    result = cli("compare", kit.adapter("qv-r8"), "--prompts", kit.prompts, "--judge",
                 "reference", "--judge", "reference-rouge", "--backend", "fake",
                 "--no-verify", "--max-new-tokens", "8", "--runs-root", tmp_path / "runs")
    assert result.code == 0, result.text
    (run,) = [p for p in (tmp_path / "runs").iterdir() if (p / "manifest.json").is_file()]
    manifest = json.loads((run / "manifest.json").read_text())
    assert set(manifest["jury"]) == {"reference", "reference-rouge"}
    judges = {r["judge"] for r in map(json.loads, (run / "judgments.jsonl").read_text()
                                      .splitlines())}
    assert judges == {"reference", "reference-rouge"}
    report = (run / "report.md").read_text()
    assert "Headline verdicts: jury of reference, reference-rouge" in report
    assert "## Judges and agreement" in report
    flat = " ".join(result.out.split())
    assert "judgments by jury" in flat
