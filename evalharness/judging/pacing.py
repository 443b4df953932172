"""Client-side rate limiting for the LLM judge: pace to a budget, read the server's limits,
and shrink concurrency when the server says "too many" (HTTP 429).

Without this the client knows one number, ``concurrency``, and a tokens-per-minute limit
shows up as a storm of 429s: every worker fires, most are refused, all back off, all fire
again. Three mechanisms replace the storm with a steady rate just under the limit:

* **Pacing** (``RateBucket``): the judge config's ``rate_limits.requests_per_minute`` and
  ``rate_limits.tokens_per_minute`` are budgets the client spends at a steady rate (a
  generic cell-rate algorithm: a token bucket kept as one "theoretical arrival time").
  A request's tokens are not known before it is answered, so it is booked at an estimate
  (``TokenEstimator``) and the booking is corrected to the reply's ``usage`` afterwards.
* **The server's word** (``read_rate_headers``): OpenAI-style ``x-ratelimit-limit-*``,
  ``x-ratelimit-remaining-*`` and ``x-ratelimit-reset-*`` headers (durations like ``"1s"``,
  ``"6m0s"``, ``"20ms"``), plus ``retry-after`` / ``retry-after-ms``. A server limit
  lower than the configured budget (or the only one) becomes the budget; a reply saying
  the budget is spent, or a 429 asking for a wait, holds *every* new call until then,
  not only the one that was refused.
* **Adaptive concurrency** (``ConcurrencyLimit``): additive increase, multiplicative
  decrease, as TCP does: a 429 halves the calls allowed in flight (at least 1), each
  success adds ``1 / allowed`` (one more call per round of successes) up to the judge's
  ``concurrency``. A burst of 429s from calls sent together counts as one signal: only a
  call sent after the last decrease can decrease again, or one storm would collapse the
  window to 1 in a single round.

Every wait reads an injected clock and sleeps through an injected ``sleep``, so the tests
drive all of it with a fake clock and never sleep.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from evalharness.judging.config import JudgeConfig

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

WINDOW_S = 60.0
"""The budgets are per minute. Tests and benchmarks scale the minute down (``window_s``)."""
CHARS_PER_TOKEN = 4.0
"""The first guess at a prompt's tokens before any reply has told the real ratio: about four
characters per token for English text with BPE tokenisers (no tokenizer is loaded: the
judge may be any model, and the guess is corrected by every reply's ``usage``)."""

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|m|s|us|µs|ns)")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_duration(text: str | None) -> float | None:
    """Seconds in a rate-limit reset value: OpenAI's Go-style durations (``"1s"``,
    ``"6m0s"``, ``"20ms"``, ``"1h2m3.5s"``) or a bare number of seconds; ``None`` when the
    text is neither.

    >>> parse_duration("6m0s"), parse_duration("20ms"), parse_duration("1h2m3.5s")
    (360.0, 0.02, 3723.5)
    >>> parse_duration("0.5"), parse_duration("soon"), parse_duration(None)
    (0.5, None, None)
    """
    if text is None:
        return None
    text = text.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        return None
    return sum(float(number) * _UNIT_S[unit] for number, unit in parts)


@dataclass(frozen=True)
class RateHeaders:
    """What a reply's headers say about the server's limits (``None``: not said)."""

    limit_requests: int | None = None
    limit_tokens: int | None = None
    remaining_requests: int | None = None
    remaining_tokens: int | None = None
    reset_requests_s: float | None = None
    """Seconds until the request budget is whole again."""
    reset_tokens_s: float | None = None
    retry_after_s: float | None = None
    """Seconds ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date) asks to wait."""


NO_HEADERS = RateHeaders()


def read_rate_headers(headers: Mapping[str, str] | Any, wall_clock: Clock = time.time
                      ) -> RateHeaders:
    """Read the rate-limit headers of a reply (or of a 429).

    ``headers`` is a case-insensitive mapping (the HTTP client's) or a dict with lower-case
    names. Values that do not parse are ignored, not errors: a server's odd header must not
    stop a run. ``wall_clock`` turns an HTTP-date ``retry-after`` into seconds.

    >>> read_rate_headers({"x-ratelimit-remaining-tokens": "150",
    ...                    "x-ratelimit-reset-tokens": "6m0s", "retry-after-ms": "20"})
    ... # doctest: +NORMALIZE_WHITESPACE
    RateHeaders(limit_requests=None, limit_tokens=None, remaining_requests=None,
                remaining_tokens=150, reset_requests_s=None, reset_tokens_s=360.0,
                retry_after_s=0.02)
    """
    if headers is None:
        return NO_HEADERS
    get = headers.get
    return RateHeaders(
        limit_requests=_count(get("x-ratelimit-limit-requests")),
        limit_tokens=_count(get("x-ratelimit-limit-tokens")),
        remaining_requests=_count(get("x-ratelimit-remaining-requests")),
        remaining_tokens=_count(get("x-ratelimit-remaining-tokens")),
        reset_requests_s=parse_duration(get("x-ratelimit-reset-requests")),
        reset_tokens_s=parse_duration(get("x-ratelimit-reset-tokens")),
        retry_after_s=_retry_after(get("retry-after-ms"), get("retry-after"), wall_clock),
    )


def _count(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return max(0, int(float(text)))
    except ValueError:
        return None


def _retry_after(milliseconds: str | None, value: str | None, wall_clock: Clock
                 ) -> float | None:
    if milliseconds is not None:
        try:
            return max(0.0, float(milliseconds) / 1000.0)
        except ValueError:
            pass
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, parsed.timestamp() - wall_clock())


class RateBucket:
    """A budget of ``budget`` units per ``window_s`` seconds, spent at a steady rate.

    Kept as a generic cell-rate algorithm: ``tat`` is the time at which everything booked so
    far would have been paid for at the steady rate. A booking may go while it would finish
    paying within ``burst_s`` of now (a request bigger than that goes once everything before
    it is paid), and pays on from ``tat`` even when that is up to ``burst_s`` in the past:
    a caller woken a few milliseconds late (the event loop is busy) loses no budget.

    The rate is ``budget / (window_s + 2 * burst_s)``: then any ``window_s``-long stretch
    holds at most ``budget`` units (the steady part, one burst, and one late start made up),
    so a server counting a rolling window does not refuse what the bucket lets through.
    The two bursts cost ``2 * burst_s / (window_s + 2 * burst_s)`` of the rate: 1.6 % with
    the default burst of 1/120 of the window (0.5 s of a minute).
    """

    def __init__(self, budget: float, window_s: float = WINDOW_S,
                 burst_s: float | None = None) -> None:
        if budget <= 0 or window_s <= 0:
            raise ValueError(f"a rate budget needs budget > 0 and window_s > 0, not "
                             f"{budget} per {window_s} s")
        self.window_s = window_s
        self.burst_s = window_s / 120.0 if burst_s is None else burst_s
        self.budget = budget
        self.tat = -math.inf

    @property
    def budget(self) -> float:
        """Units per window (settable: a server's lower limit replaces the configured one)."""
        return self._budget

    @budget.setter
    def budget(self, value: float) -> None:
        self._budget = float(value)
        self.rate = value / (self.window_s + 2.0 * self.burst_s)
        """Units per second."""

    def delay(self, now: float, amount: float) -> float:
        """Seconds from ``now`` before ``amount`` units may go (0: now)."""
        cost = amount / self.rate
        return max(0.0, self.tat - now + min(0.0, cost - self.burst_s))

    def book(self, now: float, amount: float) -> None:
        """Spend ``amount`` units sent at ``now`` (call when ``delay`` is 0)."""
        self.tat = max(self.tat, now - self.burst_s) + amount / self.rate

    def adjust(self, amount: float) -> None:
        """Correct an earlier booking by ``amount`` units (negative: a refund). A refund
        banks no more than any idle time does: ``book`` starts at most ``burst_s`` back."""
        self.tat += amount / self.rate


class TokenEstimator:
    """Guesses a request's tokens before it is sent: the prompt at the characters-per-token
    ratio the replies have shown so far (``CHARS_PER_TOKEN`` until the first), plus the
    completion at the mean the replies have shown (``max_tokens`` until the first, the
    most a reply can cost). A wrong guess is corrected when the reply's ``usage`` comes
    back; it only decides how much of the budget a call holds while it is in flight.
    """

    def __init__(self, max_tokens: int) -> None:
        self.max_tokens = max_tokens
        self._chars = 0
        self._prompt_tokens = 0
        self._completions = 0
        self._completion_tokens = 0

    def estimate(self, prompt_chars: int) -> int:
        """Tokens a request with ``prompt_chars`` characters of messages will likely use."""
        per_char = (self._prompt_tokens / self._chars if self._chars and self._prompt_tokens
                    else 1.0 / CHARS_PER_TOKEN)
        completion = (math.ceil(self._completion_tokens / self._completions)
                      if self._completions else self.max_tokens)
        return max(1, math.ceil(prompt_chars * per_char) + min(completion, self.max_tokens))

    def observe(self, prompt_chars: int, prompt_tokens: int, completion_tokens: int) -> None:
        """Learn from a reply's ``usage``."""
        if prompt_tokens > 0 and prompt_chars > 0:
            self._chars += prompt_chars
            self._prompt_tokens += prompt_tokens
        self._completions += 1
        self._completion_tokens += completion_tokens


@dataclass
class PacerStats:
    """What the pacer did (the tests and the benchmark read it)."""

    calls: int = 0
    """Calls let through."""
    succeeded: int = 0
    throttled: int = 0
    """Calls answered HTTP 429."""
    failed: int = 0
    """Calls that failed otherwise (5xx, timeouts, rejections)."""
    decreases: int = 0
    """Times the allowed concurrency was halved."""
    lowest_allowed: int = 0
    """The fewest calls allowed in flight at any moment."""
    peak_in_flight: int = 0
    """The most calls holding a slot at once (sending, or waiting for the budget)."""
    tokens_used: int = 0
    """Tokens the replies reported."""
    waited_s: float = 0.0
    """Seconds calls waited for the budget or a hold (summed over calls)."""
    allowed_history: list[tuple[float, int]] = field(default_factory=list)
    """(time, calls allowed in flight) at every change of the whole number."""


class ConcurrencyLimit:
    """Calls allowed in flight, adapted by additive increase / multiplicative decrease.

    ``allowed`` is a float so that "add one per round" can be ``1 / allowed`` per success;
    the whole part is the number of slots. Waiters are served first come, first served.
    """

    def __init__(self, maximum: int, stats: PacerStats, clock: Clock) -> None:
        self.maximum = max(1, maximum)
        self.allowed = float(self.maximum)
        self.in_flight = 0
        self._stats = stats
        self._clock = clock
        self._waiters: deque[asyncio.Future[None]] = deque()
        stats.lowest_allowed = self.maximum
        stats.allowed_history.append((clock(), self.maximum))

    @property
    def slots(self) -> int:
        """Calls allowed in flight now."""
        return max(1, int(self.allowed))

    async def take(self) -> None:
        """Wait for a slot."""
        if self.in_flight < self.slots and not self._waiters:
            self._grant()
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # granted, then cancelled before use: hand the slot on
            else:
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        """Give a slot back and wake whoever it lets in."""
        self.in_flight -= 1
        self._wake()

    def increase(self) -> None:
        """A success: one more slot per round of successes, up to the maximum."""
        before = self.slots
        self.allowed = min(float(self.maximum), self.allowed + 1.0 / self.allowed)
        if self.slots != before:
            self._stats.allowed_history.append((self._clock(), self.slots))
            self._wake()

    def decrease(self) -> None:
        """A 429: halve the slots (at least 1)."""
        before = self.slots
        self.allowed = max(1.0, math.floor(self.allowed) / 2.0)
        self._stats.decreases += 1
        self._stats.lowest_allowed = min(self._stats.lowest_allowed, self.slots)
        if self.slots != before:
            self._stats.allowed_history.append((self._clock(), self.slots))

    def _grant(self) -> None:
        self.in_flight += 1
        self._stats.peak_in_flight = max(self._stats.peak_in_flight, self.in_flight)

    def _wake(self) -> None:
        while self._waiters and self.in_flight < self.slots:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._grant()
                waiter.set_result(None)


@dataclass(frozen=True)
class Ticket:
    """One call let through: what it booked, and the decrease round it was sent in."""

    tokens: int
    epoch: int
    sent: float


class Pacer:
    """The gate every judge call passes: a concurrency slot, then the budgets and any hold.

    Args:
        requests_per_window: the request budget (``None``: none until a server names one).
        tokens_per_window: the token budget (``None``: likewise).
        concurrency: the most calls in flight (the judge's ``concurrency``).
        max_tokens: the judge's ``max_tokens`` (the completion guess before any reply).
        window_s: the budgets' window: 60 (per minute); tests scale it down.
        max_hold_s: the longest hold a header may impose (the judge's ``backoff.max_s``: an
            endpoint asking for an hour would park every worker silently).
        clock, sleep, wall_clock: time, injected for tests.
    """

    def __init__(self, *, requests_per_window: int | None = None,
                 tokens_per_window: int | None = None, concurrency: int = 8,
                 max_tokens: int = 512, window_s: float = WINDOW_S,
                 max_hold_s: float = 60.0, clock: Clock = time.monotonic,
                 sleep: Sleep = asyncio.sleep, wall_clock: Clock = time.time) -> None:
        self.window_s = window_s
        self.max_hold_s = max_hold_s
        self.stats = PacerStats()
        self._clock = clock
        self._sleep = sleep
        self._wall_clock = wall_clock
        self._configured = (requests_per_window, tokens_per_window)
        self.requests = (RateBucket(requests_per_window, window_s)
                         if requests_per_window else None)
        self.tokens = RateBucket(tokens_per_window, window_s) if tokens_per_window else None
        self.estimator = TokenEstimator(max_tokens)
        self.limit = ConcurrencyLimit(concurrency, self.stats, clock)
        self.hold_until = -math.inf
        """No call starts before this time (a 429's wait, or a spent server budget)."""
        self._epoch = 0
        self._lock = asyncio.Lock()

    @classmethod
    def for_config(cls, config: JudgeConfig, **kwargs: Any) -> Pacer:
        """The pacer a judge config asks for (``kwargs``: ``window_s``, clocks...)."""
        return cls(requests_per_window=config.requests_per_minute,
                   tokens_per_window=config.tokens_per_minute,
                   concurrency=config.concurrency, max_tokens=config.max_tokens,
                   max_hold_s=config.backoff_max_s, **kwargs)

    def estimate(self, prompt_chars: int) -> int:
        """Tokens to book for a request with ``prompt_chars`` characters of messages."""
        return self.estimator.estimate(prompt_chars)

    async def acquire(self, tokens: int) -> Ticket:
        """Wait until a call of ``tokens`` estimated tokens may go, and book it.

        The slot comes first, then the budgets in arrival order (one lock: the first caller
        waiting for the budget is the first served, and nobody books while it waits).
        """
        await self.limit.take()
        try:
            async with self._lock:
                while True:
                    now = self._clock()
                    wait = self.hold_until - now
                    if self.requests is not None:
                        wait = max(wait, self.requests.delay(now, 1))
                    if self.tokens is not None:
                        wait = max(wait, self.tokens.delay(now, tokens))
                    if wait <= 0:
                        break
                    self.stats.waited_s += wait
                    await self._sleep(wait)
                if self.requests is not None:
                    self.requests.book(now, 1)
                if self.tokens is not None:
                    self.tokens.book(now, tokens)
        except BaseException:
            self.limit.release()
            raise
        self.stats.calls += 1
        return Ticket(tokens, self._epoch, now)

    def succeeded(self, ticket: Ticket, headers: Any = None, *, prompt_chars: int = 0,
                  prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
        """A reply came: correct the booking to its usage, widen the window, read headers."""
        used = prompt_tokens + completion_tokens
        if used > 0:
            if self.tokens is not None:
                self.tokens.adjust(used - ticket.tokens)
            self.estimator.observe(prompt_chars, prompt_tokens, completion_tokens)
            self.stats.tokens_used += used
        self.stats.succeeded += 1
        self.limit.increase()
        self._observe(read_rate_headers(headers, self._wall_clock), ticket)
        self.limit.release()

    def throttled(self, ticket: Ticket, headers: Any = None) -> None:
        """A 429: refund the tokens (a refused call spends none; its request still counts),
        halve the window once per round, and hold every call for the wait the server asks."""
        if self.tokens is not None:
            self.tokens.adjust(-ticket.tokens)
        self.stats.throttled += 1
        if ticket.epoch == self._epoch:  # sent before the last decrease: already counted
            self._epoch += 1
            self.limit.decrease()
        info = read_rate_headers(headers, self._wall_clock)
        if info.retry_after_s is not None:
            self._hold(info.retry_after_s)
        self._observe(info, ticket)
        self.limit.release()

    def failed(self, ticket: Ticket, headers: Any = None) -> None:
        """Any other failure: refund the tokens (what a failed call spent is unknown; the
        server's headers, when it sends them, say the truth) and free the slot."""
        if self.tokens is not None:
            self.tokens.adjust(-ticket.tokens)
        self.stats.failed += 1
        self._observe(read_rate_headers(headers, self._wall_clock), ticket)
        self.limit.release()

    def _observe(self, info: RateHeaders, ticket: Ticket) -> None:
        """Take the server's limits (when lower than ours) and hold while its budget is
        spent: fewer requests left than one, or fewer tokens than the call just made."""
        if info is NO_HEADERS:
            return
        if info.limit_requests:
            self.requests = self._lower(self.requests, info.limit_requests,
                                        self._configured[0])
        if info.limit_tokens:
            self.tokens = self._lower(self.tokens, info.limit_tokens, self._configured[1])
        if info.remaining_requests is not None and info.remaining_requests < 1:
            self._hold(self._refill_s(1 - info.remaining_requests, info.reset_requests_s,
                                      self.requests))
        if info.remaining_tokens is not None and info.remaining_tokens < ticket.tokens:
            self._hold(self._refill_s(ticket.tokens - info.remaining_tokens,
                                      info.reset_tokens_s, self.tokens))

    def _lower(self, bucket: RateBucket | None, server: int, configured: int | None
               ) -> RateBucket:
        budget = min(server, configured) if configured else server
        if bucket is None:
            return RateBucket(budget, self.window_s)
        if bucket.budget != budget:
            bucket.budget = budget
        return bucket

    @staticmethod
    def _refill_s(missing: float, reset_s: float | None, bucket: RateBucket | None) -> float:
        """Seconds until ``missing`` units are back: at the budget's rate when known (a
        server's "reset" is when the *whole* budget is back, often far later than needed),
        never later than the reset."""
        if reset_s is None:
            return 0.0 if bucket is None else missing / bucket.rate
        return reset_s if bucket is None else min(reset_s, missing / bucket.rate)

    def _hold(self, seconds: float) -> None:
        self.hold_until = max(self.hold_until,
                              self._clock() + min(seconds, self.max_hold_s))
