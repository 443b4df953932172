"""One candidate against one opponent: win rate, how sure it is, and whether it beats parity.

Ties count as half a win. The unit of evidence is the prompt (its games share the answers),
so intervals and tests are over prompts. The score is hard (win 1, tie 0.5, loss 0) or soft
(the judge's P(candidate better)); see ``games.ScoreMode``.

**The test, its interval and the verdict agree by construction.** The verdict is read from
the *test interval*, the interval that inverts the test: it excludes 50% exactly when the
test's p-value is below ``1 - level`` (``decide``). The Wilson and bootstrap intervals are
shown as well, as estimates of the win rate's uncertainty, but no verdict is read from them.

- **Hard score: the sign test** (exact two-sided binomial against 50%). Tie rule: a prompt
  whose score is above 0.5 is a win, below 0.5 a loss, exactly 0.5 (a tie, or one win and
  one loss across the two orders) is dropped, as in the classic sign test; ``p =
  binomtest(wins, wins + losses, 0.5)``. Its interval is the Clopper-Pearson interval of the
  decided prompts' win share ``q``, put on the win-rate scale with the tied prompts held at
  their observed count: ``(ties / 2 + q * decided) / prompts`` (``sign_interval``); at
  ``q = 0.5`` this is exactly 50%, and under the symmetric null the two-sided binomial
  p-value is twice the smaller tail, which is what Clopper-Pearson inverts.
- **Soft score: the one-sample t-test** of the per-prompt soft scores against 0.5, and its
  interval ``mean ± t(n-1) * SE``.
- **Standard error** ``SE = sd / sqrt(n)`` of the per-prompt scores (sample sd), the figure
  leaderboards publish beside a win rate.
- **Wilson interval** on the prompt-level win rate: the textbook Wilson score interval on
  (wins, prompts) for plain wins and losses; with tied, split or soft prompts ``n`` is the
  effective number of prompts ``n * p(1-p) / variance`` (``intervals.wilson_scores``).
- **Bootstrap interval**: percentile interval over prompts resampled with replacement.
- **An undecided judge**: when the judge split or tied most prompts (hard per-prompt score
  exactly 0.5 on more than ``UNDECIDED_SHARE`` of them), every interval is tight around 50%
  because the judge said nothing, not because the models are close; ``decide`` says so.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats as sps

from evalharness.schema import Judgment
from evalharness.stats.games import (
    FloatArray,
    PairGames,
    PromptScores,
    ScoreMode,
    pair_games,
    prompt_scores,
)
from evalharness.stats.intervals import (
    NAN_INTERVAL,
    Interval,
    bootstrap_weights,
    percentile_interval,
    wilson_scores,
)

UNDECIDED_SHARE = 0.5
"""A judge that split or tied more than this share of prompts is flagged as undecided."""

Test = Literal["sign", "t"]


@dataclass(frozen=True)
class HeadToHead:
    """A candidate's record against an opponent, with intervals and a test against parity."""

    candidate: str
    """The model scored."""
    opponent: str
    """The model it played (the baseline)."""
    n_prompts: int
    """Prompts with at least one valid game (the n of the win rate)."""
    n_games: int
    """Valid games (judgments with a verdict)."""
    n_invalid: int
    """Judgments without a readable verdict: counted here, never scored as ties."""
    n_excluded_prompts: int
    """Prompts whose every game was invalid (left out of the win rate)."""
    n_single_game_prompts: int
    """Prompts scored on one game because the other order was invalid."""
    wins: int
    """Games the candidate won."""
    ties: int
    """Games judged a tie."""
    losses: int
    """Games the candidate lost."""
    prompt_wins: int
    """Prompts with score above 0.5 (the sign test's wins)."""
    prompt_ties: int
    """Prompts with score exactly 0.5 (dropped by the sign test)."""
    prompt_losses: int
    """Prompts with score below 0.5."""
    win_rate: float
    """Mean prompt score: the share of the candidate's wins, ties as half."""
    wilson: Interval
    """Wilson score interval of the win rate (effective-n form when prompts tie or split)."""
    bootstrap: Interval
    """Percentile bootstrap interval of the win rate over prompts."""
    p_value: float
    """Two-sided test against a 50% win rate: the sign test (hard) or the t-test (soft)."""
    soft_win_rate: float | None
    """Mean of P(candidate better) from judge log-probs, over prompts that have it."""
    n_soft_prompts: int
    """Prompts behind ``soft_win_rate``."""
    confidence: float
    """Confidence level of the intervals."""
    score: ScoreMode = "hard"
    """Which score ``win_rate``, the intervals and the test use."""
    test: Test = "sign"
    """The test behind ``p_value`` and ``test_interval``: ``sign`` (hard) or ``t`` (soft)."""
    test_interval: Interval = NAN_INTERVAL
    """The interval that inverts the test at ``confidence``: excludes 50% exactly when
    ``p_value < 1 - confidence``."""
    standard_error: float = float("nan")
    """``sd / sqrt(n)`` of the per-prompt scores (sample sd; NaN below 2 prompts)."""
    n_both_orders: int = 0
    """Prompts with a valid game in each order (position preference cancelled)."""
    n_one_order: int = 0
    """Prompts judged (validly) in one order only."""
    undecided_share: float = float("nan")
    """Share of prompts the judge split or tied (hard prompt score exactly 0.5)."""

    @property
    def undecided(self) -> bool:
        """Whether the judge split or tied most prompts (see ``UNDECIDED_SHARE``)."""
        return bool(self.undecided_share > UNDECIDED_SHARE)

    @property
    def significant(self) -> bool:
        """Whether the sign test rejects parity at ``1 - confidence``."""
        return self.p_value < 1.0 - self.confidence


def sign_test(wins: int, losses: int) -> float:
    """Exact two-sided binomial test of ``wins`` out of ``wins + losses`` against 50%.

    >>> round(sign_test(31, 19), 4)
    0.1189
    >>> sign_test(0, 0)
    1.0
    """
    if wins + losses == 0:
        return 1.0
    return float(sps.binomtest(wins, wins + losses, 0.5).pvalue)


def sign_interval(wins: int, ties: int, losses: int, confidence: float = 0.95) -> Interval:
    """The sign test's interval on the win-rate scale (ties as half).

    Clopper-Pearson ``[q_lo, q_hi]`` for ``wins`` of ``wins + losses``, mapped through
    ``(ties / 2 + q * decided) / prompts``. By hand for 31 wins, 19 losses, no ties:
    Clopper-Pearson at 95% is [0.4717, 0.7535] (``beta.ppf(0.025, 31, 20)``,
    ``beta.ppf(0.975, 32, 19)``); with 10 more tied prompts it becomes
    ``(5 + 50 q) / 60`` = [0.4765, 0.7112].

    >>> [round(v, 4) for v in sign_interval(31, 0, 19)]
    [0.4717, 0.7535]
    >>> [round(v, 4) for v in sign_interval(31, 10, 19)]
    [0.4765, 0.7112]
    """
    decided = wins + losses
    n = decided + ties
    if n == 0:
        return NAN_INTERVAL
    if decided == 0:
        return Interval(0.5, 0.5)  # every prompt split: see ``undecided``
    ci = sps.binomtest(wins, decided, 0.5).proportion_ci(confidence, method="exact")
    return Interval((ties / 2 + ci.low * decided) / n, (ties / 2 + ci.high * decided) / n)


def standard_error(scores: FloatArray) -> float:
    """``sd / sqrt(n)`` with the sample sd (``ddof=1``), as leaderboards publish it.

    >>> round(standard_error(np.array([1.0, 0.5, 0.0, 1.0])), 6)
    0.239357
    """
    if scores.size < 2:
        return float("nan")
    return float(scores.std(ddof=1) / np.sqrt(scores.size))


def t_test(scores: FloatArray, confidence: float = 0.95) -> tuple[float, Interval]:
    """One-sample two-sided t-test of the mean score against 0.5, and its interval.

    With no spread at all (every prompt scored the same) the t statistic is undefined: p is
    1 at exactly 0.5 and 0 elsewhere, and the interval is that one value.
    """
    n = scores.size
    if n < 2:
        return 1.0, NAN_INTERVAL
    mean, se = float(scores.mean()), standard_error(scores)
    if se == 0.0:
        return (1.0 if mean == 0.5 else 0.0), Interval(mean, mean)
    p = float(sps.ttest_1samp(scores, 0.5).pvalue)
    half = float(sps.t.ppf(0.5 + confidence / 2, n - 1)) * se
    return p, Interval(mean - half, mean + half)


def interval_at(h: HeadToHead, scores: PromptScores, confidence: float) -> Interval:
    """The interval that inverts ``h``'s test at level ``confidence`` (for a Holm level)."""
    if h.test == "t":
        return t_test(scores.score, confidence)[1]
    return sign_interval(h.prompt_wins, h.prompt_ties, h.prompt_losses, confidence)


def decide(h: HeadToHead, interval: Interval) -> str:
    """The verdict, read from the test interval (the one place a verdict is made).

    ``better``/``worse`` when the interval lies above/below 50%, else ``cannot tell``; a judge
    that split or tied most prompts gets that said instead of a verdict it did not give.
    """
    if h.n_prompts == 0:
        return "no valid games"
    if h.undecided:
        return (f"judge split or tied {100 * h.undecided_share:.0f}% of prompts: no evidence "
                "either way")
    if interval.low > 0.5:
        return "better"
    if interval.high < 0.5:
        return "worse"
    return "cannot tell"


def head_to_head_from_scores(
    scores: PromptScores,
    games: PairGames,
    *,
    seed: int = 0,
    n_boot: int = 2000,
    confidence: float = 0.95,
) -> HeadToHead:
    """``head_to_head`` from already-collected games and their prompt scores."""
    s = scores.score
    n = scores.n_prompts
    valid = games.valid
    game_scores = games.hard_score[valid]  # W/T/L count the judge's labels
    if n:
        win_rate = float(s.mean())
        weights = bootstrap_weights(n, n_boot, seed)
        boot = percentile_interval((weights @ s) / n, confidence)
    else:
        win_rate, boot = float("nan"), NAN_INTERVAL
    p_wins = int((s > 0.5).sum())
    p_losses = int((s < 0.5).sum())
    has_soft = ~np.isnan(scores.soft)
    p_ties = n - p_wins - p_losses
    if games.mode == "soft":
        test: Test = "t"
        p_value, interval = t_test(s, confidence)
    else:
        test = "sign"
        p_value = sign_test(p_wins, p_losses)
        interval = sign_interval(p_wins, p_ties, p_losses, confidence)
    n_both = int(scores.both_orders.sum()) if scores.both_orders is not None else 0
    return HeadToHead(
        candidate=scores.candidate,
        opponent=scores.opponent,
        n_prompts=n,
        n_games=int(valid.sum()),
        n_invalid=games.n_invalid,
        n_excluded_prompts=len(scores.excluded),
        n_single_game_prompts=int((scores.n_games == 1).sum()),
        wins=int((game_scores == 1.0).sum()),
        ties=int((game_scores == 0.5).sum()),
        losses=int((game_scores == 0.0).sum()),
        prompt_wins=p_wins,
        prompt_ties=p_ties,
        prompt_losses=p_losses,
        win_rate=win_rate,
        wilson=wilson_scores(s, confidence),
        bootstrap=boot,
        p_value=p_value,
        soft_win_rate=float(scores.soft[has_soft].mean()) if has_soft.any() else None,
        n_soft_prompts=int(has_soft.sum()),
        confidence=confidence,
        score=games.mode,
        test=test,
        test_interval=interval,
        standard_error=standard_error(s),
        n_both_orders=n_both,
        n_one_order=n - n_both,
        undecided_share=float((scores.hard_score == 0.5).mean()) if n else float("nan"),
    )


def head_to_head(
    judgments: Iterable[Judgment],
    candidate: str,
    baseline: str,
    *,
    seed: int = 0,
    n_boot: int = 2000,
    confidence: float = 0.95,
    score: ScoreMode = "hard",
) -> HeadToHead:
    """Score ``candidate`` against ``baseline`` from their judgments (either or both orders).

    Args:
        judgments: any judgments; only games between the two models are used.
        candidate: the model whose win rate is reported.
        baseline: the model it is compared with.
        seed: seed of the bootstrap (same seed, same interval).
        n_boot: bootstrap rounds.
        confidence: level of the intervals.
        score: ``hard`` (winner labels) or ``soft`` (``weight_a``); see ``games.ScoreMode``.

    >>> from evalharness.schema import Judgment
    >>> games = [Judgment(key=f"{i}{o}", prompt_id=str(i), judge="j",
    ...                   first="ft" if o else "base", second="base" if o else "ft",
    ...                   verdict="x", winner=("A" if o else "B") if i < 31 else
    ...                   ("B" if o else "A")) for i in range(50) for o in (0, 1)]
    >>> h = head_to_head(games, "ft", "base")
    >>> h.win_rate, round(h.wilson.low, 3), round(h.wilson.high, 3), round(h.p_value, 2)
    (0.62, 0.482, 0.741, 0.12)
    """
    games = pair_games(judgments, candidate, baseline, score)
    return head_to_head_from_scores(
        prompt_scores(games), games, seed=seed, n_boot=n_boot, confidence=confidence
    )
