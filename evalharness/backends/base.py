"""The backend protocol: what the pipeline asks of any engine that runs models.

A backend takes a list of requests, each naming a model and a prompt (or a text to score),
and yields results as they finish, so the pipeline can append each one to disk at once. How
requests are batched (per model for transformers, all together for vLLM) is the backend's
business.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from evalharness.schema import GenConfig, Message, ModelSpec, Prompt


@dataclass(frozen=True)
class GenRequest:
    """Generate ``model``'s answer to ``prompt``."""

    model: ModelSpec
    prompt: Prompt
    key: str
    """The answer's content key (carried through so results map back without lookups)."""


@dataclass(frozen=True)
class Generation:
    """A finished answer."""

    request: GenRequest
    text: str
    n_tokens: int
    finish_reason: Literal["stop", "length"]
    seconds: float


@dataclass(frozen=True)
class ScoreRequest:
    """Score ``text`` under ``model``: after ``context`` (a chat) or alone (plain text)."""

    model: ModelSpec
    example_id: str
    text: str
    context: tuple[Message, ...] | None
    key: str


@dataclass(frozen=True)
class Scored:
    """Per-token negative log-likelihoods (natural log) of the scored tokens."""

    request: ScoreRequest
    token_nlls: tuple[float, ...]
    window: int | None = None
    """Tokens one forward pass read when the text was longer than the model's context and was
    scored in lm-eval's rolling windows (the stride equals it); ``None``: one pass."""


class Backend(Protocol):
    """An engine that generates answers and scores text for the baseline and adapters."""

    name: str
    """Short name recorded in the manifest (``hf``, ``vllm``, ``openai``, ``fake``)."""

    def prepare(self, models: Sequence[ModelSpec]) -> None:
        """Load what ``models`` need (base model once, every adapter); fail fast."""

    def generate(self, requests: Sequence[GenRequest], gen: GenConfig) -> Iterator[Generation]:
        """Yield one ``Generation`` per request, in any order, as each finishes."""
        ...

    def score(self, requests: Sequence[ScoreRequest]) -> Iterator[Scored]:
        """Yield one ``Scored`` per request, in any order, as each finishes."""
        ...

    def close(self) -> None:
        """Release models and processes."""


@runtime_checkable
class Notifying(Protocol):
    """A backend with something to tell the user mid-stage (a pool that lost a member); the
    pipeline points ``notify`` at the stage's progress display."""

    notify: Callable[[str], None]


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut ``text`` at the first stop string; say whether one was found.

    >>> cut_at_stop("Answer. ###more", ["###"])
    ('Answer. ', True)
    >>> cut_at_stop("Answer.", [])
    ('Answer.', False)
    """
    positions = [text.find(s) for s in stop if s and s in text]
    if not positions:
        return text, False
    return text[: min(positions)], True


def adapter_name(model: ModelSpec) -> str:
    """The name an adapter is loaded under: its content hash.

    A retrained adapter at the same path gets a new name, so no engine or server can serve
    it from a stale cache.
    """
    if model.adapter_sha256 is None:
        raise ValueError(f"{model.name} is not an adapter")
    return "lora-" + model.adapter_sha256[:16]
