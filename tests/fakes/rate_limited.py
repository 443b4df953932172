"""Rate limits for the fake OpenAI server: a tokens-per-window limit, and scripted 429 storms.

``TokenRateLimit`` wraps a responder and enforces, as a hosted API does, a budget of tokens
(and optionally requests) over a rolling window, with the window scaled down (2 s for "a
minute") so that tests and benchmarks run fast. A call over budget is answered 429 with
``Retry-After`` (when enough of the window will have expired to take it) and every reply
carries OpenAI's ``x-ratelimit-*`` headers. ``Storm`` answers 429 to most calls for a while.

The fake server sends only ``Retry-After`` of its own; ``HeaderServer`` is the same server
sending the extra headers a responder attaches (``HeaderedReply`` / ``HeaderedFault``).

    limit = TokenRateLimit(binary, tokens_per_window=20_000, window_s=2.0)
    with HeaderServer(limit) as server:
        ...  # a judge paced with Pacer(tokens_per_window=20_000, window_s=2.0)
    print(limit.admitted_tokens, limit.refused)
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.openai_server import (
    Call,
    FakeOpenAIServer,
    Fault,
    Reply,
    Responder,
    _Handler,
)


@dataclass(frozen=True)
class HeaderedReply(Reply):
    """A ``Reply`` sent with extra HTTP headers (by ``HeaderServer``)."""

    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class HeaderedFault(Fault):
    """A ``Fault`` sent with extra HTTP headers (by ``HeaderServer``)."""

    headers: Mapping[str, str] = field(default_factory=dict)


class _HeaderHandler(_Handler):
    """The fake server's handler, adding the headers an outcome carries to its answer."""

    _extra: Mapping[str, str] = {}

    def _answer(self, call: Call, outcome: Reply | Fault) -> None:
        self._extra = getattr(outcome, "headers", None) or {}
        try:
            super()._answer(call, outcome)
        finally:
            self._extra = {}

    def _send_bytes(self, status: int, data: bytes,
                    headers: Mapping[str, str] | None = None) -> None:
        super()._send_bytes(status, data, {**(headers or {}), **self._extra})


class HeaderServer(FakeOpenAIServer):
    """``FakeOpenAIServer`` that also sends the headers of ``HeaderedReply`` and
    ``HeaderedFault`` (everything else unchanged)."""

    def start(self, port: int = 0) -> HeaderServer:
        """Listen on 127.0.0.1 with the header-sending handler (swapped in before anyone
        knows the port, so every request gets it)."""
        super().start(port)
        assert self._server is not None
        self._server.RequestHandlerClass = type("Handler", (_HeaderHandler,),
                                                {"state": self._state})
        return self


def format_duration(seconds: float) -> str:
    """OpenAI's reset format: ``"20ms"`` below a second, ``"1.5s"``, ``"6m0s"``.

    >>> format_duration(0.02), format_duration(1.5), format_duration(360.0)
    ('20ms', '1.5s', '6m0s')
    """
    if seconds < 1.0:
        return f"{max(0, round(seconds * 1000))}ms"
    minutes, rest = divmod(seconds, 60.0)
    text = f"{rest:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{int(minutes)}m{text}" if minutes else text


def tokens_of(call: Call, reply: Reply) -> int:
    """Tokens the fake server reports for ``reply`` to ``call`` (its ``usage``)."""
    prompt = reply.prompt_tokens if reply.prompt_tokens is not None else max(
        1, len(call.text) // 4)
    completion = reply.completion_tokens if reply.completion_tokens is not None else max(
        1, len(reply.text) // 4)
    return prompt + completion


class TokenRateLimit:
    """A responder enforcing ``tokens_per_window`` (and ``requests_per_window``) over a
    rolling ``window_s``, counting the tokens each reply reports, at admission.

    Observations: ``admitted_tokens``, ``admitted_calls``, ``refused``, ``first_admit`` /
    ``last_admit`` (``clock`` times), ``peak_window_tokens`` (never above the limit).
    """

    def __init__(self, inner: Responder, *, tokens_per_window: int,
                 requests_per_window: int | None = None, window_s: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.inner = inner
        self.tokens_per_window = tokens_per_window
        self.requests_per_window = requests_per_window
        self.window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._window: deque[tuple[float, int]] = deque()
        self._window_tokens = 0
        self.admitted_tokens = 0
        self.admitted_calls = 0
        self.refused = 0
        self.first_admit: float | None = None
        self.last_admit: float | None = None
        self.peak_window_tokens = 0

    def __call__(self, call: Call) -> Reply | Fault:
        outcome = self.inner(call)
        if not isinstance(outcome, Reply):
            return outcome
        tokens = tokens_of(call, outcome)
        with self._lock:
            now = self._clock()
            while self._window and self._window[0][0] <= now - self.window_s:
                self._window_tokens -= self._window.popleft()[1]
            over_tokens = self._window_tokens + tokens > self.tokens_per_window
            over_requests = (self.requests_per_window is not None
                             and len(self._window) + 1 > self.requests_per_window)
            if over_tokens or over_requests:
                self.refused += 1
                return HeaderedFault("status", status=429, message=(
                    f"Rate limit reached for tokens per window: limit "
                    f"{self.tokens_per_window}, used {self._window_tokens}, requested "
                    f"{tokens}."), retry_after=self._wait(now, tokens),
                    headers=self._headers(now))
            self._window.append((now, tokens))
            self._window_tokens += tokens
            self.admitted_tokens += tokens
            self.admitted_calls += 1
            self.peak_window_tokens = max(self.peak_window_tokens, self._window_tokens)
            if self.first_admit is None:
                self.first_admit = now
            self.last_admit = now
            headers = self._headers(now)
        return HeaderedReply(**{**_fields(outcome), "headers": headers})

    def _wait(self, now: float, tokens: int) -> float:
        """Seconds until the window has room for ``tokens`` (and one more request)."""
        free_tokens = self.tokens_per_window - self._window_tokens
        free_requests = (None if self.requests_per_window is None
                         else self.requests_per_window - len(self._window))
        wait = 0.0
        for sent, spent in self._window:
            if free_tokens >= tokens and (free_requests is None or free_requests >= 1):
                break
            free_tokens += spent
            if free_requests is not None:
                free_requests += 1
            wait = sent + self.window_s - now
        return round(max(0.001, wait), 3)

    def _headers(self, now: float) -> dict[str, str]:
        """OpenAI's rate-limit headers: the limit, what is left, and when the window is
        empty again (``reset``: when the whole budget is back)."""
        reset = (self._window[-1][0] + self.window_s - now) if self._window else 0.0
        headers = {
            "x-ratelimit-limit-tokens": str(self.tokens_per_window),
            "x-ratelimit-remaining-tokens": str(max(0, self.tokens_per_window
                                                    - self._window_tokens)),
            "x-ratelimit-reset-tokens": format_duration(reset),
        }
        if self.requests_per_window is not None:
            headers.update({
                "x-ratelimit-limit-requests": str(self.requests_per_window),
                "x-ratelimit-remaining-requests": str(max(0, self.requests_per_window
                                                          - len(self._window))),
                "x-ratelimit-reset-requests": format_duration(reset),
            })
        return headers

    def achieved_ratio(self, elapsed_s: float) -> float:
        """Tokens admitted per window over ``elapsed_s``, as a share of the limit."""
        return self.admitted_tokens / elapsed_s * self.window_s / self.tokens_per_window


def _fields(reply: Reply) -> dict[str, Any]:
    return {name: getattr(reply, name) for name in Reply.__dataclass_fields__}


class Storm:
    """A responder answering HTTP 429 to most calls for a while, tracking calls in flight.

    Calls ``0 .. until - 1`` (by arrival) are refused except every ``ok_every``-th; later
    calls are answered by ``inner``. Each call takes ``latency`` seconds inside the
    responder, so ``in_flight`` (the calls being answered when each arrived, itself
    included) shows the client's concurrency as the server sees it.
    """

    def __init__(self, inner: Responder, *, until: int, ok_every: int = 5,
                 retry_after: float | None = 0.01, latency: float = 0.0) -> None:
        self.inner = inner
        self.until = until
        self.ok_every = ok_every
        self.retry_after = retry_after
        self.latency = latency
        self.refused = 0
        self.in_flight: dict[int, int] = {}
        self._now = 0
        self._lock = threading.Lock()

    def __call__(self, call: Call) -> Reply | Fault:
        with self._lock:
            self._now += 1
            self.in_flight[call.index] = self._now
        try:
            if self.latency:
                time.sleep(self.latency)
            if call.index < self.until and call.index % self.ok_every != self.ok_every - 1:
                with self._lock:
                    self.refused += 1
                return Fault.rate_limited(self.retry_after)
            return self.inner(call)
        finally:
            with self._lock:
                self._now -= 1
