"""Spread a run's requests over several backends, its *members*: OpenAI-compatible servers
(``--endpoint`` repeated) or engine actors on a Ray cluster (``--backend ray``).

- **Affinity.** Each adapter is served by one member only (its *home*), so it is loaded once
  and its requests share that member's batches; each adapter goes to the member with the fewest
  adapters so far (every adapter answers the same prompts, so adapters measure work). Requests
  of the base model (and of models every member serves) go to whichever member has the least
  work, so they fill the gaps.
- **Failover.** A member that is lost (its server stops answering, its actor dies: the member
  raises ``BackendLostError``) has its unfinished requests moved to the members left; its
  adapters get new homes the same way and are loaded there first. A result the lost member
  still delivers counts once. With no member left, the last ``BackendLostError`` stops the run
  (what finished is saved).
- **Same results.** Requests carry their content keys and answers are greedy or seeded per
  answer (``sampling_seed``), so which member computed a record does not change it, and the
  keys are those of one member: a run over two endpoints resumes a run over one.
"""

from __future__ import annotations

import queue
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from evalharness.backends.base import Backend, Generation, GenRequest, Scored, ScoreRequest
from evalharness.errors import BackendError, BackendLostError
from evalharness.schema import GenConfig, ModelSpec


class Keyed(Protocol):
    """A request: the model it is for and its content key."""

    @property
    def model(self) -> ModelSpec: ...

    @property
    def key(self) -> str: ...


class Answered(Protocol):
    """A result: it carries the request it answers."""

    @property
    def request(self) -> Keyed: ...


Q = TypeVar("Q", bound=Keyed)
A = TypeVar("A", bound=Answered)


def place_adapters(adapters: Sequence[ModelSpec], held: Sequence[int], alive: Sequence[int]
                   ) -> dict[str, int]:
    """A home among the ``alive`` members for each of ``adapters`` (keyed by model key): in
    name order, each on the member holding the fewest adapters so far (``held``: per member,
    indexed like the members), ties to the lowest index.

    >>> from evalharness.schema import ModelSpec
    >>> a, b, c = (ModelSpec(name=n, kind="adapter", base_model="b", base_fingerprint="f",
    ...                      adapter=n, adapter_sha256=n * 8) for n in "abc")
    >>> homes = place_adapters([c, b, a], held=[0, 0, 5], alive=[0, 1, 2])
    >>> [homes[m.key] for m in (a, b, c)]
    [0, 1, 0]
    """
    count = {index: held[index] for index in alive}
    homes: dict[str, int] = {}
    for model in sorted(adapters, key=lambda m: (m.name, m.key)):
        home = min(alive, key=lambda index: (count[index], index))
        homes[model.key] = home
        count[home] += 1
    return homes


@dataclass
class _Done:
    worker: int


@dataclass
class _Failed:
    worker: int
    error: BaseException


@dataclass
class _Result(Generic[A]):
    worker: int
    result: A


class PoolBackend:
    """A backend over ``members``, named ``name`` (the backend the user chose).

    Args:
        name: the backend's name (``openai``, ``ray``).
        members: backends of the same kind, each created but not prepared.
        labels: how each member is named in messages (an endpoint's URL, an actor's number).
        notify: called with a message when a member is lost and its work moves (the
            pipeline points it at the progress display).
    """

    def __init__(self, name: str, members: Sequence[Backend], labels: Sequence[str],
                 notify: Callable[[str], None] | None = None) -> None:
        if len(members) != len(labels) or not members:
            raise ValueError("a pool needs at least one member, each with a label")
        self.name = name
        self.members = list(members)
        self.labels = list(labels)
        self.notify: Callable[[str], None] = notify or (lambda message: None)
        self.recheck: Callable[[Backend, Sequence[ModelSpec]], object] | None = None
        """With the serving self-check on: checks a member again with the adapters moved to
        it (raises when it no longer serves each model as itself)."""
        self._contacted: set[int] = set()
        self.alive = list(range(len(members)))
        self.homes: dict[str, int] = {}
        """Adapter key -> the member that serves it."""
        self._prepared: list[set[str]] = [set() for _ in members]
        self._models: list[ModelSpec] = []

    # -- placement ---------------------------------------------------------------------

    def prepare(self, models: Sequence[ModelSpec]) -> None:
        """Give each adapter a home (evenly, by count) and prepare every member at once with
        its adapters and the models every member serves (the baseline)."""
        self._models = list(models)
        adapters = [m for m in models if m.kind == "adapter"]
        self.homes = place_adapters(adapters, [0] * len(self.members), self.alive)
        lost = self._prepare_members({index: self._served_by(index) for index in self.alive})
        if lost:  # a member that cannot be reached at the start is the user's to fix
            raise next(iter(lost.values()))

    def _served_by(self, index: int) -> list[ModelSpec]:
        return [m for m in self._models
                if m.kind != "adapter" or self.homes.get(m.key) == index]

    def _prepare_members(self, wanted: dict[int, list[ModelSpec]]) -> dict[int, BackendLostError]:
        """Prepare members concurrently (servers load adapters, actors start engines); the
        members lost meanwhile, with why. Any other failure is raised as the member raised it.
        """
        todo = {index: [m for m in models if m.key not in self._prepared[index]]
                for index, models in wanted.items()}
        # Every member is contacted once, with or without work: an unreachable one shows at
        # the start, not when work moves to it.
        todo = {index: models for index, models in todo.items()
                if models or index not in self._contacted}
        if not todo:
            return {}
        self._contacted.update(todo)
        with ThreadPoolExecutor(max_workers=len(todo)) as threads:
            futures = {index: threads.submit(self.members[index].prepare, models)
                       for index, models in todo.items()}
        lost: dict[int, BackendLostError] = {}
        for index, future in futures.items():
            try:
                future.result()
            except BackendLostError as exc:
                lost[index] = exc
                continue
            self._prepared[index].update(m.key for m in todo[index])
        return lost

    def assignments(self) -> list[tuple[Backend, list[ModelSpec]]]:
        """Each live member with the models it serves (the serving self-check checks each
        member with its own adapters)."""
        return [(self.members[index], self._served_by(index)) for index in self.alive]

    def _route(self, requests: Sequence[Q]) -> dict[int, list[Q]]:
        """Requests per live member: adapters at their homes, the rest where work is least."""
        routed: dict[int, list[Q]] = {index: [] for index in self.alive}
        rest: list[Q] = []
        for request in requests:
            if request.model.kind == "adapter":
                routed[self.homes[request.model.key]].append(request)  # always a live home
            else:
                rest.append(request)
        for request in rest:
            least = min(self.alive, key=lambda index: (len(routed[index]), index))
            routed[least].append(request)
        return {index: batch for index, batch in routed.items() if batch}

    def _lose(self, index: int, error: BackendLostError, moving: Sequence[Q]) -> dict[int, list[Q]]:
        """Take member ``index`` out and place ``moving`` (its unfinished requests) on the
        members left, loading the adapters that lost their home at their new homes first. A
        member lost while loading them is taken out too (its own unfinished requests move when
        its worker ends).

        Raises:
            BackendLostError: no member is left (the last one's error).
        """
        lost = {index: error}
        while lost:
            for gone, why in lost.items():
                if gone in self.alive:
                    self.alive.remove(gone)
                error = why
            if not self.alive:
                raise error
            for why in lost.values():  # the run goes on: the error's own fix is not ours
                cause = str(why).split(" Fix:")[0].split("; what finished is saved")[0]
                self.notify(f"{cause.rstrip('.')}; its unfinished work moves to the "
                            f"{len(self.alive)} member(s) left")
            # Every adapter of a lost member moves, its finished ones too: a later stage (the
            # perplexity after the answers) must find each adapter at a live home. Balanced by
            # adapters per member, as at the start.
            homeless = [m for m in self._models if m.kind == "adapter"
                        and self.homes.get(m.key) not in self.alive]
            loads = Counter(self.homes[k] for k in self.homes if self.homes[k] in self.alive)
            moved = place_adapters(homeless, [loads.get(i, 0) for i in range(len(self.members))],
                                   self.alive)
            self.homes.update(moved)
            lost = self._prepare_members({i: self._served_by(i) for i in self.alive})
            if self.recheck is not None and not lost:
                for receiver in sorted(set(moved.values())):
                    self.recheck(self.members[receiver], self._served_by(receiver))
        return self._route(moving)

    # -- running -----------------------------------------------------------------------

    def _spread(self, requests: Sequence[Q], run: Callable[[Backend, list[Q]], Iterator[A]]
                ) -> Iterator[A]:
        """Run ``requests`` on the members, one thread per batch, yielding each result once,
        as it arrives; a lost member's unfinished requests move to the others."""
        stage: _Stage[Q, A] = _Stage(self, run, {r.key: r for r in requests})
        stage.launch(self._route(requests))
        try:
            while stage.running and stage.remaining:
                event = _next(stage.events)
                if isinstance(event, _Result):
                    if stage.remaining.pop(event.result.request.key, None) is not None:
                        yield event.result  # a moved request counts once
                    continue
                try:
                    routed = self._after(stage, event)
                except BaseException:
                    yield from stage.queued()
                    raise
                stage.launch(routed)
            if stage.remaining:
                raise BackendError(f"{len(stage.remaining)} request(s) got no result from the "
                                   f"{self.name} backend's members")
        finally:
            stage.stop.set()

    def _after(self, stage: _Stage[Q, A], event: _Done | _Failed) -> dict[int, list[Q]]:
        """A worker has ended: where its member's unfinished requests go now (none: nowhere).

        Raises:
            Exception: a live member's failure that is not a loss (the stage stops), or
                ``BackendLostError`` when no member is left.
        """
        stage.running -= 1
        member = stage.worker_member[event.worker]
        error = event.error if isinstance(event, _Failed) else None
        moving = [r for key, r in stage.remaining.items() if stage.where[key] == member]
        if member in self.alive and error is not None:
            if not isinstance(error, BackendLostError):
                raise error
            return self._lose(member, error, moving)
        if member not in self.alive:  # lost while others took over: its last ones move too
            return self._route(moving) if moving else {}
        return {}

    def generate(self, requests: Sequence[GenRequest], gen: GenConfig) -> Iterator[Generation]:
        """Each request on its model's member; results as they finish, from all members."""
        return self._spread(requests, lambda member, batch: member.generate(batch, gen))

    def score(self, requests: Sequence[ScoreRequest]) -> Iterator[Scored]:
        """As ``generate``, for perplexity."""
        return self._spread(requests, lambda member, batch: member.score(batch))

    def close(self) -> None:
        """Close every member (lost ones too: their clients and processes)."""
        errors = []
        for member in self.members:
            try:
                member.close()
            except Exception as exc:  # one member's failure must not keep the others open
                errors.append(exc)
        if errors:
            raise errors[0]


class _Stage(Generic[Q, A]):
    """One ``_spread``: its workers (a thread per batch), their events, what is still owed."""

    def __init__(self, pool: PoolBackend, run: Callable[[Backend, list[Q]], Iterator[A]],
                 remaining: dict[str, Q]) -> None:
        self.pool = pool
        self.run = run
        self.remaining = remaining
        self.events: queue.Queue[_Result[A] | _Done | _Failed] = queue.Queue()
        self.stop = threading.Event()
        self.where: dict[str, int] = {}
        """Request key -> the member it was last sent to."""
        self.worker_member: list[int] = []
        self.running = 0

    def launch(self, routed: dict[int, list[Q]]) -> None:
        """A worker thread for each member's batch."""
        for index, batch in routed.items():
            self.where.update((r.key, index) for r in batch)
            self.worker_member.append(index)
            self.running += 1
            threading.Thread(target=self._work, args=(len(self.worker_member) - 1,
                                                      self.pool.members[index], batch),
                             name=f"pool-{self.pool.labels[index]}", daemon=True).start()

    def _work(self, worker: int, member: Backend, batch: list[Q]) -> None:
        try:
            for result in self.run(member, batch):
                self.events.put(_Result(worker, result))
                if self.stop.is_set():
                    break
        except BaseException as exc:  # handed to the consuming thread, which decides
            self.events.put(_Failed(worker, exc))
        else:
            self.events.put(_Done(worker))

    def queued(self) -> Iterator[A]:
        """Results other workers have delivered already: kept when the stage stops."""
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                return
            if isinstance(event, _Result) and self.remaining.pop(event.result.request.key,
                                                                 None) is not None:
                yield event.result


def _next(events: queue.Queue[_Result[A] | _Done | _Failed]) -> _Result[A] | _Done | _Failed:
    """The next event; waits in short slices so Ctrl-C (and SIGTERM) reach this thread."""
    while True:
        try:
            return events.get(timeout=0.5)
        except queue.Empty:
            continue
