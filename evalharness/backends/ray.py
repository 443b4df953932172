"""Generation and perplexity on a Ray cluster: one engine actor per GPU (``--backend ray``).

Each actor runs one of evalharness's own in-process backends (``--ray-engine vllm``, the
default, or ``hf``), so the LoRA plan, the CPU-build workarounds, seeds and token counts are
those of a run on one machine, and so are the records: they are keyed by the actor's engine
(``vllm:default``), and a Ray run reuses a local run's answers and the other way round. The
actors form a pool (``evalharness.backends.pool``): each adapter is served by one actor, the
baseline by all of them, and an actor that dies has its unfinished requests moved to the
others. Results stream back from the actors as each engine call finishes and are appended by
the pipeline on this machine, so a killed run resumes as any other.

Why not Ray Data's LLM processors: they run their own vLLM engine configuration and write
datasets, while this keeps one engine code path (and its known-bug workarounds) and hands each
record to the run directory as it finishes.

``ray.init(address=...)`` joins an existing cluster (``--ray-address``, else ``RAY_ADDRESS``);
with neither, a local instance is started for the run and shut down after it. Every node needs
evalharness and its engine's extra installed (the same environment as the driver), and the
paths of the base model and adapters must be readable there.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

from evalharness.backends.base import Backend, Generation, GenRequest, Scored, ScoreRequest
from evalharness.backends.options import BackendOptions
from evalharness.backends.pool import PoolBackend
from evalharness.errors import BackendLostError, UserError, require_module
from evalharness.schema import GenConfig, ModelSpec

log = logging.getLogger(__name__)


MakeEngine = Callable[[BackendOptions], Backend]
"""Makes the backend an actor runs (``registry.make_backend`` for the chosen engine, passed
in so this module does not import the registry that imports it)."""


class EngineActor:
    """Runs in a Ray worker: one in-process backend (made there, so its engine lives there)."""

    def __init__(self, make_engine: MakeEngine, options: BackendOptions) -> None:
        self.backend = make_engine(options)

    def prepare(self, models: Sequence[ModelSpec]) -> int:
        """Start the engine for ``models``; the worker's process id (for messages, tests)."""
        self.backend.prepare(models)
        return os.getpid()

    def generate(self, requests: Sequence[GenRequest], gen: GenConfig) -> Iterator[Generation]:
        """Answers as the engine yields them (a streaming actor method)."""
        yield from self.backend.generate(requests, gen)

    def score(self, requests: Sequence[ScoreRequest]) -> Iterator[Scored]:
        """Perplexity records as the engine yields them (a streaming actor method)."""
        yield from self.backend.score(requests)

    def close(self) -> None:
        """End the engine (its processes) before the actor goes."""
        self.backend.close()


class RayMember:
    """The driver's handle on one engine actor, shaped as a backend for the pool.

    The actor's engine is planned for *every* model of the run on its first ``prepare``, so an
    adapter moved to it after another actor died fits the engine it already has; vLLM loads an
    adapter's weights only when a request for it arrives, so each actor holds only the
    adapters routed to it.
    """

    def __init__(self, actor: Any, label: str, models: Sequence[ModelSpec]) -> None:
        self.name = "ray"
        self.actor = actor
        self.label = label
        self.models = list(models)
        self.pid: int | None = None
        self.busy = False
        """Whether a stream is under way (an actor runs one call at a time)."""
        self.why = ""
        """Why the actor died, as Ray says (its first line)."""

    def prepare(self, models: Sequence[ModelSpec]) -> None:
        if self.pid is not None:
            return
        try:
            self.pid = self._get(self.actor.prepare.remote(self.models))
        except BackendLostError:
            raise UserError(f"{self.label} could not start its engine ({self.why}). Fix: "
                            "check that every node has evalharness and its engine's extra "
                            "installed and can read the base model and adapter folders (Ray's "
                            "worker logs, e.g. /tmp/ray/session_latest/logs on the node, say "
                            "why).") from None

    def _get(self, ref: Any) -> Any:
        import ray

        try:
            return ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            raise self._lost(exc) from None
        except ray.exceptions.RayTaskError as exc:  # our own error inside the actor, as raised
            raise exc.cause if isinstance(exc.cause, Exception) else exc from None

    def _lost(self, error: Exception) -> BackendLostError:
        first = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
        self.why = type(error).__name__ + (f": {first}" if first else "")
        return BackendLostError(f"{self.label} died ({self.why}); what finished is saved")

    def _stream(self, refs: Any) -> Iterator[Any]:
        import ray

        self.busy = True
        try:
            for ref in refs:  # the stream itself raises when the actor dies between results
                yield self._get(ref)
        except ray.exceptions.RayActorError as exc:
            raise self._lost(exc) from None
        finally:
            self.busy = False

    def generate(self, requests: Sequence[GenRequest], gen: GenConfig) -> Iterator[Generation]:
        refs = self.actor.generate.options(num_returns="streaming").remote(list(requests), gen)
        yield from self._stream(refs)

    def score(self, requests: Sequence[ScoreRequest]) -> Iterator[Scored]:
        yield from self._stream(self.actor.score.options(num_returns="streaming").remote(
            list(requests)))

    def close(self) -> None:
        """End the engine, then the actor. An actor still in a stream (the run stopped on
        another member's error, or Ctrl-C) would take the close call only after its batch, so
        it is killed at once; its engine processes go with the worker's process group."""
        import ray

        if not self.busy:
            with contextlib.suppress(ray.exceptions.RayError, TimeoutError):
                ray.get(self.actor.close.remote(), timeout=60)
        ray.kill(self.actor)


class RayBackend:
    """Engine actors on a Ray cluster, as a pool.

    Args:
        options: ``ray_address`` and ``ray_actors`` pick the cluster and the number of
            actors; the rest goes to each actor's engine.
        make_engine: makes the engine each actor runs (``ray_engine``'s backend).
    """

    name = "ray"

    def __init__(self, options: BackendOptions, make_engine: MakeEngine) -> None:
        require_module("ray", "ray", "The ray backend")
        self.options = options
        self.make_engine = make_engine
        self._pool: PoolBackend | None = None
        self._started_ray = False
        self.notify: Callable[[str], None] = log.warning

    def prepare(self, models: Sequence[ModelSpec]) -> None:
        """Join (or start) the cluster, start the actors and prepare them all at once."""
        if self._pool is not None:
            return
        import ray

        if not ray.is_initialized():
            self._connect(ray)
        gpus = int(ray.cluster_resources().get("GPU", 0))
        count = self.options.ray_actors or max(gpus, 1)
        resources = {"num_gpus": 1} if gpus else {"num_cpus": 1}
        self._check_room(ray, count, gpus)
        # The engine log goes to the run directory only where it is this machine's disk.
        engine_options = replace(self.options, log_dir=self.options.log_dir
                                 if self._started_ray else None)
        actor_class = ray.remote(**resources)(EngineActor)
        members = [RayMember(actor_class.remote(self.make_engine, engine_options),
                             f"Ray actor {i + 1} of {count}", models) for i in range(count)]
        self._pool = PoolBackend("ray", members, [m.label for m in members],
                                 notify=self._tell)
        self._pool.prepare(models)

    def _tell(self, message: str) -> None:
        self.notify(message)  # looked up per message: the pipeline sets it after prepare

    def _connect(self, ray: Any) -> None:
        address = self.options.ray_address or os.environ.get("RAY_ADDRESS")
        try:
            # "local": a fresh instance for this run, even where `ray start` left one running
            # (Ray's own default would join it); `--ray-address auto` joins that one.
            ray.init(address=address or "local", include_dashboard=False,
                     log_to_driver=False, logging_level=logging.WARNING,
                     configure_logging=False)
        except (ConnectionError, ray.exceptions.RaySystemError, ValueError) as exc:
            raise UserError(f"cannot join the Ray cluster at {address}: {exc}. Fix: check "
                            "the address (ray://HOST:10001 for a remote client, HOST:6379 on "
                            "a node) and that the cluster is up (ray status).") from None
        self._started_ray = address is None

    def _check_room(self, ray: Any, count: int, gpus: int) -> None:
        """Refuse a request for more actors than the cluster has free (they would wait for
        resources, silently, until others' work ends)."""
        unit = "GPU" if gpus else "CPU"
        total = int(ray.cluster_resources().get(unit, 0))
        free = int(ray.available_resources().get(unit, 0))
        if count > free:
            raise UserError(f"--ray-actors {count} needs {count} {unit}s, and the Ray cluster "
                            f"has {free} free of {total}. Fix: lower --ray-actors, wait for "
                            "the cluster's other work, or add nodes.")

    def assignments(self) -> Sequence[tuple[Any, Sequence[ModelSpec]]]:
        """Each actor with the models it serves (the serving self-check's unit)."""
        assert self._pool is not None
        return self._pool.assignments()

    @property
    def recheck(self) -> Callable[[Any, Sequence[ModelSpec]], object] | None:
        """The pool's check of an actor that adapters moved to (see ``PoolBackend``)."""
        return self._pool.recheck if self._pool is not None else None

    @recheck.setter
    def recheck(self, check: Callable[[Any, Sequence[ModelSpec]], object] | None) -> None:
        assert self._pool is not None, "set after prepare"
        self._pool.recheck = check

    def generate(self, requests: Sequence[GenRequest], gen: GenConfig) -> Iterator[Generation]:
        assert self._pool is not None
        return self._pool.generate(requests, gen)

    def score(self, requests: Sequence[ScoreRequest]) -> Iterator[Scored]:
        assert self._pool is not None
        return self._pool.score(requests)

    def close(self) -> None:
        """End every actor's engine, then the local instance if this run started it."""
        import ray

        try:
            if self._pool is not None:
                self._pool.close()
        finally:
            self._pool = None
            if self._started_ray and ray.is_initialized():
                ray.shutdown()
