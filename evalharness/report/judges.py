"""The "Judges and agreement" section: who judged, how each rater scored, how they agree.

Shown when a run holds more than one rater (a jury, human labels from ``evalharness label``,
or both); otherwise the summary says in one line that the judge's agreement is unmeasured.
The figures come from ``stats.agreement`` (pure); this module only lays them out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from evalharness.rater_names import is_repeat
from evalharness.report.blocks import Block, Paragraph, Section, Table
from evalharness.schema import Judgment
from evalharness.stats import Interval
from evalharness.stats.agreement import PairAgreement, agreement_table
from evalharness.stats.headtohead import head_to_head
from evalharness.stats.raters import Headline


@dataclass(frozen=True)
class RaterRates:
    """One rater's win rate per candidate against the baseline."""

    rater: str
    rates: dict[str, tuple[float, Interval, int]]
    """Candidate -> (win rate, Wilson interval, prompts rated)."""


@dataclass(frozen=True)
class Raters:
    """Everything the section shows."""

    headline: Headline
    """Where the headline's verdicts came from."""
    rates: tuple[RaterRates, ...]
    """Each rater's win rates (jurors, humans, the jury itself)."""
    agreement: tuple[PairAgreement, ...]
    """Every pair of raters."""


def rater_figures(judgments: Sequence[Judgment], headline: Headline, baseline: str,
                  candidates: Sequence[str], *, seed: int = 0, n_boot: int = 1000,
                  confidence: float = 0.95) -> Raters | None:
    """Per-rater win rates and agreement; ``None`` when the run has a single rater."""
    rated = [j for j in judgments if not is_repeat(j.judge)]
    if headline.jurors:
        rated += [j.model_copy(update={"judge": "jury"}) for j in headline.judgments]
    # The headline's judge (or the jury) first, then the other judges, then people.
    first = "jury" if headline.jurors else headline.source
    raters = sorted({j.judge for j in rated},
                    key=lambda r: (r.startswith("human:"), r != first, r))
    if len(raters) < 2:
        return None
    rates = []
    for rater in raters:
        own = [j for j in rated if j.judge == rater]
        found: dict[str, tuple[float, Interval, int]] = {}
        for candidate in candidates:
            if not any(candidate in (j.first, j.second) for j in own):
                continue
            h = head_to_head(own, candidate, baseline, seed=seed, n_boot=100,
                             confidence=confidence)
            found[candidate] = (h.win_rate, h.wilson, h.n_prompts)
        rates.append(RaterRates(rater, found))
    table = agreement_table(rated, baseline, raters, n_boot=n_boot, confidence=confidence,
                            seed=seed)
    return Raters(headline, tuple(rates), tuple(table))


def _pct(value: float) -> str:
    return "-" if math.isnan(value) else f"{100 * value:.1f}%"


def _kappa(p: PairAgreement) -> str:
    a = p.prompts
    if math.isnan(a.kappa):
        return f"- ({a.kappa_note})" if a.kappa_note else "-"
    low, high = a.kappa_interval
    return f"{a.kappa:.2f} [{low:.2f}, {high:.2f}]"


def judge_agreement_line(raters: Raters | None, judge: str) -> str:
    """What is known of ``judge``'s agreement with people, for the summary."""
    if raters is None:
        return (f"Judge agreement: not measured for {judge} (no human labels in this run; "
                "`evalharness label RUN` collects them, `evalharness agree RUN` compares).")
    human = [p for p in raters.agreement
             if p.x == judge and p.y_kind == "human" and p.prompts.n > 0]
    if not human:
        return f"Judge agreement: {judge} has no human labels to compare with in this run."
    parts = [f"{p.y}: {_pct(p.prompts.agreement)} of {p.prompts.n} prompts, kappa {_kappa(p)}"
             for p in human]
    return f"Judge agreement of {judge} with people: " + "; ".join(parts) + "."


def judges_section(raters: Raters | None, candidates: Sequence[str]) -> Section | None:
    """The section, or ``None`` for a run with one rater."""
    if raters is None:
        return None
    h = raters.headline
    intro = f"Headline verdicts: {h.source}."
    if h.jurors:
        intro += (" A jury's verdict on a game is the majority of its jurors' hard verdicts "
                  "(a tie without a strict majority), or the mean of their soft preferences "
                  "when every juror gives one; each juror's verdicts are kept under its name.")
    rate_rows = tuple(
        (r.rater, *(f"{_pct(v[0])} [{100 * v[1].low:.1f}, {100 * v[1].high:.1f}] (n={v[2]})"
                    if (v := r.rates.get(c)) else "-" for c in candidates))
        for r in raters.rates)
    agree_rows = tuple(
        (p.x, p.y, str(p.prompts.n), _pct(p.prompts.agreement),
         f"{_pct(p.prompts.agreement_without_ties)} (n={p.prompts.n_without_ties})",
         _kappa(p), f"{_pct(p.games.agreement)} (n={p.games.n})",
         f"{_pct(p.x_consistency.share)} / {_pct(p.y_consistency.share)}")
        for p in raters.agreement)
    level = f"{100 * raters.agreement[0].confidence:g}%" if raters.agreement else "95%"
    blocks: list[Block] = [
        Paragraph(intro),
        Table("Win rate by rater (Wilson 95%; prompts rated)", ("rater", *candidates),
              rate_rows),
        Table("Agreement between raters", (
            "x", "y", "prompts", "agreement", "without ties", f"Cohen's kappa, {level}",
            "per game (same order)", "both-order consistency x / y"), agree_rows),
        Paragraph(
            "Agreement is read per prompt (each rater's combined outcome over the orders it "
            "judged: win, tie or loss from the candidate's side) and per game where both "
            "raters saw the same order. 'Without ties' counts only prompts where neither "
            "said tie (MT-Bench's figure: GPT-4 agrees with experts on about 85% of those, "
            "experts with each other on about 81%). Kappa's interval resamples prompts. "
            "`evalharness agree RUN` prints the confusion matrices and the per-candidate and "
            "per-category breakdowns."),
    ]
    return Section("judges", "Judges and agreement", tuple(blocks))
