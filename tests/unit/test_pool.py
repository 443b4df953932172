"""The pool's scheduling with scripted members (the package's fake backend): placement, moves
after a loss across stages, and what stops it. The same over real servers and Ray actors is in
tests/integration/test_endpoint_pool.py and tests/vllm/."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import pytest

from evalharness.backends.base import Generation, GenRequest, Scored, ScoreRequest
from evalharness.backends.fake import FakeBackend
from evalharness.backends.pool import PoolBackend
from evalharness.errors import BackendError, BackendLostError
from evalharness.schema import GenConfig, Message, ModelSpec, Prompt

BASE = ModelSpec(name="baseline", kind="base", base_model="b", base_fingerprint="f")
ADAPTERS = [ModelSpec(name=f"a{i}", kind="adapter", base_model="b", base_fingerprint="f",
                      adapter=f"/a{i}", adapter_sha256=f"{i}" * 64) for i in range(4)]
MODELS = [BASE, *ADAPTERS]
PROMPTS = [Prompt(id=f"p{i}", messages=(Message(role="user", content=f"q{i}"),))
           for i in range(10)]


@dataclass
class DyingMember(FakeBackend):
    """A scripted member whose server dies after ``lives`` results."""

    lives: int = 10**9
    lock: threading.Lock = field(default_factory=threading.Lock)
    """A member that took over work runs two batches at once, in two threads."""

    def generate(self, requests: Sequence[GenRequest], gen: GenConfig) -> Iterator[Generation]:
        for result in super().generate(requests, gen):
            with self.lock:
                if self.lives <= 0:
                    raise BackendLostError("lost the endpoint (scripted)")
                self.lives -= 1
            yield result

    def score(self, requests: Sequence[ScoreRequest]) -> Iterator[Scored]:
        if self.lives <= 0:
            raise BackendLostError("lost the endpoint (scripted)")
        yield from super().score(requests)


def _gen_requests() -> list[GenRequest]:
    return [GenRequest(model=m, prompt=p, key=f"{m.name}/{p.id}") for m in MODELS
            for p in PROMPTS]


def _score_requests() -> list[ScoreRequest]:
    return [ScoreRequest(model=m, example_id=p.id, text=f"text {p.id} of words", context=None,
                         key=f"{m.name}/{p.id}/nll") for m in MODELS for p in PROMPTS]


def test_adapters_of_a_lost_member_serve_the_next_stage_where_they_moved() -> None:
    # m1 serves one adapter's 10 requests, then 5 of the baseline's; it dies after 11
    # results: its adapter is finished, only baseline requests move.
    members = [DyingMember(), DyingMember(lives=11), DyingMember()]
    notes: list[str] = []
    pool = PoolBackend("fake", members, ["m0", "m1", "m2"], notify=notes.append)
    pool.prepare(MODELS)
    rechecked: list[tuple[int, set[str]]] = []
    pool.recheck = lambda member, served: rechecked.append(
        (members.index(member), {m.name for m in served if m.kind == "adapter"}))
    # Placement: four adapters over three members, each on one member only.
    assert sorted(pool.homes.values()) == [0, 0, 1, 2]
    lost_adapters = {m.name for m in ADAPTERS if pool.homes[m.key] == 1}
    results = list(pool.generate(_gen_requests(), GenConfig()))
    assert max(Counter(g.request.key for g in results).values()) == 1, "a result came twice"
    answers = {g.request.key: g.text for g in results}
    expected = {g.request.key: g.text for g in FakeBackend().generate(_gen_requests(),
                                                                       GenConfig())}
    assert answers == expected, "every request answered, as one member answers"
    assert notes == ["lost the endpoint (scripted); its unfinished work moves to the 2 "
                     "member(s) left"]
    # With the self-check on, the member given the moved adapter is checked again with it.
    (receiver, adapters), = rechecked
    assert receiver in (0, 2) and lost_adapters <= adapters
    assert pool.alive == [0, 2]
    assert all(home in (0, 2) for home in pool.homes.values())
    # Its finished adapter got a new home too, prepared before any request could reach it.
    assert lost_adapters <= set(members[0].prepared) | set(members[2].prepared)
    # The next stage finds every adapter at a live home (no request for the dead member).
    scores = {s.request.key for s in pool.score(_score_requests())}
    assert scores == {r.key for r in _score_requests()}
    assert members[1].calls["score"] == 0


def test_every_member_lost_raises_after_delivering_what_finished() -> None:
    members = [DyingMember(lives=4), DyingMember(lives=6)]
    pool = PoolBackend("fake", members, ["m0", "m1"])
    pool.prepare(MODELS)
    delivered = []
    with pytest.raises(BackendLostError, match="scripted"):
        for result in pool.generate(_gen_requests(), GenConfig()):
            delivered.append(result.request.key)
    # Every result a member delivered before the last one was lost is handed on, once.
    assert len(delivered) == len(set(delivered)) == 10


def test_a_failure_that_is_not_a_lost_member_stops_the_stage() -> None:
    @dataclass
    class Broken(FakeBackend):
        def generate(self, requests: Sequence[GenRequest], gen: GenConfig
                     ) -> Iterator[Generation]:
            raise BackendError("engine failed (scripted)")
            yield  # a generator, as backends are

    pool = PoolBackend("fake", [FakeBackend(), Broken()], ["m0", "m1"])
    pool.prepare(MODELS)
    with pytest.raises(BackendError, match="engine failed"):
        list(pool.generate(_gen_requests(), GenConfig()))
    assert pool.alive == [0, 1], "a failing engine is not a lost member: nothing moves"
