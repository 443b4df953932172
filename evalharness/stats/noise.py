"""The judge's noise floor: how often it repeats itself, and how much win rate its noise moves.

``evalharness judge RUN --repeats K`` asks a sample of already-judged games again, K times,
each time changing what should not matter (the fence ids around the answers; a sampling
judge also gets a new seed). Repeat k is stored as the judge ``<judge>#k`` (``repeat_judge``),
so the run's statistics, which read the run's own judge, never count a game twice.

From those repeats ``noise_floor`` measures:

- **self-consistency**: the share of repeated verdicts with the same hard label (A, B, tie)
  as the original. A judge that flips 1 game in 10 when only the fence ids change has 90%.
- **per-prompt score variance**: a prompt's score is the mean of its two games (candidate's
  win 1, tie 0.5, loss 0); across the original and the K repeats it varies only by the
  judge's noise. ``prompt_variance`` is the mean over the sampled prompts of that sample
  variance (``ddof=1``).
- **what that noise does to a win rate**: a win rate is the mean of ``n`` prompt scores
  whose noises are independent, so its standard deviation from judge noise alone is
  ``sqrt(prompt_variance / n)``. A candidate's win rate can move ``1.96 sd`` (95%) with
  nothing changed but the judge's luck, and the difference of two candidates' win rates
  ``1.96 sd sqrt(2)``: differences inside that band the judge's own noise can explain.
  ``n`` is the smallest number of prompts in any candidate's win rate (the widest band).

Pure: judgments in, numbers out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from evalharness.rater_names import REPEAT_MARK
from evalharness.schema import Judgment
from evalharness.stats.current import current_judgments
from evalharness.stats.games import ScoreMode, hard_label, position_a_score, resolve_score

Z95 = 1.96
"""Two-sided 95% normal quantile."""

GameId = tuple[str, str, str]
"""(prompt_id, first, second): one game of one judge in one run."""


def repeat_judge(judge: str, number: int) -> str:
    """The judge name repeat ``number`` (from 1) of ``judge`` is stored under.

    >>> repeat_judge("pairwise-binary", 2)
    'pairwise-binary#2'
    """
    return f"{judge}{REPEAT_MARK}{number}"


def repeat_number(name: str, judge: str) -> int | None:
    """Which repeat of ``judge`` the judge ``name`` is (``None``: not one of its repeats).

    >>> repeat_number("pairwise-binary#2", "pairwise-binary"), repeat_number("x#1", "y")
    (2, None)
    """
    head, mark, tail = name.rpartition(REPEAT_MARK)
    if not mark or head != judge or not tail.isdigit() or int(tail) < 1:
        return None
    return int(tail)


@dataclass(frozen=True)
class NoiseFloor:
    """A judge's self-consistency and the win-rate noise it implies (module docstring)."""

    judge: str
    """The judge whose repeats were measured."""
    score: ScoreMode
    """Score of a game: ``hard`` (1, 0.5, 0) or ``soft`` (``weight_a``)."""
    repeats: int
    """Distinct repeats found (K)."""
    games: int
    """Original games (valid) asked again at least once."""
    compared: int
    """Valid repeated verdicts compared with their original."""
    same: int
    """Of those, verdicts with the original's hard label."""
    invalid_repeats: int
    """Repeated verdicts that could not be read (not compared, not scored)."""
    self_consistency: float | None
    """``same / compared``; ``None`` when nothing was compared."""
    prompts_sampled: int
    """(candidate, prompt) pairs scored in at least two replicates (original + repeats),
    both orders valid in each."""
    prompt_variance: float | None
    """Mean over those of the prompt score's sample variance across replicates."""
    prompts: int
    """Prompts in the smallest candidate's win rate against the baseline (``n``)."""
    win_rate_sd: float | None
    """Standard deviation of a win rate over ``n`` prompts from judge noise alone:
    ``sqrt(prompt_variance / n)``."""
    win_rate_band: float | None
    """``1.96 x win_rate_sd``: how far judge noise alone moves one win rate (95%)."""
    difference_band: float | None
    """``1.96 x win_rate_sd x sqrt(2)``: a difference between two candidates' win rates
    smaller than this the judge's noise can explain (95%)."""


def noise_floor(judgments: Sequence[Judgment], judge: str, baseline: str,
                score: ScoreMode | None = None) -> NoiseFloor:
    """Measure ``judge``'s noise floor from its games against ``baseline`` and its repeats.

    ``judgments`` is a run's whole judgments file: the originals are the judge's own current
    judgments (``current_judgments``), a repeat is a judgment of ``repeat_judge(judge, k)``
    on the same prompt with the same models in the same positions.

    A hand-worked example: one candidate ``x``, two prompts, both orders, one repeat. ``x``
    won all four original games; the repeat flipped one game of ``p2`` to a tie.
    Self-consistency 3/4. Prompt scores across (original, repeat): p1 (1, 1), variance 0;
    p2 (1, 0.75), variance 0.03125; mean 0.015625. Over n = 2 prompts the win rate's sd is
    sqrt(0.015625 / 2) = 0.0884, so one win rate moves 1.96 x 0.0884 = 0.173 and a
    difference of two candidates 0.173 x sqrt(2) = 0.245 by judge noise alone.

    >>> def game(judge, prompt, first, second, winner):
    ...     return Judgment(key=f"{judge}{prompt}{first}", prompt_id=prompt, judge=judge,
    ...                     first=first, second=second, verdict=winner, winner=winner)
    >>> games = [game("j", p, "x", "b", "A") for p in ("p1", "p2")]
    >>> games += [game("j", p, "b", "x", "B") for p in ("p1", "p2")]
    >>> games += [game("j#1", "p1", "x", "b", "A"), game("j#1", "p1", "b", "x", "B"),
    ...           game("j#1", "p2", "x", "b", "A"), game("j#1", "p2", "b", "x", "tie")]
    >>> floor = noise_floor(games, "j", "b")
    >>> floor.self_consistency, floor.prompt_variance, floor.prompts
    (0.75, 0.015625, 2)
    >>> round(floor.win_rate_sd, 4), round(floor.win_rate_band, 3), round(floor.difference_band, 3)
    (0.0884, 0.173, 0.245)
    """
    current = current_judgments(judgments)
    originals: dict[GameId, Judgment] = {}
    repeats: dict[int, dict[GameId, Judgment]] = {}
    for j in current:
        if baseline not in (j.first, j.second):
            continue
        number = repeat_number(j.judge, judge)
        into = originals if j.judge == judge else (
            repeats.setdefault(number, {}) if number is not None else None)
        if into is not None:
            into.setdefault((j.prompt_id, j.first, j.second), j)  # dedupe: the first counts
    valid = {g: j for g, j in originals.items() if j.valid}
    mode = resolve_score(valid.values(), score)

    asked: set[GameId] = set()
    same = compared = invalid = 0
    for by_game in repeats.values():
        for game, again in by_game.items():
            original = valid.get(game)
            if original is None:
                continue
            asked.add(game)
            if not again.valid:
                invalid += 1
                continue
            compared += 1
            same += hard_label(again) == hard_label(original)

    replicates = [valid] + [repeats[k] for k in sorted(repeats)]
    variances: list[float] = []
    for candidate, prompt in sorted({(_candidate(g, baseline), g[0]) for g in asked}):
        orders = ((prompt, candidate, baseline), (prompt, baseline, candidate))
        scores = [s for s in (_prompt_score(r, orders, candidate, mode) for r in replicates)
                  if s is not None]
        if len(scores) >= 2:
            variances.append(float(np.var(scores, ddof=1)))

    per_candidate: dict[str, set[str]] = {}
    for game in valid:
        per_candidate.setdefault(_candidate(game, baseline), set()).add(game[0])
    n = min((len(p) for p in per_candidate.values()), default=0)
    variance = float(np.mean(variances)) if variances else None
    sd = math.sqrt(variance / n) if variance is not None and n else None
    return NoiseFloor(
        judge=judge, score=mode, repeats=len(repeats), games=len(asked), compared=compared,
        same=same, invalid_repeats=invalid,
        self_consistency=same / compared if compared else None,
        prompts_sampled=len(variances), prompt_variance=variance, prompts=n,
        win_rate_sd=sd, win_rate_band=None if sd is None else Z95 * sd,
        difference_band=None if sd is None else Z95 * sd * math.sqrt(2.0),
    )


def _candidate(game: GameId, baseline: str) -> str:
    return game[2] if game[1] == baseline else game[1]


def _prompt_score(replicate: dict[GameId, Judgment], orders: tuple[GameId, GameId],
                  candidate: str, mode: ScoreMode) -> float | None:
    """The candidate's prompt score in one replicate: the mean of both orders' scores, or
    ``None`` unless both orders are there and valid (one order alone would mix the judge's
    position preference into its noise)."""
    scores = []
    for game in orders:
        record = replicate.get(game)
        a = None if record is None else position_a_score(record, mode)
        if a is None:
            return None
        scores.append(a if game[1] == candidate else 1.0 - a)
    return sum(scores) / len(scores)


def noise_lines(floor: NoiseFloor) -> list[str]:
    """The noise floor in plain sentences (the ``judge`` command and reports print these)."""
    if floor.self_consistency is None:
        return [f"noise floor of {floor.judge}: no repeated game could be compared with its "
                "original (none repeated, or every repeat unreadable)"]
    lines = [
        f"noise floor of {floor.judge}: {floor.repeats} repeat(s) of {floor.games} games; "
        f"self-consistency {floor.self_consistency:.1%} ({floor.same} of {floor.compared} "
        "repeated verdicts as the original"
        + (f"; {floor.invalid_repeats} unreadable" if floor.invalid_repeats else "") + ")"]
    if floor.prompt_variance is None or floor.win_rate_sd is None \
            or floor.win_rate_band is None or floor.difference_band is None:
        lines.append("per-prompt score variance: not measured (no prompt with both orders "
                     "valid in two replicates)")
        return lines
    lines += [
        f"per-prompt score variance across repeats: {floor.prompt_variance:.4f} "
        f"(mean over {floor.prompts_sampled} prompts)",
        f"judge noise alone moves a win rate over {floor.prompts} prompts by sd "
        f"{floor.win_rate_sd:.3f}: +-{floor.win_rate_band:.3f} (95%); a difference between "
        f"two candidates smaller than {floor.difference_band:.3f} the judge's own noise can "
        "explain",
    ]
    return lines
