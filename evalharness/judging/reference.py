"""The reference judge: offline and deterministic, it prefers the answer closer to the
prompt's reference answer (token F1 or ROUGE-L), with a tie margin.

It is a cheap proxy, not a substitute for an LLM judge: overlap with one reference rewards
answers that reuse its words and punishes correct answers phrased differently.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from evalharness.judging.base import Outcome
from evalharness.judging.config import JudgeConfig
from evalharness.judging.templates import GameText
from evalharness.schema import Winner

_WORD = re.compile(r"\w+", re.UNICODE)


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens.

    >>> tokens("Paris, France's capital.")
    ['paris', 'france', 's', 'capital']
    """
    return _WORD.findall(text.lower())


def token_f1(candidate: Sequence[str], reference: Sequence[str]) -> float:
    """F1 of the multiset overlap between two token lists (SQuAD style).

    >>> round(token_f1(tokens("the cat sat"), tokens("the cat sat down")), 4)
    0.8571
    >>> token_f1([], ["x"])
    0.0
    """
    common = sum((Counter(candidate) & Counter(reference)).values())
    if common == 0:
        return 0.0
    precision = common / len(candidate)
    recall = common / len(reference)
    return 2 * precision * recall / (precision + recall)


def rouge_l(candidate: Sequence[str], reference: Sequence[str]) -> float:
    """ROUGE-L F1: the longest common subsequence's F1.

    >>> round(rouge_l(tokens("a b c d"), tokens("a c d e")), 4)
    0.75
    >>> rouge_l(["x"], [])
    0.0
    """
    if not candidate or not reference:
        return 0.0
    previous = [0] * (len(reference) + 1)
    for token in candidate:
        current = [0]
        for index, other in enumerate(reference, start=1):
            current.append(previous[index - 1] + 1 if token == other
                           else max(previous[index], current[index - 1]))
        previous = current
    lcs = previous[-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(candidate), lcs / len(reference)
    return 2 * precision * recall / (precision + recall)


def score(text: str, reference: str, metric: str) -> float:
    """Similarity of ``text`` to ``reference`` under ``metric`` (``token_f1``/``rouge_l``)."""
    function = rouge_l if metric == "rouge_l" else token_f1
    return function(tokens(text), tokens(reference))


def compare(a: str, b: str, reference: str, metric: str = "token_f1",
            tie_margin: float = 0.02) -> Outcome:
    """The verdict for one game: the closer answer wins unless the scores are within margin.

    >>> compare("Paris is the capital.", "Lyon.", "The capital is Paris.").verdict
    'A'
    >>> compare("Paris.", "Paris!", "Paris").winner
    'tie'
    """
    score_a, score_b = score(a, reference, metric), score(b, reference, metric)
    winner: Winner = "tie"
    if abs(score_a - score_b) > tie_margin:
        winner = "A" if score_a > score_b else "B"
    raw = f"{metric}: A={score_a:.4f} B={score_b:.4f} (tie within {tie_margin:g})"
    return Outcome(winner, winner, raw=raw, attempts=0)


class ReferenceJudge:
    """The ``Judge`` for ``kind: reference`` configs; makes no calls."""

    def __init__(self, config: JudgeConfig) -> None:
        self.config = config

    async def judge(self, game: GameText) -> Outcome:
        """Compare both answers with the game's reference (invalid when there is none)."""
        if game.reference is None:
            return Outcome(None, None, attempts=0, error="the prompt has no reference answer")
        return compare(game.answer_a, game.answer_b, game.reference, self.config.metric,
                       self.config.tie_margin)

    async def aclose(self) -> None:
        """Nothing to release."""
