"""Everything ``evalharness stats`` shows, computed from a list of judgments.

``summarize`` is the one entry point the CLI, the report and the pipelines share: give it
judgments and the baseline's name (and, optionally, perplexities and hyperparameters) and it
returns one frozen ``StatsSummary``. ``to_jsonable`` turns any result into plain JSON values.

**Verdicts** are made here, once, for every output: each candidate's verdict is read from
its test interval (``headtohead.decide``) at the level Holm's step-down procedure used for
it (``holm_levels``), so the verdict, the interval printed beside it and the Holm-adjusted
test always agree. With one candidate that level is the nominal one (95%).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np

from evalharness.errors import UserError
from evalharness.invalid import all_invalid_problem
from evalharness.schema import Judgment, ModelSpec
from evalharness.stats.bias import JudgeBias, PositionBias, judge_bias, position_bias
from evalharness.stats.bradley_terry import League, league
from evalharness.stats.games import (
    PromptScores,
    ScoreMode,
    pair_games,
    prompt_scores,
    resolve_score,
)
from evalharness.stats.headtohead import (
    HeadToHead,
    decide,
    head_to_head_from_scores,
    interval_at,
)
from evalharness.stats.hyperparams import HyperparameterRow, Scalar, hyperparameter_effects
from evalharness.stats.intervals import NAN_INTERVAL, Interval
from evalharness.stats.length import LengthControlled, length_controlled_all
from evalharness.stats.multiple import holm
from evalharness.stats.paired import PairedComparison, paired_comparison
from evalharness.stats.paradox import Paradox, Perplexity, perplexity_paradox
from evalharness.stats.power import DetectableWinRate, detectable_win_rate

PAIRED_LIMIT = 12
"""Adapter-vs-adapter comparisons are made among at most this many best candidates."""


@dataclass(frozen=True)
class CandidateStats:
    """One candidate against the baseline."""

    head_to_head: HeadToHead
    """Win rate, intervals, sign test."""
    p_holm: float
    """The sign test's p-value, Holm-adjusted over all candidates."""
    bias: JudgeBias
    """Position and length diagnostics of the judge on these games."""
    length_controlled: LengthControlled | None
    """Length-controlled win rate; None with fewer than 20 prompts with lengths."""
    verdict: str = "cannot tell"
    """``better``, ``worse``, ``cannot tell``, ``no valid games``, or why the judge gave no
    evidence (it split or tied most prompts); read from ``verdict_interval``."""
    verdict_interval: Interval = NAN_INTERVAL
    """The test interval at ``verdict_level``: the interval shown beside the verdict."""
    verdict_level: float = float("nan")
    """Level of ``verdict_interval``: the nominal confidence, raised by Holm's step-down
    procedure when several candidates are tested (see ``holm_levels``)."""


@dataclass(frozen=True)
class AdjustedPair:
    """An adapter-vs-adapter comparison with its Holm-adjusted p-value."""

    comparison: PairedComparison
    """The paired comparison."""
    p_holm: float
    """Its sign test p-value, Holm-adjusted over all pairs compared."""


@dataclass(frozen=True)
class StatsSummary:
    """All statistics of a set of judgments."""

    baseline: str
    """The model every candidate is compared with."""
    judges: tuple[str, ...]
    """Judges found in the judgments (games of several judges are pooled)."""
    n_judgments: int
    """Judgments used (after dropping duplicates)."""
    n_invalid: int
    """Judgments without a readable verdict (never counted as ties)."""
    n_duplicates: int
    """Judgments dropped because an earlier one had the same key."""
    candidates: tuple[CandidateStats, ...]
    """Every model that played the baseline, highest win rate first."""
    position: PositionBias
    """Position-A preference over all judgments."""
    league: League
    """Bradley-Terry standings over all battles."""
    paired: tuple[AdjustedPair, ...]
    """Adapter-vs-adapter comparisons on shared prompts (among the best ``PAIRED_LIMIT``)."""
    paradox: Paradox | None
    """Perplexity against win rate, when perplexities were given."""
    hyperparameters: tuple[HyperparameterRow, ...]
    """Win rate by hyperparameter value, when hyperparameters were given."""
    detectable: DetectableWinRate | None
    """Smallest win rate this many prompts could detect (median prompts per candidate)."""
    seed: int
    """Bootstrap seed."""
    n_boot: int
    """Bootstrap rounds."""
    confidence: float
    """Interval level."""
    score: ScoreMode = "hard"
    """The score behind win rates, intervals, tests and length control (``hard``: winner
    labels; ``soft``: ``weight_a``)."""
    n_prompts_both_orders: int = 0
    """Prompt comparisons (one prompt, one candidate against the baseline) with a valid game
    in each order."""
    n_prompts_one_order: int = 0
    """Prompt comparisons judged (validly) in one order only."""
    orders: str = ""
    """What was done, in words: both orders, one order, or how many of each."""
    position_note: str = ""
    """What the position-A rate means here (or why there is none)."""
    problem: str | None = None
    """Why the numbers say nothing, with the fix: every judgment was invalid (the judge's
    replies could not be read). The summary is still complete, with 0 valid games."""


def dedupe(judgments: Sequence[Judgment]) -> tuple[list[Judgment], int]:
    """Keep the first judgment of each game: its key *and* the two models in their places.

    Two adapters that gave the same answer share a game key (same content, one judge call),
    but each has its own record, so the key alone would merge two models' games.

    >>> from evalharness.schema import Judgment
    >>> j = Judgment(key="k", prompt_id="p", judge="j", first="a", second="b", verdict="A",
    ...              winner="A")
    >>> twin = j.model_copy(update={"first": "c"})
    >>> len(dedupe([j, j])[0]), dedupe([j, j])[1], len(dedupe([j, twin])[0])
    (1, 1, 2)
    """
    seen: set[tuple[str, str, str]] = set()
    kept: list[Judgment] = []
    for j in judgments:
        game = (j.key, j.first, j.second)
        if game not in seen:
            seen.add(game)
            kept.append(j)
    return kept, len(judgments) - len(kept)


def infer_baseline(judgments: Sequence[Judgment]) -> str:
    """The one model that appears in every pair of models judged.

    >>> from evalharness.schema import Judgment
    >>> def j(a, b):
    ...     return Judgment(key=a + b, prompt_id="p", judge="j", first=a, second=b,
    ...                     verdict="A", winner="A")
    >>> infer_baseline([j("x", "base"), j("base", "y")])
    'base'

    Raises:
        UserError: no judgments, or no model or more than one model is in every pair.
    """
    pairs = {frozenset((j.first, j.second)) for j in judgments}
    if not pairs:
        raise UserError("no judgments to analyse. Fix: pass a file with at least one judgment.")
    common = set.intersection(*(set(p) for p in pairs))
    if len(common) == 1:
        return next(iter(common))
    models = sorted({m for p in pairs for m in p})
    if common:
        raise UserError(
            f"cannot tell the baseline: {' and '.join(sorted(common))} both appear in every "
            "pair. Fix: pass --baseline NAME."
        )
    raise UserError(
        f"no model appears in every pair of models judged ({', '.join(models)}). "
        "Fix: pass --baseline NAME."
    )


def holm_levels(p_values: Sequence[float], alpha: float) -> list[float]:
    """The interval level for each test that makes it agree with Holm's decision.

    Holm sorts the p-values and rejects the i-th smallest (0-based) while each so far is
    below ``alpha / (m - i)``; it stops at the first that is not (``r`` rejected). An
    interval at level ``1 - alpha / (m - i)`` excludes the null exactly when the i-th is
    rejected; every test from the stopping point on gets ``1 - alpha / (m - r)``, where its
    p-value is at least the threshold, so its interval holds the null. By hand for
    (0.01, 0.04, 0.03, 0.5) at 0.05: 0.01 < 0.05/4 is rejected at level 1 - 0.0125; 0.03 is
    not below 0.05/3, so Holm stops and the rest get 1 - 0.05/3.

    >>> [round(v, 4) for v in holm_levels([0.01, 0.04, 0.03, 0.5], 0.05)]
    [0.9875, 0.9833, 0.9833, 0.9833]
    >>> holm_levels([0.2], 0.05)
    [0.95]
    """
    m = len(p_values)
    order = np.argsort(np.asarray(p_values, dtype=np.float64), kind="stable")
    levels = [0.0] * m
    rejected = 0
    for i, index in enumerate(order):
        if rejected == i and p_values[index] < alpha / (m - i):
            rejected += 1
        levels[index] = 1.0 - alpha / (m - min(i, rejected))
    return levels


def _orders(n_both: int, n_one: int, single: bool) -> str:
    """The sentence every output uses to say in which orders the prompts were judged.

    >>> _orders(50, 0, True), _orders(0, 50, True)
    ('each prompt judged in both orders', 'each prompt judged in one order only')
    >>> _orders(30, 20, True)
    '30 of 50 prompts judged in both orders, 20 in one order only'
    """
    unit = "prompts" if single else "prompt comparisons (a prompt, one candidate)"
    if n_both + n_one == 0:
        return "no prompt has a valid game"
    if n_one == 0:
        return "each prompt judged in both orders"
    if n_both == 0:
        return "each prompt judged in one order only"
    return f"{n_both} of {n_both + n_one} {unit} judged in both orders, {n_one} in one order only"


def _position_note(position: PositionBias, n_one: int) -> str:
    """What the overall position-A rate says, and what it does not."""
    if position.n_both_orders == 0:
        return ("No prompt was judged in both orders, so the judge's position preference "
                "cannot be measured (on one-order games 'position A won' is only the record "
                "of whichever model was shown first) and nothing cancels it in the win rates.")
    note = (f"Measured on the {position.n_both_orders} prompts judged in both orders, where "
            "judging both orders cancels it in the win rates")
    if n_one:
        note += f"; the {n_one} prompt comparisons judged in one order only keep it"
    return note + "."


def summarize(
    judgments: Sequence[Judgment],
    baseline: str,
    *,
    seed: int = 0,
    n_boot: int = 2000,
    confidence: float = 0.95,
    perplexity: Mapping[str, Perplexity | tuple[float, float]] | None = None,
    hyperparameters: Mapping[str, Mapping[str, Scalar]] | Sequence[ModelSpec] | None = None,
    paired_limit: int = PAIRED_LIMIT,
    score: ScoreMode | None = None,
) -> StatsSummary:
    """Compute every statistic for ``judgments`` against ``baseline``.

    Args:
        judgments: judgments in the documented schema (duplicates by key are dropped).
        baseline: the model every candidate is compared with.
        seed: bootstrap seed (the same seed gives the same intervals).
        n_boot: bootstrap rounds.
        confidence: interval level.
        perplexity: optional candidate -> (token perplexity, bits per byte).
        hyperparameters: optional candidate -> hyperparameters, or ``ModelSpec`` objects.
        paired_limit: compare adapters pairwise among at most this many best candidates.
        score: ``hard`` (winner labels), ``soft`` (``weight_a``), or ``None``: soft when
            every valid game has a soft preference (``games.resolve_score``).

    Raises:
        UserError: ``baseline`` does not appear in the judgments, or ``score="soft"`` and
            some valid game has no soft preference.
    """
    kept, n_dup = dedupe(list(judgments))
    mode = resolve_score(kept, score)
    models = sorted({m for j in kept for m in (j.first, j.second)})
    if baseline not in models:
        raise UserError(
            f"baseline '{baseline}' is not in the judgments (models: {', '.join(models)}). "
            "Fix: pass --baseline with one of those names."
        )
    opponents = sorted(
        {
            j.second if j.first == baseline else j.first
            for j in kept
            if baseline in (j.first, j.second)
        }
        - {baseline}
    )
    rows: list[tuple[HeadToHead, JudgeBias, LengthControlled | None]] = []
    all_scores: list[PromptScores] = []
    # Each candidate's judgments in one pass (pair_games on the whole list per candidate
    # would read every judgment once per candidate).
    against: dict[str, list[Judgment]] = {name: [] for name in opponents}
    for j in kept:
        if baseline in (j.first, j.second):
            other = j.second if j.first == baseline else j.first
            if other in against:
                against[other].append(j)
    all_games = {name: pair_games(against[name], name, baseline, mode) for name in opponents}
    # One joint fit: the prompts' difficulties are shared by every candidate.
    lc_by_name = length_controlled_all(list(all_games.values()), seed=seed, n_boot=n_boot,
                                       confidence=confidence, score=mode)
    for name, games in all_games.items():
        scores = prompt_scores(games)
        all_scores.append(scores)
        h2h = head_to_head_from_scores(
            scores, games, seed=seed, n_boot=n_boot, confidence=confidence
        )
        rows.append((h2h, judge_bias(games), lc_by_name[name]))
    alpha = 1.0 - confidence
    p_values = [r[0].p_value for r in rows]
    adjusted = holm(p_values)
    made = []
    for (h, b, lc), p, level, sc in zip(rows, adjusted, holm_levels(p_values, alpha),
                                        all_scores, strict=True):
        shown = interval_at(h, sc, level)
        made.append(CandidateStats(h, p, b, lc, decide(h, shown), shown, level))
    candidates = sorted(
        made,
        key=lambda c: (-np.nan_to_num(c.head_to_head.win_rate, nan=-1.0), c.head_to_head.candidate),
    )
    # Best first, so "a - b" reads as how far the better-ranked adapter leads.
    by_name = {s.candidate: s for s in all_scores}
    chosen = [by_name[c.head_to_head.candidate] for c in candidates[:paired_limit]]
    comparisons = [
        paired_comparison(a, b, seed=seed, n_boot=n_boot, confidence=confidence)
        for a, b in combinations(chosen, 2)
    ]
    paired_adjusted = holm([c.p_value for c in comparisons])
    sizes = [c.head_to_head.n_prompts for c in candidates if c.head_to_head.n_prompts > 0]
    # A baseline without a valid game (every judgment invalid) has no place to anchor the
    # league; an empty league lets the rest be reported, with ``problem`` saying why.
    anchored = any(j.valid and baseline in (j.first, j.second) for j in kept)
    # Each game plays in the league with its score in the chosen mode (soft: fractional).
    standings = (league(kept, baseline, seed=seed, n_boot=n_boot, confidence=confidence,
                        score=mode)
                 if anchored else League(baseline, (), 0, 0, n_boot, seed, confidence))
    n_both = sum(c.head_to_head.n_both_orders for c in candidates)
    n_one = sum(c.head_to_head.n_one_order for c in candidates)
    position = position_bias(kept)
    judges = ", ".join(sorted({j.judge for j in kept}))
    return StatsSummary(
        baseline=baseline,
        judges=tuple(sorted({j.judge for j in kept})),
        n_judgments=len(kept),
        n_invalid=sum(not j.valid for j in kept),
        n_duplicates=n_dup,
        candidates=tuple(candidates),
        position=position,
        league=standings,
        paired=tuple(AdjustedPair(c, p) for c, p in zip(comparisons, paired_adjusted, strict=True)),
        paradox=perplexity_paradox(
            all_scores, perplexity, seed=seed, n_boot=n_boot, confidence=confidence
        )
        if perplexity
        else None,
        hyperparameters=hyperparameter_effects(
            hyperparameters,
            all_scores,
            perplexity,
            seed=seed,
            n_boot=n_boot,
            confidence=confidence,
        )
        if hyperparameters
        else (),
        detectable=detectable_win_rate(int(np.median(sizes)), alpha=1.0 - confidence)
        if sizes
        else None,
        seed=seed,
        n_boot=n_boot,
        confidence=confidence,
        score=mode,
        n_prompts_both_orders=n_both,
        n_prompts_one_order=n_one,
        orders=_orders(n_both, n_one, len(candidates) == 1),
        position_note=_position_note(position, n_one),
        # A soft-only game has no winner yet is valid: only judgments without either count.
        problem=None if any(j.valid for j in kept) else all_invalid_problem(kept, judges),
    )


def to_jsonable(value: Any) -> Any:
    """Plain JSON values for any statistics result: NaN and infinities become ``None``.

    >>> from evalharness.stats.intervals import Interval
    >>> to_jsonable({"ci": Interval(0.1, float("nan")), "n": np.int64(3)})
    {'ci': {'low': 0.1, 'high': None}, 'n': 3}
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return {name: to_jsonable(getattr(value, name)) for name in value._fields}
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def length_notes(summary: StatsSummary) -> list[str]:
    """What every output says below its table about length control: why a candidate's
    length-controlled rate is unreliable, and what the fit could not include."""
    notes = [f"{c.head_to_head.candidate}'s length-controlled win rate is unreliable: "
             f"{c.length_controlled.unreliable}" for c in summary.candidates
             if c.length_controlled and c.length_controlled.unreliable]
    notes += sorted({c.length_controlled.note for c in summary.candidates
                     if c.length_controlled and c.length_controlled.note})
    return notes
