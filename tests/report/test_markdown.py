"""The Markdown report shows the numbers the statistics package computes, with intervals."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from evalharness.perplexity import summarize as summarize_perplexity
from evalharness.report.cli import write_report
from evalharness.stats import Perplexity, spec_hyperparameters, summarize
from evalharness.store import RunDir
from tests.report.conftest import (
    BASELINE,
    EXTRA,
    STRONG,
    WEAK,
    SyntheticRun,
    build_run,
)

NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


@pytest.fixture(scope="module")
def markdown(synthetic: SyntheticRun) -> str:
    return write_report(synthetic.run_dir, "md").read_text()


def table(text: str, caption: str) -> list[dict[str, str]]:
    """The rows of the table under ``**caption**`` as column -> cell."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"**{caption}"))
    header = [c.strip() for c in lines[start + 2].strip("|").split(" | ")]
    rows = []
    for line in lines[start + 4:]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, (c.strip() for c in line.strip("| ").split(" | ")),
                             strict=True)))
    return rows


def row(rows: list[dict[str, str]], first: str, value: str) -> dict[str, str]:
    return next(r for r in rows if r[first] == value)


def numbers(cell: str) -> list[float]:
    return [float(n) for n in NUMBER.findall(cell)]


def expected(synthetic: SyntheticRun):  # type: ignore[no-untyped-def]
    by_model: dict[str, list] = {}  # type: ignore[type-arg]
    for r in synthetic.perplexity:
        by_model.setdefault(r.model, []).append(r)
    ppl = {m: summarize_perplexity(m, rs) for m, rs in by_model.items()}
    manifest = RunDir(synthetic.run_dir).read_manifest()
    return summarize(
        synthetic.judgments, BASELINE, seed=0, n_boot=2000,
        perplexity={m: Perplexity(s.token_perplexity, s.bits_per_byte) for m, s in ppl.items()},
        hyperparameters={c.name: spec_hyperparameters(c) for c in manifest.candidates
                         if c.name != BASELINE},
    ), ppl


def test_head_to_head_shows_the_planted_outcomes_and_the_stats_numbers(
    synthetic: SyntheticRun, markdown: str
) -> None:
    stats, _ = expected(synthetic)
    rows = table(markdown, "Head to head against baseline")
    assert [r["candidate"] for r in rows] == [STRONG, WEAK]
    strong = row(rows, "candidate", STRONG)
    # Planted: 18 prompts won twice, one won with a tie, one won once beside an invalid game,
    # five lost twice -> 38 won, 1 tied, 10 lost games; (18 + 0.75 + 1) / 25 = 79%.
    assert strong["W/T/L games"] == "38/1/10"
    assert strong["invalid"] == "1"
    assert strong["verdict"] == "better"
    for c in stats.candidates:
        h = c.head_to_head
        r = row(rows, "candidate", h.candidate)
        assert numbers(r["win rate, Wilson 95%"]) == pytest.approx(
            [100 * h.win_rate, 100 * h.wilson.low, 100 * h.wilson.high], abs=0.05)
        assert numbers(r["bootstrap 95%"]) == pytest.approx(
            [100 * h.bootstrap.low, 100 * h.bootstrap.high], abs=0.05)
        assert float(r["p (sign)"]) == pytest.approx(h.p_value, rel=1e-2)
        assert float(r["p Holm"]) == pytest.approx(c.p_holm, rel=1e-2)
        assert c.length_controlled is not None
        lc = c.length_controlled
        assert numbers(r["length-controlled, 95%"]) == pytest.approx(
            [100 * lc.win_rate, 100 * lc.interval.low, 100 * lc.interval.high], abs=0.05)
    assert numbers(strong["win rate, Wilson 95%"])[0] == 79.0
    assert row(rows, "candidate", WEAK)["verdict"] == "cannot tell"
    assert "1 judgment(s) had no readable verdict" in markdown


def test_league_and_paired_tables_match_bradley_terry(
    synthetic: SyntheticRun, markdown: str
) -> None:
    stats, _ = expected(synthetic)
    rows = table(markdown, "League (Bradley-Terry)")
    assert [r["model"] for r in rows] == [s.model for s in stats.league.standings]
    for s in stats.league.standings:
        r = row(rows, "model", s.model)
        assert numbers(r["strength, 95%"]) == pytest.approx(
            [s.strength, s.interval.low, s.interval.high], abs=0.005)
        assert r["rank"] == str(s.rank)
    assert rows[0]["model"] == STRONG
    paired = table(markdown, "Adapter against adapter")
    assert len(paired) == 1 and paired[0]["a"] == STRONG


def test_perplexity_and_paradox(synthetic: SyntheticRun, markdown: str) -> None:
    stats, ppl = expected(synthetic)
    rows = table(markdown, "Perplexity")
    for model, s in ppl.items():
        r = row(rows, "model", model)
        point, low, high = numbers(r["token ppl, 95%"])
        assert point == pytest.approx(s.token_perplexity, abs=5e-4)
        assert low < point < high
        assert numbers(r["bits/byte, 95%"])[0] == pytest.approx(s.bits_per_byte, abs=5e-5)
    # Planted: the weak adapter has the lower perplexity, the strong one the higher win rate.
    pairs = table(markdown, "Paradox pairs")
    assert (pairs[0]["lower perplexity"], pairs[0]["higher perplexity"]) == (WEAK, STRONG)
    assert stats.paradox is not None
    assert stats.paradox.sentence in markdown


def test_paradox_correlations_with_three_adapters(tmp_path: Path) -> None:
    run = build_run(tmp_path, extra_adapter=True)
    text = write_report(run.run_dir, "md").read_text()
    stats, _ = expected(run)
    assert stats.paradox is not None
    rho = stats.paradox.spearman
    match = re.search(r"Spearman ([-+]\d\.\d\d) \[([-+]\d\.\d\d), ([-+]\d\.\d\d)\], Kendall "
                      r"([-+]\d\.\d\d) \[", text)
    assert match is not None, "the correlation sentence is missing"
    assert [float(g) for g in match.groups()[:3]] == pytest.approx(
        [rho.estimate, rho.interval.low, rho.interval.high], abs=0.005)
    assert float(match.group(4)) == pytest.approx(stats.paradox.kendall.estimate, abs=0.005)
    assert EXTRA in [r["candidate"] for r in table(text, "Head to head")]


def test_bias_hyperparameters_cost_and_provenance(
    synthetic: SyntheticRun, markdown: str
) -> None:
    stats, _ = expected(synthetic)
    bias = row(table(markdown, "Judge bias per candidate"), "candidate", STRONG)
    b = next(c.bias for c in stats.candidates if c.head_to_head.candidate == STRONG)
    # 24 prompts have both orders; all but the win-and-tie prompt agree.
    assert b.n_both_orders == 24
    assert numbers(bias["both orders agree"])[0] == pytest.approx(100 * 23 / 24, abs=0.05)
    assert numbers(bias["win rate when longer"])[0] == pytest.approx(
        100 * b.longer_win_rate, abs=0.05)
    hyper = table(markdown, "Hyperparameters (from the manifest)")
    assert row(hyper, "model", STRONG)["lora_rank"] == "8"
    assert row(hyper, "model", WEAK)["target_modules"] == "k_proj,o_proj,q_proj,v_proj"
    assert row(hyper, "model", WEAK)["learning_rate"] == "0.0001"
    total = row(table(markdown, "Judge calls"), "judge", "total")
    assert total["judgments"] == str(len(synthetic.judgments))
    tokens = sum(j.usage.prompt_tokens for j in synthetic.judgments)
    assert total["prompt tokens"] == f"{tokens:,}"
    assert total["cost (USD)"] == f"${0.0001 * len(synthetic.judgments):.4f}"
    prov = {r["field"]: r["value"] for r in table(markdown, "Run")}
    assert prov["run id"] == synthetic.run_dir.name
    assert prov["prompt set sha256"] == "c" * 64
    assert prov["version: evalharness"] == "0.1.0"
    assert prov["command line"].startswith("evalharness compare qv-r8 all-r16 --prompts")


def test_a_run_whose_prompt_file_is_gone_still_reports(tmp_path: Path) -> None:
    run = build_run(tmp_path)
    run.prompts_file.unlink()
    text = write_report(run.run_dir, "md").read_text()
    assert "is no longer there: prompt texts are not shown" in text
    assert "38/1/10" in text


def test_markdown_escapes_names_and_never_renders_html(tmp_path: Path) -> None:
    from evalharness.report.markdown import md_escape

    assert md_escape("a|b") == "a\\|b"
    assert "<img" not in md_escape("<img src=x onerror=alert(1)>")
    assert md_escape("lora_rank") == "lora_rank"  # intraword underscores stay readable
