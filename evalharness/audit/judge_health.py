"""Judge health: is the judge's verdict evidence, or noise, position or indecision?

Per judge and per candidate (its games against the baseline), from the judgments alone:

- ``judge-invalid``: the share of games without a readable verdict;
- ``judge-undecided``: the share of prompts the judge split (the two orders disagree) or
  tied, among prompts whose two answers differ: a judge that cannot tell the answers apart
  gives a win rate near 50% with a tight interval that measures its indecision, not the
  models (identical answers are left out: a tie is the right verdict for them);
- ``judge-position``: a preference for position A or B, from prompts judged in both orders
  (exact binomial test; both orders cancel it in the win rate, but a strong one means most
  verdicts were decided by position, not content);
- ``judge-inconsistent``: the share of prompts judged in both orders whose two verdicts
  disagree, split or not (a tie against a win counts).

Every finding carries the verdict distribution (A / B / tie / invalid) as evidence. The
thresholds are in ``data/judge.toml``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence

import numpy as np

from evalharness.audit.common import level
from evalharness.audit.config import AuditConfig, Thresholds
from evalharness.audit.findings import Finding, some_ids
from evalharness.schema import Judgment
from evalharness.stats.bias import judge_bias
from evalharness.stats.games import both_orders, hard_label, pair_games


class JudgeHealthThresholds(Thresholds):
    """``[judge-health]`` in ``data/judge.toml``."""

    min_games: int
    invalid_warning: float
    invalid_severe: float
    undecided_warning: float
    undecided_severe: float
    position_warning: float
    position_severe: float
    position_p: float
    inconsistent_warning: float


def _distribution(judgments: Sequence[Judgment]) -> str:
    labels = Counter(hard_label(j) or "invalid" for j in judgments)
    return "verdicts: " + ", ".join(f"{name} {labels.get(name, 0)}"
                                    for name in ("A", "B", "tie", "invalid"))


def _pair_findings(judge: str, candidate: str, baseline: str, games_of: Sequence[Judgment],
                   identical: Collection[str], t: JudgeHealthThresholds) -> list[Finding]:
    subject = f"judge:{judge}"
    about = f"{candidate} vs {baseline}"
    distribution = _distribution(games_of)
    findings: list[Finding] = []
    invalid = [j for j in games_of if not j.valid]
    invalid_share = len(invalid) / len(games_of)
    found = level(invalid_share, t.invalid_warning, t.invalid_severe)
    if found:
        findings.append(Finding(
            subject=subject, about=candidate, check="judge-invalid", severity=found,
            summary=(f"{about}: {len(invalid)} of {len(games_of)} games "
                     f"({100 * invalid_share:.0f}%) have no readable verdict"),
            evidence=(distribution, f"thresholds: warning {t.invalid_warning:g}, severe "
                      f"{t.invalid_severe:g}"),
            prompt_ids=some_ids(j.prompt_id for j in invalid)))
    games = pair_games(games_of, candidate, baseline, "hard")
    ids, both, index = both_orders(games)
    valid = games.valid
    score = games.hard_score
    # Per prompt: the mean hard score over its valid games; 0.5 means split or tied.
    totals = np.bincount(index[valid], weights=score[valid], minlength=len(ids))
    counts = np.bincount(index[valid], minlength=len(ids))
    differ = np.array([pid not in identical for pid in ids], dtype=np.bool_)
    scored = (counts > 0) & differ
    if int(scored.sum()) >= t.min_games:
        with np.errstate(invalid="ignore"):
            undecided = scored & (totals / np.maximum(counts, 1) == 0.5)
        share = int(undecided.sum()) / int(scored.sum())
        found = level(share, t.undecided_warning, t.undecided_severe)
        if found:
            findings.append(Finding(
                subject=subject, about=candidate, check="judge-undecided", severity=found,
                summary=(f"{about}: the judge split or tied {int(undecided.sum())} of "
                         f"{int(scored.sum())} prompts whose answers differ "
                         f"({100 * share:.0f}%): it cannot tell these answers apart, and a "
                         "win rate near 50% with a tight interval measures that, not the "
                         "models"),
                evidence=(distribution,
                          f"prompts with identical answers left out: {int((~differ).sum())}"),
                prompt_ids=some_ids(p for p, u in zip(ids, undecided, strict=True) if u)))
    bias = judge_bias(games)
    n_both = int((both & differ).sum())
    position = bias.position
    if n_both >= t.min_games and position.n_decided >= t.min_games:
        lean = abs(position.first_position_rate - 0.5)
        a_wins = round(position.first_position_rate * position.n_decided)
        p = position.p_value
        found = level(lean, t.position_warning, t.position_severe)
        if found and p < t.position_p:
            a_leads = position.first_position_rate > 0.5
            side = "A (shown first)" if a_leads else "B (shown second)"
            side_wins = a_wins if a_leads else position.n_decided - a_wins
            findings.append(Finding(
                subject=subject, about=candidate, check="judge-position", severity=found,
                summary=(f"{about}: position {side} won {side_wins} of "
                         f"{position.n_decided} decided games "
                         f"of prompts judged in both orders (p = {p:.2g}): position, not "
                         "content, decided many verdicts"),
                evidence=(distribution, "both orders cancel a position preference in the "
                          "win rate, but not the noise it adds")))
    if n_both >= t.min_games:
        inconsistent = 1.0 - bias.position_consistency
        if inconsistent >= t.inconsistent_warning:
            findings.append(Finding(
                subject=subject, about=candidate, check="judge-inconsistent", severity="warning",
                summary=(f"{about}: the two orders disagree on {100 * inconsistent:.0f}% of "
                         f"{bias.n_both_orders} prompts judged in both orders"),
                evidence=(distribution,)))
    return findings


def judge_health(judgments: Sequence[Judgment], baseline: str, config: AuditConfig,
                 identical: dict[str, Collection[str]] | None = None) -> list[Finding]:
    """Findings on each judge's games of each candidate against ``baseline``.

    Args:
        judgments: the run's judgments (duplicate keys already dropped).
        baseline: the model every candidate played.
        config: the audit thresholds (``[judge-health]``).
        identical: per candidate, the prompt ids where its answer equals the baseline's
            (left out of the indecision check); empty when answers are unknown.
    """
    t = config.section("judge-health", JudgeHealthThresholds)
    identical = identical or {}
    # One pass: each judge's games of each candidate against the baseline.
    games: dict[tuple[str, str], list[Judgment]] = {}
    for j in judgments:
        if baseline in (j.first, j.second):
            other = j.second if j.first == baseline else j.first
            games.setdefault((j.judge, other), []).append(j)
    findings: list[Finding] = []
    for (judge, candidate), games_of in sorted(games.items()):
        if len(games_of) >= t.min_games:
            findings += _pair_findings(judge, candidate, baseline, games_of,
                                       identical.get(candidate, ()), t)
    return findings
