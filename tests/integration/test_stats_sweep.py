"""`evalharness stats JUDGMENTS --runs FILE`: a published sweep's perplexity and settings.

The fixture (tests/integration/sweep/) is the worked example of docs/statistics.md: five runs
at 62/46/44/26/24% on 50 prompts against ``base`` (both orders, each run's wins placed on
prompts independently of the others), the 44% run at perplexity 1.6145.
"""

from __future__ import annotations

import json
import math
from itertools import combinations
from pathlib import Path

import pytest
from scipy import stats as sps

from tests.integration.test_cli_stats import run

SWEEP = Path(__file__).parent / "sweep"
JUDGMENTS = SWEEP / "judgments.jsonl"
RUNS = SWEEP / "runs.csv"
RATES = {"r16-lr1e-4-ep1": 0.62, "r16-lr2e-4-ep2": 0.46, "r64-lr2e-4-ep2": 0.44,
         "r16-lr2e-4-ep3": 0.26, "r64-lr2e-4-ep3": 0.24}


def prompt_wins() -> dict[str, set[str]]:
    """The prompts each run won, read straight from the fixture (its A-first games)."""
    won: dict[str, set[str]] = {name: set() for name in RATES}
    for line in JUDGMENTS.read_text().splitlines():
        row = json.loads(line)
        if row["second"] == "base" and row["winner"] == "A":
            won[row["first"]].add(row["prompt_id"])
    return won


def holm_by_hand(p: list[float]) -> list[float]:
    """Holm: the i-th smallest p times (m - i), made non-decreasing, capped at 1."""
    order = sorted(range(len(p)), key=p.__getitem__)
    out, running = [0.0] * len(p), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[index]))
        out[index] = running
    return out


def expected_pairs() -> dict[tuple[str, str], float]:
    """Holm-adjusted paired sign tests over all 10 pairs, independently of evalharness."""
    won = prompt_wins()
    pairs = list(combinations(RATES, 2))  # best first, as the table reads "a - b"
    raw = [float(sps.binomtest(len(won[a] - won[b]), len(won[a] ^ won[b])).pvalue)
           for a, b in pairs]
    return dict(zip(pairs, holm_by_hand(raw), strict=True))


def stats_json(capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, object]:
    code, out, err = run(["stats", str(JUDGMENTS), "--baseline", "base", "--bootstrap", "300",
                          "--format", "json", *extra], capsys)
    assert code == 0, err
    data: dict[str, object] = json.loads(out)
    return data


def test_the_worked_example_only_62_vs_24_and_26_are_distinguishable_after_holm(
        capsys: pytest.CaptureFixture[str]) -> None:
    data = stats_json(capsys, "--runs", str(RUNS))
    candidates = data["candidates"]
    assert isinstance(candidates, list)
    rates = {c["head_to_head"]["candidate"]: c["head_to_head"]["win_rate"] for c in candidates}
    assert rates == pytest.approx(RATES)
    # Against base: the sign test on 31/50, 23/50, 22/50, 13/50, 12/50, Holm over five.
    raw = [float(sps.binomtest(round(50 * r), 50).pvalue) for r in RATES.values()]
    against_base = dict(zip(RATES, holm_by_hand(raw), strict=True))
    for c in candidates:
        assert c["p_holm"] == pytest.approx(against_base[c["head_to_head"]["candidate"]])
    assert {n for n, p in against_base.items() if p < 0.05} == {"r16-lr2e-4-ep3",
                                                                "r64-lr2e-4-ep3"}

    # Adapter against adapter: only the 62% run against the 26% and 24% runs.
    expected = expected_pairs()
    paired = data["paired"]
    assert isinstance(paired, list) and len(paired) == 10
    got = {(p["comparison"]["a"], p["comparison"]["b"]): p["p_holm"] for p in paired}
    assert got == pytest.approx(expected)
    assert {pair for pair, p in got.items() if p < 0.05} == {
        ("r16-lr1e-4-ep1", "r16-lr2e-4-ep3"), ("r16-lr1e-4-ep1", "r64-lr2e-4-ep3")}

    # The paradox ranks by token perplexity (the file gives no bits per byte); lower
    # perplexity went with lower win rate for every run, and its "clear reversals" are the
    # same two pairs the Holm-adjusted paired tests separate.
    paradox = data["paradox"]
    assert isinstance(paradox, dict)
    assert paradox["metric"] == "token_ppl"
    assert [r["candidate"] for r in paradox["rows"]] == list(reversed(RATES))
    assert next(r["token_ppl"] for r in paradox["rows"]
                if r["candidate"] == "r64-lr2e-4-ep2") == pytest.approx(1.6145)
    assert paradox["spearman"]["estimate"] == pytest.approx(1.0)
    assert len(paradox["pairs"]) == 10
    clear = {(p["lower"], p["higher"]) for p in paradox["pairs"] if p["significant"]}
    assert clear == {("r16-lr2e-4-ep3", "r16-lr1e-4-ep1"), ("r64-lr2e-4-ep3", "r16-lr1e-4-ep1")}
    for p in paradox["pairs"]:
        key = (p["higher"], p["lower"])
        assert p["p_holm"] == pytest.approx(expected[key])

    # Hyperparameters: win rate by epochs is the mean of the runs' win rates.
    rows = {(r["parameter"], r["value"]): r for r in data["hyperparameters"]}
    assert rows["epochs", "3"]["win_rate"] == pytest.approx((0.26 + 0.24) / 2)
    assert rows["lora_rank", "16"]["win_rate"] == pytest.approx((0.62 + 0.46 + 0.26) / 3)
    assert rows["epochs", "2"]["perplexity"] == pytest.approx((1.6388 + 1.6145) / 2)
    assert ("target_modules", "q_proj,v_proj") not in rows  # one value: nothing to compare


def test_the_table_shows_the_paradox_and_the_hyperparameters(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["stats", str(JUDGMENTS), "--ppl", str(RUNS), "--bootstrap", "300"],
                       capsys)
    assert code == 0
    assert "Perplexity against win rate (sorted by token ppl" in out
    assert "1.6145" in out
    assert "2 of 10 paradox pair(s) are clear reversals" in out
    assert "Win rate by hyperparameter value" in out
    assert "LOWER win rate" in out


def test_eval_loss_in_json_lines_gives_the_same_perplexities(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ppl = {"r16-lr1e-4-ep1": 1.7012, "r16-lr2e-4-ep2": 1.6388, "r64-lr2e-4-ep2": 1.6145,
           "r16-lr2e-4-ep3": 1.5930, "r64-lr2e-4-ep3": 1.5816}
    runs = tmp_path / "runs.jsonl"
    runs.write_text("".join(json.dumps({"model": m, "eval_loss": math.log(p),
                                        "r": 8 if "r16" in m else 64}) + "\n"
                            for m, p in ppl.items()))
    data = stats_json(capsys, "--runs", str(runs))
    paradox = data["paradox"]
    assert isinstance(paradox, dict)
    assert {r["candidate"]: r["token_ppl"] for r in paradox["rows"]} == pytest.approx(ppl)
    assert {r["parameter"] for r in data["hyperparameters"]} == {"lora_rank"}


def test_a_candidate_without_a_row_is_warned_about_and_left_out(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = tmp_path / "runs.csv"
    runs.write_text("\n".join(RUNS.read_text().splitlines()[:-1]) + "\n")  # drop the 24% run
    code, out, err = run(["stats", str(JUDGMENTS), "--runs", str(runs), "--bootstrap", "200",
                          "--format", "json"], capsys)
    assert code == 0
    assert "warning:" in err and "no row for r64-lr2e-4-ep3" in err
    assert len(json.loads(out)["paradox"]["rows"]) == 4


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("model,perplexity\nr16-lr1e-4-ep1,1.70\nr16-lr1e-4-ep7,1.5\n",
         "runs.csv:3: model 'r16-lr1e-4-ep7' is not in the judgments"),
        ("model,perplexity\nr16-lr1e-4-ep1,0.9\n", "runs.csv:2: perplexity 0.9 is below 1"),
        ("model,perplexity\nr16-lr1e-4-ep1,low\n", "runs.csv:2: 'perplexity' is 'low'"),
        ("model,perplexity,eval_loss\nr16-lr1e-4-ep1,1.70,0.7\n",
         "runs.csv:2: perplexity 1.7 and eval_loss 0.7 disagree"),
        ("model,perplexity\nr16-lr1e-4-ep1,1.7\nr16-lr1e-4-ep1,1.7\n",
         "runs.csv:3: model 'r16-lr1e-4-ep1' is listed again (first at"),
        ("model,perplexity,bits_per_byte\nr16-lr1e-4-ep1,1.7,\nr16-lr2e-4-ep2,,0.6\n",
         "runs.csv:3: gives bits_per_byte but no perplexity, while"),
        ("perplexity\n1.7\n", "runs.csv:2: no 'model'"),
    ],
)
def test_bad_runs_files_exit_2_naming_the_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], rows: str, message: str) -> None:
    runs = tmp_path / "runs.csv"
    runs.write_text(rows)
    code, out, err = run(["stats", str(JUDGMENTS), "--runs", str(runs)], capsys)
    assert code == 2
    assert message in err
    assert "Fix:" in err
    assert "Traceback" not in out + err
