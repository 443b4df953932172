"""Length gaming: a candidate that wins by writing more, not by writing better.

Judges, human and model, prefer longer answers; a fine-tune that learned to pad collects
wins the content does not earn. ``length-gaming`` compares the candidate's answer lengths
with the baseline's on the same prompts (the median of the per-prompt length ratios, and
the share of prompts where the candidate is longer) and, given the judgments, its win rate
in the games where its answer was the longer one against those where it was the shorter.

A candidate much longer than the baseline is worth knowing (``info``: read the
length-controlled win rate beside the raw one). One that is much longer *and* wins far
more often when longer than when shorter is flagged (``warning``): its lead is largely
length. A candidate that wins as often when shorter is not flagged at all, however long: the
judge is not rewarding its length. Thresholds: ``[length-gaming]`` in ``data/quality.toml``.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from evalharness.audit.config import AuditConfig, Thresholds
from evalharness.audit.findings import CandidateAnswers, Finding, Severity, some_ids
from evalharness.schema import Judgment
from evalharness.stats.games import pair_games


class LengthThresholds(Thresholds):
    """``[length-gaming]`` in ``data/quality.toml``."""

    min_prompts: int
    min_median_ratio: float
    min_longer_share: float
    min_games: int
    min_win_gap: float


class Lengths(NamedTuple):
    """The candidate's answer lengths against the baseline's, on the prompts both answered."""

    prompts: int
    """Prompts compared."""
    median_ratio: float
    """Median over prompts of candidate length / baseline length (characters)."""
    longer_share: float
    """Share of prompts where the candidate's answer is the longer one."""
    longer_ids: tuple[str, ...]
    """Those prompts, in prompt-set order."""


class LengthSplit(NamedTuple):
    """The candidate's win rate in games where its answer was longer, and shorter."""

    longer_games: int
    """Valid games where the candidate's answer was longer."""
    longer_win_rate: float
    """Its mean score there (win 1, tie 0.5, loss 0); NaN without games."""
    shorter_games: int
    """Valid games where it was shorter (equal lengths are in neither)."""
    shorter_win_rate: float
    """Its mean score there; NaN without games."""

    @property
    def gap(self) -> float:
        """``longer_win_rate - shorter_win_rate`` (NaN when either is unknown)."""
        return self.longer_win_rate - self.shorter_win_rate


def _size(text: str) -> int:
    return len(text.strip())


def compare_lengths(inp: CandidateAnswers) -> Lengths:
    """The candidate's lengths against the baseline's (zero prompts without a baseline).

    A blank baseline answer counts as one character, so the ratio stays finite.
    """
    if inp.baseline is None:
        return Lengths(0, float("nan"), float("nan"), ())
    common = [pid for pid in inp.prompts if pid in inp.answers and pid in inp.baseline]
    common += [pid for pid in inp.answers if pid in inp.baseline and pid not in inp.prompts]
    if not common:
        return Lengths(0, float("nan"), float("nan"), ())
    mine = {pid: _size(inp.answers[pid].text) for pid in common}
    theirs = {pid: _size(inp.baseline[pid].text) for pid in common}
    ratios = [mine[pid] / max(theirs[pid], 1) for pid in common]
    longer = tuple(pid for pid in common if mine[pid] > theirs[pid])
    return Lengths(len(common), statistics.median(ratios), len(longer) / len(common), longer)


def split_by_length(inp: CandidateAnswers, judgments: Sequence[Judgment]) -> LengthSplit:
    """Win rate when longer vs when shorter, from the candidate's games against the baseline.

    Lengths come from the judgments (``first_length``, ``second_length``), else from the
    answers; soft-only games count by the side their preference leans to.

    >>> from evalharness.audit.findings import CandidateAnswers
    >>> def game(pid, first, winner, a_len, b_len):
    ...     second = "base" if first == "ft" else "ft"
    ...     return Judgment(key=pid + first, prompt_id=pid, judge="j", first=first,
    ...                     second=second, verdict=winner, winner=winner,
    ...                     first_length=a_len, second_length=b_len)
    >>> inp = CandidateAnswers("ft", {}, {}, {})
    >>> split = split_by_length(inp, [game("p1", "ft", "A", 90, 10),
    ...                               game("p1", "base", "B", 10, 90),
    ...                               game("p2", "ft", "B", 10, 90)])
    >>> split.longer_games, split.longer_win_rate, split.shorter_win_rate
    (2, 1.0, 0.0)
    """
    baseline = next((a.model for a in (inp.baseline or {}).values()), None)
    if baseline is None:
        opponents = {j.second if j.first == inp.candidate else j.first for j in judgments}
        baseline = next(iter(opponents)) if len(opponents) == 1 else None
    if baseline is None:
        return LengthSplit(0, float("nan"), 0, float("nan"))
    games = pair_games(judgments, inp.candidate, baseline, "hard")
    own = np.array(games.candidate_length)
    other = np.array(games.opponent_length)
    for i, pid in enumerate(games.prompt_ids):  # lengths the judgments did not record
        if np.isnan(own[i]) and pid in inp.answers:
            own[i] = _size(inp.answers[pid].text)
        if np.isnan(other[i]) and inp.baseline is not None and pid in inp.baseline:
            other[i] = _size(inp.baseline[pid].text)
    valid = games.valid
    longer, shorter = valid & (own > other), valid & (own < other)

    def mean(mask: np.ndarray) -> float:
        return float(games.score[mask].mean()) if mask.any() else float("nan")

    return LengthSplit(int(longer.sum()), mean(longer), int(shorter.sum()), mean(shorter))


def length_gaming(inp: CandidateAnswers, judgments: Sequence[Judgment], config: AuditConfig
                  ) -> list[Finding]:
    """``length-gaming``: much longer than the baseline, and (given judgments) winning
    mostly when longer."""
    t = config.section("length-gaming", LengthThresholds)
    lengths = compare_lengths(inp)
    if lengths.prompts < t.min_prompts or lengths.median_ratio < t.min_median_ratio \
            or lengths.longer_share < t.min_longer_share:
        return []
    evidence = [f"median length ratio to the baseline {lengths.median_ratio:.2f}; longer on "
                f"{100 * lengths.longer_share:.0f}% of {lengths.prompts} prompts"]
    split = split_by_length(inp, judgments)
    severity: Severity = "info"
    summary = (f"answers are {lengths.median_ratio:.1f}x as long as the baseline's (median); "
               "judges favour length: read the length-controlled win rate")
    if split.longer_games or split.shorter_games:
        evidence.append(
            f"win rate when longer {_rate(split.longer_win_rate)} ({split.longer_games} "
            f"games), when shorter {_rate(split.shorter_win_rate)} ({split.shorter_games})")
        enough = min(split.longer_games, split.shorter_games) >= t.min_games
        if enough and split.gap >= t.min_win_gap:
            severity = "warning"
            summary = (f"answers are {lengths.median_ratio:.1f}x as long as the baseline's and "
                       f"win {_rate(split.longer_win_rate)} when longer, "
                       f"{_rate(split.shorter_win_rate)} when shorter: the lead is largely "
                       "length")
        elif enough:
            return []  # the judge rewards it as much when it is shorter: not length
    evidence.append(
        f"thresholds: median ratio {t.min_median_ratio:g}+, longer on "
        f"{t.min_longer_share:.0%}+ of prompts; flagged when the win rate when longer exceeds "
        f"the one when shorter by {t.min_win_gap:.0%}+ ({t.min_games}+ games each)")
    return [Finding(subject=inp.candidate, check="length-gaming", severity=severity,
                    summary=summary, evidence=tuple(evidence),
                    prompt_ids=some_ids(lengths.longer_ids))]


def _rate(value: float) -> str:
    return "n/a" if np.isnan(value) else f"{100 * value:.0f}%"
