"""Several raters in one run: the headline reads one source, the rest is agreement.

The report tests' synthetic run (judge ``pairwise-binary``) gets a second judge that agrees
with the first on known prompts, and an annotator's labels; the manifest names the jury.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sklearn.metrics import cohen_kappa_score

from evalharness.schema import Judgment
from evalharness.store import JUDGMENTS, JsonlLog, RunDir
from tests.integration.test_cli_stats import run
from tests.report.conftest import BASELINE, STRONG, WEAK, build_run

JUDGE = "pairwise-binary"
OTHER = "pairwise-5level"
HUMAN = "human:ana"


def _flip(j: Judgment) -> Judgment:
    swapped = {"A": "B", "B": "A"}.get(j.winner or "", j.winner)
    return j.model_copy(update={"winner": swapped, "verdict": swapped})


def rated_run(root: Path) -> tuple[Path, list[Judgment], list[Judgment], list[Judgment]]:
    """The synthetic run plus: OTHER agrees with JUDGE except on even prompts of ``STRONG``
    (where it flips every verdict), and HUMAN labels one order of every prompt (the order
    JUDGE saw first), agreeing with JUDGE except on prompts 1-5."""
    built = build_run(root)
    judge = [j for j in built.judgments if BASELINE in (j.first, j.second)]
    other, human = [], []
    for j in judge:
        number = int(j.prompt_id.split("-")[1])
        flip = STRONG in (j.first, j.second) and number % 2 == 0
        copy = _flip(j) if flip else j
        other.append(copy.model_copy(update={"judge": OTHER, "key": "o" + j.key}))
        if j.first != BASELINE and j.winner is not None:
            label = _flip(j) if number <= 5 else j
            human.append(label.model_copy(update={"judge": HUMAN, "key": "h" + j.key,
                                                  "raw": ""}))
    JsonlLog(built.run_dir / JUDGMENTS, Judgment).extend(other + human)
    runs = RunDir(built.run_dir)  # as `compare --judge pairwise-binary` records it
    runs.write_manifest(runs.read_manifest().model_copy(update={"judge": JUDGE}))
    return built.run_dir, judge, other, human


@pytest.fixture
def rated(tmp_path: Path) -> tuple[Path, list[Judgment], list[Judgment], list[Judgment]]:
    return rated_run(tmp_path)


def test_human_labels_never_enter_the_headline(
        rated: tuple[Path, list[Judgment], list[Judgment], list[Judgment]],
        capsys: pytest.CaptureFixture[str]) -> None:
    """Before the labels the run's win rates are the judge's; after, still exactly those:
    the second judge and the annotator are compared, not pooled."""
    run_dir, judge, _, _ = rated
    code, out, _ = run(["stats", str(run_dir / JUDGMENTS), "--format", "json"], capsys)
    assert code == 0
    stats = json.loads(out)
    assert stats["judges"] == [JUDGE]
    assert stats["n_judgments"] == len({j.key for j in judge} |
                                       {j.key for j in build_round_robin(run_dir)})


def build_round_robin(run_dir: Path) -> list[Judgment]:
    """The synthetic run's adapter-vs-adapter games (judged by JUDGE too)."""
    return [j for j in JsonlLog(run_dir / JUDGMENTS, Judgment).read()
            if j.judge == JUDGE and BASELINE not in (j.first, j.second)]


def test_a_jury_in_the_manifest_makes_the_headline(
        rated: tuple[Path, list[Judgment], list[Judgment], list[Judgment]],
        capsys: pytest.CaptureFixture[str]) -> None:
    """Two jurors that disagree on STRONG's even prompts: a majority of two is a tie there,
    so the jury's STRONG record has those games as ties; WEAK's is unchanged."""
    run_dir, judge, _, _ = rated
    runs = RunDir(run_dir)
    manifest = runs.read_manifest()
    runs.write_manifest(manifest.model_copy(update={"jury": {JUDGE: "f1", OTHER: "f2"}}))
    code, out, _ = run(["stats", str(run_dir / JUDGMENTS), "--format", "json"], capsys)
    assert code == 0, out
    stats = json.loads(out)
    assert stats["judges"] == ["jury"]
    by_name = {c["head_to_head"]["candidate"]: c["head_to_head"] for c in stats["candidates"]}
    strong = [j for j in judge if STRONG in (j.first, j.second) and j.winner is not None]
    even = [j for j in strong if int(j.prompt_id.split("-")[1]) % 2 == 0]
    decided_even = [j for j in even if j.winner != "tie"]
    assert by_name[STRONG]["ties"] >= len(decided_even)
    weak = {c: h for c, h in by_name.items() if c == WEAK}
    code, out, _ = run(["stats", str(run_dir / JUDGMENTS), "--judge", JUDGE, "--format",
                        "json"], capsys)
    alone = {c["head_to_head"]["candidate"]: c["head_to_head"]
             for c in json.loads(out)["candidates"]}
    assert alone[WEAK]["win_rate"] == weak[WEAK]["win_rate"]
    assert alone[STRONG]["win_rate"] != by_name[STRONG]["win_rate"]


def test_agree_matches_an_independent_kappa(
        rated: tuple[Path, list[Judgment], list[Judgment], list[Judgment]],
        capsys: pytest.CaptureFixture[str]) -> None:
    """Judge vs annotator per game (the annotator saw the order the judge saw first): kappa
    equals scikit-learn's on the same labels."""
    run_dir, judge, _, human = rated
    code, out, _ = run(["agree", str(run_dir), "--rater", JUDGE, "--rater", HUMAN,
                        "--format", "json", "--bootstrap", "200"], capsys)
    assert code == 0, out
    (pair,) = json.loads(out)
    by_key = {j.key: j for j in judge}

    def side(j: Judgment) -> str:
        cand_first = j.first != BASELINE
        return {"tie": "tie", "A": "win" if cand_first else "loss",
                "B": "loss" if cand_first else "win"}[j.winner or ""]

    xs = [side(by_key[h.key[1:]]) for h in human]
    ys = [side(h) for h in human]
    assert pair["games"]["n"] == len(human)
    assert pair["games"]["kappa"] == pytest.approx(cohen_kappa_score(xs, ys), abs=1e-9)
    assert pair["games"]["n_agree"] == sum(x == y for x, y in zip(xs, ys, strict=True))
    code, out, _ = run(["agree", str(run_dir), "--bootstrap", "200"], capsys)
    assert code == 0 and f"{JUDGE} (judge) vs {HUMAN} (human)" in " ".join(out.split())


def test_the_report_shows_raters_and_the_judges_agreement_with_people(
        rated: tuple[Path, list[Judgment], list[Judgment], list[Judgment]],
        capsys: pytest.CaptureFixture[str]) -> None:
    run_dir, _, _, _ = rated
    code, _, err = run(["report", str(run_dir), "--format", "md"], capsys)
    assert code == 0, err
    text = (run_dir / "report.md").read_text()
    assert "## Judges and agreement" in text
    assert f"Judge agreement of {JUDGE} with people: {HUMAN}" in text
    assert "Win rate by rater" in text and OTHER in text


def test_agree_on_a_single_rater_says_what_to_do(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    built = build_run(tmp_path)
    code, _, err = run(["agree", str(built.run_dir)], capsys)
    assert code == 2 and "one rater only" in err and "evalharness label" in err
