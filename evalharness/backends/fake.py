"""A scripted backend for tests of the pipeline: no model, deterministic, counts its calls.

Answers are ``"<model> answer to <prompt id>"`` (or a script's text); each token's NLL is
derived from a hash of the model and text, so different models score differently.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from evalharness.backends.base import Generation, GenRequest, Scored, ScoreRequest, cut_at_stop
from evalharness.keys import content_key
from evalharness.schema import GenConfig, ModelSpec


def _default_answer(request: GenRequest) -> str:
    return f"{request.model.name} answer to {request.prompt.id}"


@dataclass
class FakeBackend:
    """Scripted answers and scores; ``calls`` records how many requests each method served."""

    answer: Callable[[GenRequest], str] = _default_answer
    name: str = "fake"
    calls: dict[str, int] = field(default_factory=lambda: {"generate": 0, "score": 0})
    prepared: list[str] = field(default_factory=list)

    def prepare(self, models: Sequence[ModelSpec]) -> None:
        """Remember which models were prepared."""
        self.prepared.extend(m.name for m in models)

    def generate(self, requests: Sequence[GenRequest], gen: GenConfig) -> Iterator[Generation]:
        """One scripted answer per request; words count as tokens."""
        for request in requests:
            self.calls["generate"] += 1
            text, stopped = cut_at_stop(self.answer(request), gen.stop)
            words = text.split()[: gen.max_new_tokens]
            cut = not stopped and len(text.split()) > gen.max_new_tokens
            yield Generation(request, " ".join(words), len(words), "length" if cut else "stop",
                             0.0)

    def score(self, requests: Sequence[ScoreRequest]) -> Iterator[Scored]:
        """Per-word NLLs in [0.5, 1.5) from a hash of model and word."""
        for request in requests:
            self.calls["score"] += 1
            nlls = tuple(
                0.5 + int(content_key([request.model.key, w])[:8], 16) / 16**8
                for w in request.text.split()
            )
            yield Scored(request, nlls)

    def close(self) -> None:
        """Nothing to release."""
