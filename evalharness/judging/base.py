"""What every judge is: an async function from the texts of one game to an ``Outcome``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from evalharness.judging.config import JudgeConfig
from evalharness.judging.templates import GameText
from evalharness.schema import TokenUsage, Winner


@dataclass(frozen=True)
class Outcome:
    """What a judge said about one game, in positions A and B only."""

    verdict: str | None
    """The label on the judge's scale; ``None`` when no verdict could be read."""
    winner: Winner | None
    """``A``, ``B``, ``tie``; ``None`` for an invalid judgment (never a tie)."""
    weight_a: float | None = None
    """P(A better) from log-probs, when the judge reads them."""
    raw: str = ""
    """The judge's text (of the last attempt)."""
    usage: TokenUsage = field(default_factory=TokenUsage)
    """Tokens of all attempts."""
    attempts: int = 1
    """Calls made (0 for offline judges)."""
    error: str | None = None
    """Why no verdict could be read."""
    rejected: str | None = None
    """The endpoint refused the request (an HTTP 4xx other than 429, with its message): no
    answer from the judge, so the game is not stored and a rerun judges it again."""


class Judge(Protocol):
    """A judge: ``JudgeConfig`` + an async ``judge`` of one game (an offline fake fits too)."""

    config: JudgeConfig

    async def judge(self, game: GameText) -> Outcome:
        """Judge one game: answer A vs answer B for one question."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
