"""The LLM judge: any OpenAI-compatible chat-completions endpoint, called with ``AsyncOpenAI``.

Failures in transit (429, 408/409, 5xx, timeouts, dropped connections, a body that is not
JSON) are retried with exponential backoff and jitter, waiting what a ``Retry-After`` header
asks but never longer than ``backoff.max_s`` (an endpoint asking for an hour would otherwise
park every worker silently); a wait over ``LONG_WAIT_S`` is shown with its reason. When
``retries`` are spent the run stops with ``JudgeError`` (everything finished is on disk, a
rerun resumes). A reply whose verdict cannot be read is asked again ``invalid_retries``
times, then returned invalid with its text: that is the judge's answer. Each retry changes
what can change the reply (``retry_plan``): the fences show new ids, and a judge that does
not sample (temperature below ``retry_temperature``) is sampled at ``retry_temperature``;
asking a greedy judge the identical request would buy the identical reply. A request the
endpoint rejects (other 4xx) is not an answer: it comes back as ``Outcome.rejected`` and is
never stored, so a rerun after fixing the endpoint judges the game. A bad key or an unknown
model stops the run with a ``UserError``; ``probe_judge`` finds those before any work starts.

Every call passes the judge's ``Pacer`` (``pacing.py``): a concurrency slot that 429s shrink,
the config's requests- and tokens-per-minute budgets, and the holds the server's rate-limit
headers ask for. A request is booked at an estimate of its tokens (the messages' characters
at the ratio past replies showed, four per token before the first, plus the mean completion
so far, ``max_tokens`` before the first) and corrected to the reply's ``usage``. A 429 while
other calls are being answered is the endpoint pacing the client, not failing: it does not
use up ``retries`` (up to ``PACED_RETRIES`` per call), so a storm of 429s drops no game.

The API key is read from the environment variable the config names, used for the client
only, and scrubbed from every text this module returns. Credentials in the URL
(``user:pass@host``) are never sent: HTTP clients would turn them into Basic auth.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from evalharness.errors import JudgeError, MissingExtraError, UserError
from evalharness.judging.base import Outcome
from evalharness.judging.config import JudgeConfig
from evalharness.judging.pacing import Pacer, read_rate_headers
from evalharness.judging.templates import GameText, render, values_for
from evalharness.judging.verdicts import (
    Verdict,
    parse_verdict,
    verdict_from_weight,
    weight_from_positions,
)
from evalharness.keys import content_key
from evalharness.redact import redact_text, remember_secret, strip_userinfo
from evalharness.schema import TokenUsage

RETRYABLE_STATUS = frozenset({408, 409, 429})
REJECTIONS_BEFORE_GIVING_UP = 5
"""Rejected requests (4xx) with no success at all before the run stops: the endpoint, not
one game, is the problem (a model without logprobs, a wrong request shape)."""
NO_KEY = "not-needed"
LONG_WAIT_S = 5.0
"""Waits between retries longer than this are shown (with their reason) while they last."""
PROBE_TIMEOUT_S = 15.0
"""Most seconds the probe waits for the endpoint (a judge's own timeout may be minutes)."""
PACED_RETRIES = 50
"""Most 429s one call may get without using up ``retries``, while other calls are answered:
a server that paces us is retried patiently, but a request it will never take (one larger
than the whole tokens-per-minute limit is answered 429 forever) still ends."""
RAW_RESPONSE = ("X-Stainless-Raw-Response", "true")
"""The request header asking the ``openai`` client for the raw response (what its
``with_raw_response`` sets): the body parsed as before, plus the headers the pacer reads."""


def api_key_for(config: JudgeConfig, environ: Mapping[str, str] | None = None) -> str:
    """The API key from the variable ``config.api_key_env`` names.

    Credentials written into the URL (``user:password@host``) are never used: HTTP clients
    would send them as Basic auth in place of the key, so a URL holding them needs the key
    in the variable.

    Raises:
        UserError: the variable is not set (naming the variable, never a value), or the URL
            holds credentials and no key variable is set.
    """
    environ = os.environ if environ is None else environ
    key = environ.get(config.api_key_env, "") if config.api_key_env is not None else ""
    if strip_userinfo(config.base_url) != config.base_url and not key.strip():
        variable = config.api_key_env or "OPENAI_API_KEY"
        raise UserError(
            f"the judge URL {config.shown_url.replace('://', '://***@', 1)} holds credentials "
            "(user:password@ before the host); evalharness never sends those (they would go "
            "as Basic auth, replacing the API key) and never writes them anywhere. Fix: put "
            f"the key in the environment variable named by api_key_env (export {variable}="
            f"...; api_key_env is set in {config.folder / 'config.yaml'}) and pass the URL "
            "without the user:password@ part."
        )
    if config.api_key_env is None:
        return NO_KEY
    if not key.strip():
        raise UserError(
            f"judge '{config.name}' needs an API key in the environment variable "
            f"{config.api_key_env}, which is not set. Fix: export {config.api_key_env}=... "
            f"(for a local server that needs no key, set api_key_env: null in "
            f"{config.folder / 'config.yaml'})."
        )
    remember_secret(key)  # an endpoint that echoes the key in an error gets it masked
    return key


def salted_values(game: GameText, salt: str) -> dict[str, str]:
    """``values_for(game)`` with fences whose id also hashes ``salt`` (no salt: unchanged).

    The id is swapped in the fence lines only; an answer cannot hold them (it would have to
    contain a hash of itself), so the swap touches no answer text.

    >>> game = GameText("Q?", "yes", "no")
    >>> plain, salted = salted_values(game, ""), salted_values(game, "retry-1")
    >>> plain == values_for(game), plain["fence_id"] != salted["fence_id"]
    (True, True)
    >>> salted["answer_a"].splitlines()[0] == f"<<<ANSWER A id={salted['fence_id']}>>>"
    True
    """
    values = values_for(game)
    if not salt:
        return values
    old = values["fence_id"]
    new = content_key([old, salt])[:len(old)]
    swapped = {name: text.replace(f" id={old}>>>", f" id={new}>>>")
               for name, text in values.items()}
    return {**swapped, "fence_id": new}


def messages_for(config: JudgeConfig, game: GameText, salt: str = ""
                 ) -> list[dict[str, str]]:
    """The chat messages the judge is sent for ``game`` (``salt``: see ``salted_values``)."""
    values = salted_values(game, salt)
    messages = []
    if config.system_template:
        messages.append({"role": "system", "content": render(config.system_template, values)})
    messages.append({"role": "user", "content": render(config.user_template, values)})
    return messages


@dataclass(frozen=True)
class Attempt:
    """How one call of a game is made: what it mixes into the fence ids, and its temperature."""

    salt: str
    temperature: float


def retry_plan(config: JudgeConfig, attempt: int) -> Attempt:
    """The request of call ``attempt`` of a game (0: the first; 1, 2...: after unreadable
    replies).

    The first call is the judge as configured (its fence ids are the game's, salted only by a
    noise-floor repeat). Every retry shows new fence ids, and is sampled at least at
    ``retry_temperature``: a temperature-0 judge asked the identical request again returns
    the identical reply, so a retry that changed nothing would only spend tokens.

    >>> from pathlib import Path
    >>> greedy = JudgeConfig(name="j", folder=Path("j"))
    >>> retry_plan(greedy, 0), retry_plan(greedy, 2)
    (Attempt(salt='', temperature=0.0), Attempt(salt='retry-2', temperature=0.7))
    >>> from dataclasses import replace
    >>> retry_plan(replace(greedy, temperature=1.0, fence_salt="repeat-1"), 1)
    Attempt(salt='repeat-1/retry-1', temperature=1.0)
    """
    if attempt == 0:
        return Attempt(config.fence_salt, config.temperature)
    salt = "/".join(part for part in (config.fence_salt, f"retry-{attempt}") if part)
    floor = config.retry_temperature
    return Attempt(salt, config.temperature if floor is None
                   else max(config.temperature, floor))


def retry_note(config: JudgeConfig) -> str:
    """What the retries of an unreadable reply changed, for the judgment's ``error``.

    >>> from pathlib import Path
    >>> retry_note(JudgeConfig(name="j", folder=Path("j")))
    'each retry showed new fence ids and was sampled at temperature 0.7'
    """
    temperature = retry_plan(config, 1).temperature
    sampled = ("was sampled at temperature " if temperature != config.temperature
               else "kept the judge's temperature ")
    return f"each retry showed new fence ids and {sampled}{temperature:g}"


class ReplyLike(Protocol):
    """What a judge reads of a reply, from an HTTP endpoint or the local engine alike."""

    @property
    def text(self) -> str: ...
    @property
    def finish_reason(self) -> str | None: ...
    @property
    def usage(self) -> TokenUsage: ...
    @property
    def positions(self) -> list[tuple[str, list[tuple[str, float]]]]: ...


@dataclass(frozen=True)
class Reply:
    """One chat completion, as the judge reads it."""

    text: str
    finish_reason: str | None
    usage: TokenUsage
    positions: list[tuple[str, list[tuple[str, float]]]]


@dataclass(frozen=True)
class Rejected:
    """The endpoint (or the local engine) refused the request: not an answer, not stored."""

    message: str


Ask = Callable[[int], Awaitable[tuple[ReplyLike | Rejected, int]]]
"""Sends attempt ``n`` of one game; returns the reply (or the refusal) and the calls made."""


async def judge_attempts(config: JudgeConfig, ask: Ask) -> Outcome:
    """One game's judgment: ask, read the verdict, and ask again (``invalid_retries``) while
    it cannot be read; the loop of every LLM judge, online or local.

    A refusal ends the game unstored (``Outcome.rejected``); a reply with no readable verdict
    after the last attempt is an invalid judgment that says what the retries changed.
    """
    prompt_tokens = completion_tokens = attempts = 0
    last: ReplyLike | None = None
    error = "no reply"
    for number in range(config.invalid_retries + 1):
        reply, calls = await ask(number)
        attempts += calls
        if isinstance(reply, Rejected):
            return Outcome(None, None, raw="", usage=TokenUsage(
                prompt_tokens=prompt_tokens, completion_tokens=completion_tokens),
                attempts=attempts, rejected=redact_text(reply.message))
        prompt_tokens += reply.usage.prompt_tokens
        completion_tokens += reply.usage.completion_tokens
        last = reply
        verdict, weight = read_verdict(config, reply)
        usage = TokenUsage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
        if verdict.valid:
            return Outcome(verdict.label, verdict.winner, weight, redact_text(reply.text),
                           usage, attempts)
        error = verdict.error or "no verdict"
        if reply.finish_reason == "length":
            error += " (the reply was cut at max_tokens; raise max_tokens)"
    return Outcome(
        None, None, raw=redact_text(last.text if last else ""),
        usage=TokenUsage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens),
        attempts=attempts,
        error=redact_text(f"{error}; gave up after {config.invalid_retries + 1} replies without "
                          "a readable verdict" + (f" ({retry_note(config)})"
                                                 if config.invalid_retries else "")),
    )


Sleep = Callable[[float], Awaitable[None]]
Notify = Callable[[str], None]
"""Shows a line while a long wait lasts (``""`` when no wait is left)."""


def request_body(config: JudgeConfig, game: GameText, attempt: int = 0) -> dict[str, Any]:
    """The chat-completions body of call ``attempt`` of a game: what ``LLMJudge`` sends, and
    a batch line's ``body`` (``batch.py``), so a batch verdict is the online one.

    >>> from pathlib import Path
    >>> body = request_body(JudgeConfig(name="j", folder=Path("j"), model="m",
    ...                                 user_template="A or B?"), GameText("Q?", "a", "b"))
    >>> sorted(body), body["messages"]
    (['max_tokens', 'messages', 'model', 'temperature'], [{'role': 'user', 'content': 'A or B?'}])
    """
    plan = retry_plan(config, attempt)
    body: dict[str, Any] = {"model": config.model,
                            "messages": messages_for(config, game, plan.salt),
                            "temperature": plan.temperature, "max_tokens": config.max_tokens}
    if config.seed is not None:
        body["seed"] = config.seed
    if config.logprob_tokens is not None:
        body.update(logprobs=True, top_logprobs=config.top_logprobs)
    return body


def read_verdict(config: JudgeConfig, reply: ReplyLike) -> tuple[Verdict, float | None]:
    """The verdict of one reply, and the soft preference its log-probs give (if any)."""
    verdict = parse_verdict(reply.text, config.verdicts)
    tokens = config.logprob_tokens
    weight = weight_from_positions(reply.positions, tokens) if tokens is not None else None
    if not verdict.valid and weight is not None and tokens is not None \
            and tokens.position is not None:
        # A judge read at a fixed token answers with the verdict tokens' probabilities there,
        # whatever it sampled (AlpacaEval's weighted judges work this way).
        verdict = verdict_from_weight(weight, config.verdicts)
    return verdict, weight


class LLMJudge:
    """Judges games by asking an OpenAI-compatible endpoint.

    Args:
        config: the judge definition.
        client: an ``openai.AsyncOpenAI`` (made from the config and the key when omitted).
        sleep: how to wait between retries (tests pass a recorder).
        seed: seed of the backoff jitter.
        notify: shows why the judge waits, when a wait is long (the progress bar's ``note``).
        pacer: the rate limiter every call passes (default: ``Pacer.for_config(config)``,
            per-minute budgets; tests pass one with a scaled window or a fake clock).
    """

    def __init__(self, config: JudgeConfig, *, client: Any = None, sleep: Sleep | None = None,
                 seed: int | None = None, notify: Notify | None = None,
                 pacer: Pacer | None = None) -> None:
        self.config = config
        self.url = config.shown_url
        if client is None:
            try:
                import openai
            except ImportError:  # pragma: no cover - openai is a core dependency
                raise MissingExtraError("openai", "openai", "the LLM judge") from None
            client = openai.AsyncOpenAI(base_url=strip_userinfo(config.base_url),
                                        api_key=api_key_for(config), max_retries=0,
                                        timeout=config.timeout_s)
        self._client = client
        self._sleep: Sleep = sleep or asyncio.sleep
        self._notify = notify
        self._waiting = 0
        self._rng = random.Random(seed)
        self._accepted = 0
        self._rejected = 0
        self.pacer = pacer if pacer is not None else Pacer.for_config(config)

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.close()

    async def judge(self, game: GameText) -> Outcome:
        """Judge one game (see the module docstring for what is retried and how)."""

        async def ask(attempt: int) -> tuple[ReplyLike | Rejected, int]:
            return await self._call(request_body(self.config, game, attempt))

        return await judge_attempts(self.config, ask)

    async def _call(self, kwargs: dict[str, Any]) -> tuple[Reply | Rejected, int]:
        import openai

        config = self.config
        chars = sum(len(message["content"]) for message in kwargs["messages"])
        failures = paced = 0  # failures that use up ``retries``; 429s that do not
        while True:
            answered_before = self.pacer.stats.succeeded
            try:
                reply = await self._paced_post(kwargs, chars)
            except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
                raise self._key_refused(exc) from None
            except openai.NotFoundError as exc:
                raise self._not_found(exc, None) from None
            except openai.APIStatusError as exc:
                if exc.status_code < 500 and exc.status_code not in RETRYABLE_STATUS:
                    return self._rejection(exc), failures + paced + 1
                failure: BaseException = exc
            except (openai.APIConnectionError, openai.APIResponseValidationError,
                    json.JSONDecodeError, MalformedReplyError) as exc:
                failure = exc
            else:
                self._accepted += 1
                return reply, failures + paced + 1
            if (getattr(failure, "status_code", None) == 429 and paced < PACED_RETRIES
                    and self.pacer.stats.succeeded > answered_before):
                paced += 1  # others were answered meanwhile: the endpoint paces, not fails
            else:
                failures += 1
            if failures > config.retries:
                also = (f" (and {paced} more HTTP 429s while other calls were answered)"
                        if paced else "")
                raise JudgeError(
                    f"judge '{config.name}' at {self.url}: a call failed "
                    f"{config.retries + 1} times{also}; last error: "
                    f"{redact_text(_describe(failure)).rstrip('.')}."
                    " Everything judged so far is saved; rerun the command to resume. Fix: "
                    "check the endpoint, or raise 'retries' / lower 'concurrency' in "
                    f"{config.folder / 'config.yaml'}."
                ) from None
            await self._wait(failures + paced - 1, failure, failures)

    async def _paced_post(self, kwargs: dict[str, Any], chars: int) -> Reply:
        """One call through the pacer: wait for it, send, and tell it what came back."""
        pacer = self.pacer
        ticket = await pacer.acquire(pacer.estimate(chars))
        try:
            # ``post`` is the client's documented raw route: the same transport, auth and
            # errors as ``chat.completions.create``, without the per-call walks over the
            # request params and the response model that cost ~0.7 ms of CPU each call
            # (a third of the throughput at concurrency 32; benchmarks/).
            response = await self._client.post("/chat/completions", body=kwargs,
                                               cast_to=object,
                                               options={"headers": dict([RAW_RESPONSE])})
            if hasattr(response, "parse"):  # the raw response (a test's client may not)
                headers, body = response.headers, response.parse()
            else:
                headers, body = None, response
            reply = parse_reply(body)
        except BaseException as exc:
            headers = _headers_of(exc)
            if getattr(exc, "status_code", None) == 429:
                pacer.throttled(ticket, headers)
            else:
                pacer.failed(ticket, headers)
            raise
        pacer.succeeded(ticket, headers, prompt_chars=chars,
                        prompt_tokens=reply.usage.prompt_tokens,
                        completion_tokens=reply.usage.completion_tokens)
        return reply

    def _key_refused(self, exc: Any) -> UserError:
        where = (f"${self.config.api_key_env}" if self.config.api_key_env else
                 f"api_key_env in {self.config.folder / 'config.yaml'} (it is null: no key is "
                 "sent)")
        return UserError(
            f"the judge endpoint {self.url} refused the API key ("
            f"{redact_text(_describe(exc))}). Fix: check the key in {where} and that it may "
            f"use model '{self.config.model}'."
        )

    def _not_found(self, exc: Any, served: list[str] | None) -> UserError:
        if served is not None and self.config.model not in served:
            listing = ", ".join(served[:20]) or "none"
            return UserError(
                f"the judge endpoint {self.url} does not serve model '{self.config.model}' "
                f"(it serves: {listing}). Fix: pass --judge-model with one of those (or set "
                f"model in {self.config.folder / 'config.yaml'})."
            )
        return UserError(
            f"the judge endpoint {self.url} answered HTTP 404 for model '{self.config.model}' "
            f"({redact_text(_describe(exc))}). Fix: pass --judge-model with a model it serves, "
            "or --judge-url with the endpoint's OpenAI-compatible base URL (usually ending in "
            "/v1)."
        )

    def _rejection(self, exc: Any) -> Rejected:
        self._rejected += 1
        message = _describe(exc)
        if self._accepted == 0 and self._rejected >= REJECTIONS_BEFORE_GIVING_UP:
            raise JudgeError(
                f"judge '{self.config.name}' at {self.url}: the endpoint rejected "
                f"all of the first {self._rejected} requests; last: {redact_text(message)}. "
                "Nothing rejected was saved. Fix: check that the model and options (logprobs, "
                "max_tokens) are supported, then rerun the command."
            )
        return Rejected(message)

    async def _wait(self, attempt: int, failure: BaseException, counted: int) -> None:
        """Sleep before retry ``attempt + 1`` (the ``counted``-th that uses up ``retries``),
        showing the reason while a long wait lasts."""
        asked = _retry_after(failure)
        delay = self._delay(attempt, asked)
        if delay <= LONG_WAIT_S or self._notify is None:
            await self._sleep(delay)
            return
        cause = _describe(failure).split(":")[0]
        if asked is None:
            which = (f"retry {counted} of {self.config.retries}" if counted
                     else "a retry (other calls are answered: not counted in retries)")
            reason = f"waiting {delay:.0f} s before {which}: {cause}"
        else:
            reason = (f"waiting {delay:.0f} s: the endpoint asked to retry after {asked:g} s "
                      f"({cause})")
            if asked > self.config.backoff_max_s:
                reason += f", capped at backoff.max_s = {self.config.backoff_max_s:g} s"
        self._waiting += 1
        self._notify(f"judge '{self.config.name}': {reason}")
        try:
            await self._sleep(delay)
        finally:
            self._waiting -= 1
            if self._waiting == 0:
                self._notify("")

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds before retry ``attempt + 1``: Retry-After if given, else exponential
        backoff, never over ``backoff_max_s``; with jitter so that concurrent workers do not
        retry in lockstep (except at the cap, which they all reach anyway)."""
        cap = self.config.backoff_max_s
        if retry_after is not None:
            return min(cap, retry_after * (1.0 + 0.1 * self._rng.random()))
        ceiling = min(cap, self.config.backoff_initial_s * 2.0 ** attempt)
        return ceiling * (0.5 + 0.5 * self._rng.random())

    async def probe(self) -> None:
        """One cheap request proving the endpoint is reachable, takes the key and serves the
        model: the model list (free), else a 1-token completion (endpoints without a list,
        or models served under a name the list does not show).

        Raises:
            UserError: naming the endpoint (without credentials), what failed and the fix.
        """
        import openai

        options: Any = {"timeout": min(self.config.timeout_s, PROBE_TIMEOUT_S)}
        served: list[str] | None = None
        try:
            try:
                listing = await self._client.get("/models", cast_to=object, options=options)
                served = _model_ids(listing)
            except openai.APIStatusError as exc:
                if exc.status_code in (401, 403):
                    raise
                served = None  # no model list here: the completion below decides
            if served is not None and self.config.model in served:
                return
            kwargs: dict[str, Any] = {
                "model": self.config.model, "max_tokens": 1, "temperature": 0.0,
                "messages": [{"role": "user", "content": "Reply with the letter A."}]}
            if self.config.logprob_tokens is not None:  # the options judging will send
                kwargs.update(logprobs=True, top_logprobs=self.config.top_logprobs)
            parse_reply(await self._client.post("/chat/completions", body=kwargs, cast_to=object,
                                           options=options))
        except openai.APIConnectionError as exc:
            cause = ("no answer within "
                     f"{options['timeout']:g} s" if isinstance(exc, openai.APITimeoutError)
                     else str(exc.__cause__ or exc) or type(exc).__name__)
            raise UserError(
                f"cannot reach the judge endpoint {self.url} ({redact_text(cause)[:200]}). "
                "Fix: check --judge-url (or base_url in "
                f"{self.config.folder / 'config.yaml'}) and that the server is running."
            ) from None
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise self._key_refused(exc) from None
        except openai.NotFoundError as exc:
            raise self._not_found(exc, served) from None
        except openai.APIStatusError as exc:
            if exc.status_code >= 500 or exc.status_code in RETRYABLE_STATUS:
                return  # reachable but busy: judging retries these
            raise UserError(
                f"the judge endpoint {self.url} rejected a 1-token test request for model "
                f"'{self.config.model}' ({redact_text(_describe(exc))}). Fix: check that the "
                "model supports the judge's options (logprobs, max_tokens, temperature) in "
                f"{self.config.folder / 'config.yaml'}."
            ) from None
        except (openai.APIResponseValidationError, json.JSONDecodeError,
                MalformedReplyError) as exc:
            raise UserError(
                f"the judge endpoint {self.url} answered a test request with something that "
                f"is not a chat completion ({redact_text(_describe(exc))[:200]}). Fix: point "
                "--judge-url at an OpenAI-compatible API (usually ending in /v1)."
            ) from None
        finally:
            await self.aclose()


def probe_judge(config: JudgeConfig) -> None:
    """Check before any work that an LLM judge's endpoint answers, takes the key and serves
    the model (one cheap request; nothing for the offline reference judge).

    Raises:
        UserError: the key is missing, the URL holds credentials, or the endpoint cannot be
            reached, refuses the key, does not serve the model or rejects the request.
    """
    if config.kind != "llm":
        return
    asyncio.run(LLMJudge(config).probe())


def _model_ids(listing: object) -> list[str] | None:
    """Model ids of a ``/models`` reply; ``None`` when it is not a model list."""
    data = listing.get("data") if isinstance(listing, dict) else None
    if not isinstance(data, list):
        return None
    return [str(item["id"]) for item in data if isinstance(item, dict) and "id" in item]


class MalformedReplyError(ValueError):
    """A 200 reply that is not a chat completion (retried like a transport failure)."""


def parse_reply(response: object) -> Reply:
    """Read a chat-completion JSON body (plain dicts: parsing it into models costs CPU).

    Raises:
        MalformedReplyError: the body is not a chat completion.
    """
    try:
        return _read_reply(response)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise MalformedReplyError(f"the reply is not a chat completion ({exc!r})") from None


def _read_reply(response: object) -> Reply:
    if not isinstance(response, dict):
        raise MalformedReplyError(f"the reply is not a JSON object: {str(response)[:200]!r}")
    usage = response.get("usage") or {}
    tokens = TokenUsage(prompt_tokens=int(usage.get("prompt_tokens") or 0),
                        completion_tokens=int(usage.get("completion_tokens") or 0))
    choices = response.get("choices")
    if not isinstance(choices, list):
        raise MalformedReplyError("the reply has no 'choices' list")
    if not choices:
        return Reply("", None, tokens, [])
    choice = choices[0]
    message = choice.get("message") or {}
    positions: list[tuple[str, list[tuple[str, float]]]] = []
    for item in (choice.get("logprobs") or {}).get("content") or []:
        top = [(str(alt["token"]), float(alt["logprob"])) for alt in item.get("top_logprobs")
               or []]
        positions.append((str(item["token"]), top or [(str(item["token"]),
                                                       float(item["logprob"]))]))
    return Reply(str(message.get("content") or ""), choice.get("finish_reason"), tokens,
                  positions)


def _describe(exc: BaseException) -> str:
    status = getattr(exc, "status_code", None)
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    kind = f"HTTP {status}" if status is not None else type(exc).__name__
    message = re.sub(r"^Error code: \d+ - ", "", message)  # the openai client's prefix
    return redact_text(f"{kind}: {message}")[:500]


def _headers_of(exc: BaseException) -> Any:
    """The headers of the response an exception carries (``None`` without one)."""
    return getattr(getattr(exc, "response", None), "headers", None)


def _retry_after(exc: BaseException) -> float | None:
    """Seconds a ``Retry-After`` (or ``retry-after-ms``) header asks to wait, if any."""
    return read_rate_headers(_headers_of(exc)).retry_after_s
