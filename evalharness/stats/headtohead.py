"""One candidate against one opponent: win rate, how sure it is, and whether it beats parity.

Ties count as half a win. The unit of evidence is the prompt (its games share the answers),
so intervals and tests are over prompts:

- **Wilson interval** on the prompt-level win rate. When every prompt is a plain win or
  loss it is the textbook Wilson score interval on (wins, prompts). Tied and split prompts
  vary less than decided ones, so ``n`` is replaced by the effective number of prompts
  ``n * p(1-p) / variance of the prompt scores`` (see ``intervals.wilson_scores``); the
  interval then keeps its coverage instead of growing too wide.
- **Bootstrap interval**: percentile interval of the win rate over prompts resampled with
  replacement, seeded.
- **Sign test** (exact two-sided binomial against 50%). Tie rule: a prompt whose score is
  above 0.5 is a win, below 0.5 a loss, exactly 0.5 (a tie, or one win and one loss across
  the two orders) is dropped, as in the classic sign test; ``p = binomtest(wins, wins +
  losses, 0.5)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from evalharness.schema import Judgment
from evalharness.stats.games import PairGames, PromptScores, pair_games, prompt_scores
from evalharness.stats.intervals import (
    NAN_INTERVAL,
    Interval,
    bootstrap_weights,
    percentile_interval,
    wilson_scores,
)


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
    """Exact two-sided sign test against a 50% win rate (tie rule in the module doc)."""
    soft_win_rate: float | None
    """Mean of P(candidate better) from judge log-probs, over prompts that have it."""
    n_soft_prompts: int
    """Prompts behind ``soft_win_rate``."""
    confidence: float
    """Confidence level of both intervals."""

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
    game_scores = games.score[valid]
    if n:
        win_rate = float(s.mean())
        weights = bootstrap_weights(n, n_boot, seed)
        boot = percentile_interval((weights @ s) / n, confidence)
    else:
        win_rate, boot = float("nan"), NAN_INTERVAL
    p_wins = int((s > 0.5).sum())
    p_losses = int((s < 0.5).sum())
    has_soft = ~np.isnan(scores.soft)
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
        prompt_ties=n - p_wins - p_losses,
        prompt_losses=p_losses,
        win_rate=win_rate,
        wilson=wilson_scores(s, confidence),
        bootstrap=boot,
        p_value=sign_test(p_wins, p_losses),
        soft_win_rate=float(scores.soft[has_soft].mean()) if has_soft.any() else None,
        n_soft_prompts=int(has_soft.sum()),
        confidence=confidence,
    )


def head_to_head(
    judgments: Iterable[Judgment],
    candidate: str,
    baseline: str,
    *,
    seed: int = 0,
    n_boot: int = 2000,
    confidence: float = 0.95,
) -> HeadToHead:
    """Score ``candidate`` against ``baseline`` from their judgments (both orders).

    Args:
        judgments: any judgments; only games between the two models are used.
        candidate: the model whose win rate is reported.
        baseline: the model it is compared with.
        seed: seed of the bootstrap (same seed, same interval).
        n_boot: bootstrap rounds.
        confidence: level of the intervals.

    >>> from evalharness.schema import Judgment
    >>> games = [Judgment(key=f"{i}{o}", prompt_id=str(i), judge="j",
    ...                   first="ft" if o else "base", second="base" if o else "ft",
    ...                   verdict="x", winner=("A" if o else "B") if i < 31 else
    ...                   ("B" if o else "A")) for i in range(50) for o in (0, 1)]
    >>> h = head_to_head(games, "ft", "base")
    >>> h.win_rate, round(h.wilson.low, 3), round(h.wilson.high, 3), round(h.p_value, 2)
    (0.62, 0.482, 0.741, 0.12)
    """
    games = pair_games(judgments, candidate, baseline)
    return head_to_head_from_scores(
        prompt_scores(games), games, seed=seed, n_boot=n_boot, confidence=confidence
    )
