"""Rate limits (issue 13, item 3): the pacer's arithmetic on a fake clock, header parsing,
adaptive concurrency, and the LLM judge under a scripted 429 storm and a token limit."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

from evalharness.errors import JudgeError
from evalharness.judging.config import JudgeConfig
from evalharness.judging.llm import LLMJudge
from evalharness.judging.pacing import (
    Pacer,
    PacerStats,
    RateBucket,
    TokenEstimator,
    parse_duration,
    read_rate_headers,
)
from evalharness.judging.stage import judge_run
from evalharness.schema import Judgment
from evalharness.store import JUDGMENTS, JsonlLog, RunDir
from tests.fakes.openai_server import Call, FakeOpenAIServer, Fault, Reply, answers_in
from tests.fakes.rate_limited import (
    HeaderServer,
    Storm,
    TokenRateLimit,
    format_duration,
)
from tests.judging.conftest import JudgeFactory, MakeRun, binary

T = TypeVar("T")


class FakeTime:
    """A clock that only moves when something sleeps on it (no real waiting)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def _games(prompts: int) -> dict[str, dict[str, str]]:
    return {"lora": {f"p{i}": f"candidate answer {i} q=2" for i in range(prompts)},
            "baseline": {f"p{i}": f"baseline answer {i} q=1" for i in range(prompts)}}


def _records(run_dir: RunDir) -> list[Judgment]:
    return JsonlLog(run_dir.path / JUDGMENTS, Judgment).read()


# -- headers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [
    ("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("1h2m3.5s", 3723.5), ("59.94s", 59.94),
    ("250us", 0.00025), ("0.5", 0.5), ("  7s ", 7.0), ("", None), ("soon", None),
    ("5x", None), ("1s garbage", None), (None, None)])
def test_openai_reset_durations_parse_to_seconds(text: str | None,
                                                 seconds: float | None) -> None:
    assert parse_duration(text) == (pytest.approx(seconds) if seconds is not None else None)


def test_format_duration_round_trips_through_the_parser() -> None:
    for seconds in (0.02, 0.999, 1.5, 59.25, 360.0, 3723.5):
        assert parse_duration(format_duration(seconds)) == pytest.approx(seconds, abs=1e-3)


def test_rate_headers_are_read_and_odd_values_ignored() -> None:
    info = read_rate_headers({
        "x-ratelimit-limit-requests": "500", "x-ratelimit-limit-tokens": "30000",
        "x-ratelimit-remaining-requests": "499", "x-ratelimit-remaining-tokens": "29000",
        "x-ratelimit-reset-requests": "120ms", "x-ratelimit-reset-tokens": "2s",
        "retry-after": "3"})
    assert (info.limit_requests, info.limit_tokens) == (500, 30000)
    assert (info.remaining_requests, info.remaining_tokens) == (499, 29000)
    assert info.reset_requests_s == pytest.approx(0.12) and info.reset_tokens_s == 2.0
    assert info.retry_after_s == 3.0
    odd = read_rate_headers({"x-ratelimit-limit-tokens": "lots", "retry-after": "later",
                             "x-ratelimit-reset-tokens": "whenever"})
    assert (odd.limit_tokens, odd.retry_after_s, odd.reset_tokens_s) == (None, None, None)
    assert read_rate_headers(None) == read_rate_headers({})


def test_retry_after_ms_wins_and_an_http_date_counts_from_the_wall_clock() -> None:
    assert read_rate_headers({"retry-after-ms": "250", "retry-after": "9"}
                             ).retry_after_s == 0.25
    date = read_rate_headers({"retry-after": "Wed, 21 Oct 2015 07:28:30 GMT"},
                             wall_clock=lambda: 1445412500.0)
    assert date.retry_after_s == 10.0


# -- the bucket -------------------------------------------------------------------------------


def test_bucket_paces_at_the_budget_with_a_small_burst() -> None:
    bucket = RateBucket(budget=62, window_s=60.0, burst_s=1.0)  # rate 1/s
    assert bucket.rate == pytest.approx(1.0)
    now = 0.0
    assert bucket.delay(now, 1) == 0.0
    bucket.book(now, 1)
    bucket.book(now, 1)  # the burst: a second's worth may go at once
    assert bucket.delay(now, 1) == pytest.approx(1.0)
    now += 1.0
    assert bucket.delay(now, 1) == 0.0
    bucket.book(now, 1)
    # A request bigger than the burst waits until everything before it is paid.
    assert bucket.delay(now, 5) == pytest.approx(1.0)
    bucket.book(now + 1.0, 5)
    assert bucket.tat == pytest.approx(now + 6.0)


def test_refunds_and_late_charges_move_the_schedule() -> None:
    bucket = RateBucket(budget=62, window_s=60.0, burst_s=1.0)
    bucket.book(0.0, 10)  # booked at an estimate of 10
    assert bucket.delay(0.0, 1) == pytest.approx(9.0)
    bucket.adjust(4 - 10)  # the reply said 4
    assert bucket.delay(0.0, 1) == pytest.approx(3.0)
    bucket.adjust(+2)  # a reply above its estimate is charged afterwards
    assert bucket.delay(0.0, 1) == pytest.approx(5.0)


def test_a_late_wakeup_loses_no_budget_but_idle_time_is_not_banked() -> None:
    bucket = RateBucket(budget=62, window_s=60.0, burst_s=1.0)
    bucket.book(0.0, 3)  # paid for by t=2 (a burst's second of credit after idling)
    bucket.book(2.9, 1)  # the caller woke 0.9 s late: the schedule goes on from 2
    assert bucket.tat == pytest.approx(3.0)
    bucket.book(100.0, 1)  # after a long idle spell: at most one burst of credit
    assert bucket.tat == pytest.approx(100.0)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_no_window_ever_holds_more_than_the_budget(seed: int) -> None:
    # Greedy senders of random sizes, each woken a random few ms late: any window_s-long
    # stretch holds at most the budget (requests no bigger than the burst).
    rng = random.Random(seed)
    budget, window = 10_000.0, 2.0
    bucket = RateBucket(budget, window)
    largest = bucket.rate * bucket.burst_s
    now, sent = 0.0, []
    for _ in range(3000):
        amount = rng.uniform(0.1, 1.0) * largest
        now += bucket.delay(now, amount) + rng.choice([0.0, 0.0, 0.001, 0.004])
        bucket.book(now, amount)
        sent.append((now, amount))
    left, total, worst = 0, 0.0, 0.0
    for time_, amount in sent:
        total += amount
        while sent[left][0] <= time_ - window:
            total -= sent[left][1]
            left += 1
        worst = max(worst, total)
    assert worst <= budget + 1e-6
    assert sum(a for _, a in sent) / now >= 0.96 * budget / window  # and near it


def test_the_estimate_starts_at_four_chars_per_token_plus_max_tokens_then_learns() -> None:
    estimator = TokenEstimator(max_tokens=512)
    assert estimator.estimate(4000) == 1000 + 512
    estimator.observe(4000, prompt_tokens=800, completion_tokens=20)
    estimator.observe(2000, prompt_tokens=400, completion_tokens=40)
    assert estimator.estimate(1000) == 200 + 30


# -- adaptive concurrency ---------------------------------------------------------------------


def test_a_429_halves_the_window_once_per_round_and_successes_grow_it_back() -> None:
    async def scenario() -> PacerStats:
        clock = FakeTime()
        pacer = Pacer(concurrency=8, clock=clock.clock, sleep=clock.sleep)
        round_one = [await pacer.acquire(10) for _ in range(8)]
        assert pacer.limit.in_flight == 8
        for ticket in round_one:  # all eight refused: one signal, not eight
            pacer.throttled(ticket)
        assert pacer.limit.slots == 4 and pacer.stats.decreases == 1
        pacer.throttled(await pacer.acquire(10))  # sent after the decrease: counts
        assert pacer.limit.slots == 2
        pacer.throttled(await pacer.acquire(10))
        pacer.throttled(await pacer.acquire(10))  # at 1 it stays 1
        assert pacer.limit.slots == 1 and pacer.stats.lowest_allowed == 1
        successes = 0
        while pacer.limit.slots < 8:  # about one more slot per round of successes
            pacer.succeeded(await pacer.acquire(10))
            successes += 1
        assert 28 <= successes <= 40  # 1 + 2 + ... + 7 rounds, give or take
        for _ in range(10):
            pacer.succeeded(await pacer.acquire(10))
        assert pacer.limit.allowed == 8.0  # never above the judge's concurrency
        return pacer.stats

    stats = run(scenario())
    assert [slots for _, slots in stats.allowed_history] == [8, 4, 2, 1, 2, 3, 4, 5, 6, 7, 8]
    assert stats.throttled == 11 and stats.decreases == 4


def test_calls_over_the_window_wait_for_a_slot_in_arrival_order() -> None:
    async def scenario() -> list[str]:
        clock = FakeTime()
        pacer = Pacer(concurrency=2, clock=clock.clock, sleep=clock.sleep)
        order: list[str] = []

        async def call(name: str, release: asyncio.Event) -> None:
            ticket = await pacer.acquire(1)
            order.append(f"start {name}")
            await release.wait()
            pacer.succeeded(ticket)

        gates = {name: asyncio.Event() for name in "abcd"}
        tasks = [asyncio.create_task(call(name, gates[name])) for name in "abcd"]
        await asyncio.sleep(0)
        assert order == ["start a", "start b"] and pacer.limit.in_flight == 2
        gates["b"].set()
        for _ in range(3):
            await asyncio.sleep(0)
        assert order[2:] == ["start c"]
        for name in "acd":
            gates[name].set()
        await asyncio.gather(*tasks)
        assert pacer.limit.in_flight == 0
        return order

    assert run(scenario()) == ["start a", "start b", "start c", "start d"]


# -- pacing and holds on the fake clock -------------------------------------------------------


def test_requests_per_minute_spaces_calls_evenly() -> None:
    async def scenario() -> list[float]:
        clock = FakeTime()
        pacer = Pacer(requests_per_window=61, concurrency=1, clock=clock.clock,
                      sleep=clock.sleep)
        starts = []
        for _ in range(6):
            ticket = await pacer.acquire(1)
            starts.append(clock.now)
            pacer.succeeded(ticket)
        return [b - a for a, b in itertools.pairwise(starts)]

    gaps = run(scenario())
    # 61 a minute, a half-second burst: after idling, half a step of credit, then one a
    # second (the burst's share of the minute is what makes it 61, not 60).
    assert gaps == pytest.approx([0.5, 1.0, 1.0, 1.0, 1.0])


def test_tokens_are_booked_at_the_estimate_and_corrected_to_the_usage() -> None:
    async def scenario() -> tuple[float, float]:
        clock = FakeTime()
        pacer = Pacer(tokens_per_window=6100, concurrency=4, max_tokens=500,
                      clock=clock.clock, sleep=clock.sleep)  # 100 tokens a second
        ticket = await pacer.acquire(pacer.estimate(2000))  # 500 + 500
        assert ticket.tokens == 1000
        pacer.succeeded(ticket, prompt_chars=2000, prompt_tokens=450, completion_tokens=50)
        second = await pacer.acquire(pacer.estimate(2000))  # now learned: 450 + 50
        assert second.tokens == 500
        waited = clock.now - 1000.0
        pacer.succeeded(second, prompt_chars=2000, prompt_tokens=450, completion_tokens=50)
        await pacer.acquire(500)
        return waited, clock.now - 1000.0

    first_wait, second_wait = run(scenario())
    # 5 s for the 500 actually used (not 10 s for the 1000 booked), less the half-second
    # burst of credit after idling; then 5 s per 500-token call.
    assert first_wait == pytest.approx(4.5)
    assert second_wait == pytest.approx(9.5)


def test_a_429_holds_every_call_for_retry_after_capped_at_max_hold() -> None:
    async def scenario() -> tuple[float, float]:
        clock = FakeTime()
        pacer = Pacer(concurrency=4, max_hold_s=5.0, clock=clock.clock, sleep=clock.sleep)
        refused = await pacer.acquire(1)
        pacer.throttled(refused, {"retry-after": "2"})
        pacer.succeeded(await pacer.acquire(1))  # another worker's call waits too
        held = clock.now - 1000.0
        pacer.throttled(await pacer.acquire(1), {"retry-after": "3600"})
        start = clock.now
        await pacer.acquire(1)
        return held, clock.now - start

    held, capped = run(scenario())
    assert held == pytest.approx(2.0) and capped == pytest.approx(5.0)


def test_a_spent_server_budget_holds_until_enough_is_back() -> None:
    async def scenario() -> tuple[float, int | None]:
        clock = FakeTime()
        pacer = Pacer(concurrency=4, clock=clock.clock, sleep=clock.sleep)
        ticket = await pacer.acquire(600)
        # The server's budget: 6100 tokens a minute, 100 left, whole again in 50 s.
        pacer.succeeded(ticket, {"x-ratelimit-limit-tokens": "6100",
                                 "x-ratelimit-remaining-tokens": "100",
                                 "x-ratelimit-reset-tokens": "50s"},
                        prompt_chars=2000, prompt_tokens=500, completion_tokens=100)
        start = clock.now
        await pacer.acquire(600)
        budget = int(pacer.tokens.budget) if pacer.tokens is not None else None
        return clock.now - start, budget

    waited, budget = run(scenario())
    assert budget == 6100  # no budget configured: the server's becomes the budget
    assert waited == pytest.approx(5.0)  # 500 missing at 100 a second, not the 50 s reset


def test_a_configured_budget_below_the_servers_is_kept() -> None:
    async def scenario() -> float | None:
        pacer = Pacer(tokens_per_window=1000, clock=FakeTime().clock)
        pacer.succeeded(await pacer.acquire(1), {"x-ratelimit-limit-tokens": "90000"})
        return pacer.tokens.budget if pacer.tokens is not None else None

    assert run(scenario()) == 1000


def test_the_judge_builds_its_pacer_from_the_config(judge_for: JudgeFactory) -> None:
    config: JudgeConfig = judge_for(requests_per_minute=120, tokens_per_minute=30_000,
                                    concurrency=6)
    pacer = LLMJudge(config).pacer
    assert pacer.requests is not None and pacer.requests.budget == 120
    assert pacer.tokens is not None and pacer.tokens.budget == 30_000
    assert pacer.limit.maximum == 6 and pacer.max_hold_s == config.backoff_max_s
    assert pacer.estimator.max_tokens == config.max_tokens


# -- against the fake server ------------------------------------------------------------------


def _judge_with(pacers: list[Pacer], **pacer_options: Any) -> Callable[[JudgeConfig],
                                                                        LLMJudge]:
    def make(config: JudgeConfig) -> LLMJudge:
        pacers.append(Pacer.for_config(config, **pacer_options))
        return LLMJudge(config, pacer=pacers[-1])

    return make


def test_no_game_is_dropped_under_a_429_storm_and_concurrency_shrinks_then_grows(
        server: FakeOpenAIServer, judge_for: JudgeFactory, make_run: MakeRun) -> None:
    # Calls 0..79: four in five refused with HTTP 429; then all answered. Default retries
    # (6): a game refused more often than that while others are answered must still finish.
    storm = Storm(binary, until=80, ok_every=5, retry_after=0.01, latency=0.02)
    server.responder = storm
    run_dir = make_run(_games(40))
    pacers: list[Pacer] = []
    counts = judge_run(run_dir, judge_for(concurrency=8, backoff_max_s=0.05), "baseline",
                       make_judge=_judge_with(pacers))

    records = _records(run_dir)
    assert len(records) == 80 and counts.computed == 80
    assert len({(r.prompt_id, r.first, r.second) for r in records}) == 80
    assert all(r.winner is not None for r in records)  # none dropped, none invalid
    # Every call is accounted for: 80 answers plus the refusals, on both sides.
    assert storm.refused == 64
    assert server.n_calls == 80 + storm.refused == counts.calls
    assert sum(r.attempts for r in records) == server.n_calls
    stats = pacers[0].stats
    assert stats.throttled == storm.refused and stats.succeeded == 80
    # The window halved down to one call, then grew back once the storm was over.
    assert stats.lowest_allowed == 1
    history = [slots for _, slots in stats.allowed_history]
    assert history[0] == 8 and history.index(1) < len(history) - 1
    assert pacers[0].limit.slots >= 4
    # The server saw it: up to 8 calls at once at first, one or two late in the storm (the
    # one success in five widens the window to 2 before the next 429 halves it), and many
    # again once the storm was over.
    seen = storm.in_flight
    assert max(seen[i] for i in range(8)) >= 4
    assert max(seen[i] for i in range(40, 80)) <= 2
    assert max(seen[i] for i in range(100, server.n_calls)) >= 4


def test_a_token_limited_server_refuses_little_and_every_game_finishes(
        judge_for: JudgeFactory, make_run: MakeRun) -> None:
    # 4000 tokens per 0.5 s "minute"; no budget configured: the limit comes from the headers.
    limit = TokenRateLimit(binary, tokens_per_window=4000, window_s=0.5)
    with HeaderServer(limit) as server:
        run_dir = make_run(_games(30))
        pacers: list[Pacer] = []
        counts = judge_run(run_dir, judge_for(base_url=server.base_url, concurrency=8,
                                              max_tokens=64, backoff_max_s=0.5),
                           "baseline", make_judge=_judge_with(pacers, window_s=0.5))
        assert server.n_calls == counts.calls == 60 + limit.refused

    records = _records(run_dir)
    assert len(records) == 60 and all(r.winner is not None for r in records)
    assert limit.admitted_calls == 60
    assert limit.peak_window_tokens <= 4000
    assert limit.refused <= 6  # the few before the first reply named the limit
    pacer = pacers[0]
    assert pacer.tokens is not None and pacer.tokens.budget == 4000
    assert pacer.stats.tokens_used == limit.admitted_tokens


def test_a_call_refused_forever_while_others_are_answered_still_ends(
        server: FakeOpenAIServer, judge_for: JudgeFactory, make_run: MakeRun) -> None:
    # One game's request is always answered 429 (as a request larger than the whole limit
    # is): while others are answered its 429s are pacing and use up no retries; once the
    # others are done they count, and the run stops naming both.
    def refuse_p0(call: Call) -> Reply | Fault:
        if "answer 0 " in answers_in(call)[0]:
            return Fault.rate_limited(0.001)
        time.sleep(0.01)
        return binary(call)

    server.responder = refuse_p0
    run_dir = make_run(_games(30))
    with pytest.raises(JudgeError, match=r"failed 3 times \(and \d+ more HTTP 429s while "
                                         r"other calls were answered\)"):
        judge_run(run_dir, judge_for(concurrency=4, retries=2, backoff_max_s=0.01),
                  "baseline")
    assert {r.prompt_id for r in _records(run_dir)} >= {"p1", "p29"} - {"p0"}
