"""The LLM judge: any OpenAI-compatible chat-completions endpoint, called with ``AsyncOpenAI``.

Failures in transit (429, 408/409, 5xx, timeouts, dropped connections, a body that is not
JSON) are retried with exponential backoff and jitter, waiting at least what a
``Retry-After`` header asks; when ``retries`` are spent the run stops with ``JudgeError``
(everything finished is on disk, a rerun resumes). A reply whose verdict cannot be read is
asked again ``invalid_retries`` times, then returned invalid with its text. A request the
endpoint rejects as malformed (other 4xx) is returned invalid with the endpoint's message;
a bad key or an unknown model stops the run with a ``UserError``.

The API key is read from the environment variable the config names, used for the client
only, and scrubbed from every text this module returns.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from evalharness.errors import JudgeError, MissingExtraError, UserError
from evalharness.judging.base import Outcome
from evalharness.judging.config import JudgeConfig
from evalharness.judging.templates import GameText, render, values_for
from evalharness.judging.verdicts import parse_verdict, weight_from_positions
from evalharness.schema import TokenUsage

RETRYABLE_STATUS = frozenset({408, 409, 429})
REJECTIONS_BEFORE_GIVING_UP = 5
"""Rejected requests (4xx) with no success at all before the run stops: the endpoint, not
one game, is the problem (a model without logprobs, a wrong request shape)."""
NO_KEY = "not-needed"


def api_key_for(config: JudgeConfig, environ: Mapping[str, str] | None = None) -> str:
    """The API key from the variable ``config.api_key_env`` names.

    Raises:
        UserError: the variable is not set (naming the variable, never a value).
    """
    if config.api_key_env is None:
        return NO_KEY
    environ = os.environ if environ is None else environ
    key = environ.get(config.api_key_env, "")
    if not key.strip():
        raise UserError(
            f"judge '{config.name}' needs an API key in the environment variable "
            f"{config.api_key_env}, which is not set. Fix: export {config.api_key_env}=... "
            f"(for a local server that needs no key, set api_key_env: null in "
            f"{config.folder / 'config.yaml'})."
        )
    return key


def messages_for(config: JudgeConfig, game: GameText) -> list[dict[str, str]]:
    """The chat messages the judge is sent for ``game``."""
    values = values_for(game)
    messages = []
    if config.system_template:
        messages.append({"role": "system", "content": render(config.system_template, values)})
    messages.append({"role": "user", "content": render(config.user_template, values)})
    return messages


@dataclass(frozen=True)
class _Reply:
    text: str
    finish_reason: str | None
    usage: TokenUsage
    positions: list[tuple[str, list[tuple[str, float]]]]


@dataclass(frozen=True)
class _Rejected:
    message: str


Sleep = Callable[[float], Awaitable[None]]


class LLMJudge:
    """Judges games by asking an OpenAI-compatible endpoint.

    Args:
        config: the judge definition.
        client: an ``openai.AsyncOpenAI`` (made from the config and the key when omitted).
        sleep: how to wait between retries (tests pass a recorder).
        seed: seed of the backoff jitter.
    """

    def __init__(self, config: JudgeConfig, *, client: Any = None, sleep: Sleep | None = None,
                 seed: int | None = None) -> None:
        self.config = config
        self._secret = ""
        if client is None:
            try:
                import openai
            except ImportError:  # pragma: no cover - openai is a core dependency
                raise MissingExtraError("openai", "openai", "the LLM judge") from None
            self._secret = api_key_for(config)
            client = openai.AsyncOpenAI(base_url=config.base_url, api_key=self._secret,
                                        max_retries=0, timeout=config.timeout_s)
        self._client = client
        self._sleep: Sleep = sleep or asyncio.sleep
        self._rng = random.Random(seed)
        self._accepted = 0
        self._rejected = 0

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.close()

    async def judge(self, game: GameText) -> Outcome:
        """Judge one game (see the module docstring for what is retried and how)."""
        messages = messages_for(self.config, game)
        prompt_tokens = completion_tokens = attempts = 0
        last: _Reply | None = None
        error = "no reply"
        for _ in range(self.config.invalid_retries + 1):
            reply, calls = await self._call(messages)
            attempts += calls
            if isinstance(reply, _Rejected):
                return Outcome(None, None, raw="", usage=TokenUsage(
                    prompt_tokens=prompt_tokens, completion_tokens=completion_tokens),
                    attempts=attempts, error=self._scrub(reply.message))
            prompt_tokens += reply.usage.prompt_tokens
            completion_tokens += reply.usage.completion_tokens
            last = reply
            verdict = parse_verdict(reply.text, self.config.verdicts)
            usage = TokenUsage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
            if verdict.valid:
                weight = (weight_from_positions(reply.positions, self.config.logprob_tokens)
                          if self.config.logprob_tokens is not None else None)
                return Outcome(verdict.label, verdict.winner, weight, self._scrub(reply.text),
                               usage, attempts)
            error = verdict.error or "no verdict"
            if reply.finish_reason == "length":
                error += " (the reply was cut at max_tokens; raise max_tokens)"
        return Outcome(
            None, None, raw=self._scrub(last.text if last else ""),
            usage=TokenUsage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens),
            attempts=attempts,
            error=self._scrub(f"{error}; gave up after {self.config.invalid_retries + 1} "
                              "replies without a readable verdict"),
        )

    async def _call(self, messages: list[dict[str, str]]) -> tuple[_Reply | _Rejected, int]:
        import openai

        config = self.config
        kwargs: dict[str, Any] = {"model": config.model, "messages": messages,
                                  "temperature": config.temperature,
                                  "max_tokens": config.max_tokens}
        if config.logprob_tokens is not None:
            kwargs.update(logprobs=True, top_logprobs=config.top_logprobs)
        for attempt in range(config.retries + 1):
            try:
                # ``post`` is the client's documented raw route: the same transport, auth and
                # errors as ``chat.completions.create``, without the per-call walks over the
                # request params and the response model that cost ~0.7 ms of CPU each call
                # (a third of the throughput at concurrency 32; benchmarks/).
                response = await self._client.post("/chat/completions", body=kwargs,
                                                   cast_to=object)
                reply = _reply(response)
            except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
                raise UserError(
                    f"the judge endpoint {config.base_url} refused the API key "
                    f"(HTTP {exc.status_code}). Fix: check the key in ${config.api_key_env} "
                    "and that it may use this model."
                ) from None
            except openai.NotFoundError:
                raise UserError(
                    f"the judge endpoint {config.base_url} does not serve model "
                    f"'{config.model}' (HTTP 404). Fix: pass --judge-model with a model it "
                    "serves, or --judge-url with the right endpoint (ending in /v1)."
                ) from None
            except openai.APIStatusError as exc:
                if exc.status_code < 500 and exc.status_code not in RETRYABLE_STATUS:
                    return self._rejection(exc), attempt + 1
                failure: BaseException = exc
            except (openai.APIConnectionError, openai.APIResponseValidationError,
                    json.JSONDecodeError, _MalformedReplyError) as exc:
                failure = exc
            else:
                self._accepted += 1
                return reply, attempt + 1
            if attempt == config.retries:
                raise JudgeError(
                    f"judge '{config.name}' at {config.base_url}: a call failed "
                    f"{config.retries + 1} times; last error: {self._scrub(_describe(failure))}."
                    " Everything judged so far is saved; rerun the command to resume. Fix: "
                    "check the endpoint, or raise 'retries' / lower 'concurrency' in "
                    f"{config.folder / 'config.yaml'}."
                ) from None
            await self._sleep(self._delay(attempt, _retry_after(failure)))
        raise AssertionError("unreachable")  # pragma: no cover

    def _rejection(self, exc: Any) -> _Rejected:
        self._rejected += 1
        message = _describe(exc)
        if self._accepted == 0 and self._rejected >= REJECTIONS_BEFORE_GIVING_UP:
            raise JudgeError(
                f"judge '{self.config.name}' at {self.config.base_url}: the endpoint rejected "
                f"all of the first {self._rejected} requests; last: {self._scrub(message)}. "
                "Fix: check that the model and options (logprobs, max_tokens) are supported."
            )
        return _Rejected(f"request rejected: {message}")

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds before retry ``attempt + 1``: Retry-After if given, else capped exponential
        backoff; both with jitter so that concurrent workers do not retry in lockstep."""
        if retry_after is not None:
            return retry_after * (1.0 + 0.1 * self._rng.random())
        ceiling = min(self.config.backoff_max_s, self.config.backoff_initial_s * 2.0 ** attempt)
        return ceiling * (0.5 + 0.5 * self._rng.random())

    def _scrub(self, text: str) -> str:
        if len(self._secret) >= 4 and self._secret != NO_KEY:
            return text.replace(self._secret, "[api key removed]")
        return text


class _MalformedReplyError(ValueError):
    """A 200 reply that is not a chat completion (retried like a transport failure)."""


def _reply(response: object) -> _Reply:
    """Read a chat-completion JSON body (plain dicts: parsing it into models costs CPU).

    Raises:
        _MalformedReplyError: the body is not a chat completion.
    """
    try:
        return _read_reply(response)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _MalformedReplyError(f"the reply is not a chat completion ({exc!r})") from None


def _read_reply(response: object) -> _Reply:
    if not isinstance(response, dict):
        raise _MalformedReplyError(f"the reply is not a JSON object: {str(response)[:200]!r}")
    usage = response.get("usage") or {}
    tokens = TokenUsage(prompt_tokens=int(usage.get("prompt_tokens") or 0),
                        completion_tokens=int(usage.get("completion_tokens") or 0))
    choices = response.get("choices")
    if not isinstance(choices, list):
        raise _MalformedReplyError("the reply has no 'choices' list")
    if not choices:
        return _Reply("", None, tokens, [])
    choice = choices[0]
    message = choice.get("message") or {}
    positions: list[tuple[str, list[tuple[str, float]]]] = []
    for item in (choice.get("logprobs") or {}).get("content") or []:
        top = [(str(alt["token"]), float(alt["logprob"])) for alt in item.get("top_logprobs")
               or []]
        positions.append((str(item["token"]), top or [(str(item["token"]),
                                                       float(item["logprob"]))]))
    return _Reply(str(message.get("content") or ""), choice.get("finish_reason"), tokens,
                  positions)


def _describe(exc: BaseException) -> str:
    status = getattr(exc, "status_code", None)
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    kind = f"HTTP {status}" if status is not None else type(exc).__name__
    return f"{kind}: {message}"[:500]


def _retry_after(exc: BaseException) -> float | None:
    """Seconds a ``Retry-After`` (or ``retry-after-ms``) header asks to wait, if any."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    milliseconds = headers.get("retry-after-ms")
    if milliseconds is not None:
        try:
            return max(0.0, float(milliseconds) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, parsed.timestamp() - time.time())
