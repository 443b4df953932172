"""The serving self-check: prove the engine serves each model as itself before trusting it.

Two failure modes exist in real serving stacks and neither raises an error on its own:

- **no-op adapter**: an adapter that changes nothing (peft's default init leaves ``lora_B`` at
  zero, or a load silently failed), so "adapter vs baseline" compares the base with itself;
- **base contamination**: base requests batched with LoRA requests get an adapter applied
  (vLLM's CPU path does this when every LoRA slot is in use), so the baseline is not the base.

The check scores a few probe texts with the baseline alone, then with the baseline and every
adapter in one batch, and compares per-token log-probs. It costs a few forward passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from evalharness.backends.base import Backend, ScoreRequest
from evalharness.errors import UserError
from evalharness.schema import ModelSpec

NOOP_TOLERANCE = 1e-6
"""An adapter whose per-token NLLs never differ from the base's by more than this is a no-op."""
CONTAMINATION_TOLERANCE = 1e-3
"""Batch composition may move fp32 log-probs by ~1e-6; an applied adapter moves them by far
more than this."""


class ServingCheckError(UserError):
    """The serving self-check found a model not served as itself."""


@dataclass(frozen=True)
class ServingCheck:
    """What the self-check measured."""

    adapter_effect: dict[str, float]
    """Per adapter: the largest per-token NLL difference from the baseline."""
    baseline_drift: float
    """Largest per-token NLL difference of the baseline alone vs batched with adapters."""

    @property
    def noop_adapters(self) -> list[str]:
        """Adapters that change nothing."""
        return [name for name, effect in self.adapter_effect.items() if effect <= NOOP_TOLERANCE]

    @property
    def contaminated(self) -> bool:
        """Whether batching with adapters changed the baseline."""
        return self.baseline_drift > CONTAMINATION_TOLERANCE

    def summary(self) -> str:
        """One line for the manifest and the terminal."""
        effects = ", ".join(f"{n} {e:.3g}" for n, e in self.adapter_effect.items())
        return (f"adapter effect (max |dNLL| vs baseline): {effects or 'no adapters'}; "
                f"baseline drift when batched with adapters: {self.baseline_drift:.3g}")


def _max_difference(a: Sequence[float], b: Sequence[float]) -> float:
    return max((abs(x - y) for x, y in zip(a, b, strict=True)), default=0.0)


def check_serving(backend: Backend, models: Sequence[ModelSpec], probes: Sequence[str]
                  ) -> ServingCheck:
    """Measure adapter effects and baseline drift on ``probes`` (plain texts).

    Raises:
        ServingCheckError: a no-op adapter or a contaminated baseline, with the fix.
    """
    adapters = [m for m in models if m.kind == "adapter"]
    base = next((m for m in models if m.kind == "base"), None)
    if not adapters or not probes:
        return ServingCheck({}, 0.0)
    if base is None:  # the check needs the base as reference, even when it is not a candidate
        base = ModelSpec(name="baseline", kind="base", base_model=adapters[0].base_model,
                         base_fingerprint=adapters[0].base_fingerprint)

    def requests(model: ModelSpec) -> list[ScoreRequest]:
        return [ScoreRequest(model=model, example_id=f"probe-{i}", text=text, context=None,
                             key=f"{model.key}-probe-{i}") for i, text in enumerate(probes)]

    alone = {s.request.example_id: s.token_nlls for s in backend.score(requests(base))}
    mixed: dict[tuple[str, str], tuple[float, ...]] = {}
    batch = [r for model in (base, *adapters) for r in requests(model)]
    for scored in backend.score(batch):
        mixed[(scored.request.model.key, scored.request.example_id)] = scored.token_nlls
    drift = max(_max_difference(alone[i], mixed[(base.key, i)]) for i in alone)
    effect = {a.name: max(_max_difference(alone[i], mixed[(a.key, i)]) for i in alone)
              for a in adapters}
    result = ServingCheck(effect, drift)
    problems = []
    if result.contaminated:
        problems.append(
            f"the baseline's log-probs change by up to {drift:.3g} when batched with adapter "
            "requests: the engine applies an adapter to base requests (a known vLLM CPU-path "
            "bug when every LoRA slot is in use). Fix: leave --max-loras unset (evalharness "
            "keeps a slot free) or raise it to the number of adapters + 1."
        )
    for name in result.noop_adapters:
        problems.append(
            f"adapter {name} changes nothing (max |dNLL| {effect[name]:.3g} on "
            f"{len(probes)} probe texts): its lora_B weights are zero (peft's default "
            "initialisation, i.e. never trained) or it did not load. Fix: check the adapter "
            "was trained and saved properly."
        )
    if problems:
        raise ServingCheckError("serving self-check failed; no leaderboard was built:\n  "
                                + "\n  ".join(problems)
                                + "\n(--no-verify skips this check at your own risk)")
    return result
