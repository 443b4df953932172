"""The local judge: an LLM judge run by vLLM's offline engine inside this process.

``--judge-backend vllm`` (``backend: vllm`` in a judge's ``config.yaml``) judges with the
model named by ``model`` (a local folder or a hub name) without a server: no second process
to start, no HTTP between the harness and the model, and every pending game goes to the
engine in one batched call, where the judge's system prompt, the same in every game, is
computed once and then served from vLLM's prefix cache.

The judging stage is unchanged: it still calls ``judge(game)`` once per game from its pool of
async workers. ``LocalJudge`` gathers the calls that arrive together (until ``max_batch`` are
waiting, or ``window_s`` after the first) and sends them to the engine as one batch, run in a
worker thread so the event loop keeps appending finished judgments; the replies go back to the
waiting callers. The stage's ``concurrency`` therefore sets the batch size: ``as_local``
raises it to ``LOCAL_BATCH`` so that all pending games (up to that many) share one call.

Everything after the reply is the HTTP judge's (``judging.llm``): the same messages, the same
verdict parsing and log-prob reading, the same retries of an unreadable reply (new fence ids,
sampled at ``retry_temperature``), the same invalid records, and a request the engine refuses
(a game longer than the judge's context) comes back as ``Outcome.rejected``, as a server's 400
would: not stored, judged again by a rerun. The judge's fingerprint does not hold the backend,
so a game judged here and the same game judged by the same model behind ``vllm serve`` share
one key: either resumes the other's run.

The engine is started on the first game (a rerun with nothing to judge never loads the judge
model) and ended in ``aclose``: its EngineCore process stopped and the client threads joined,
so nothing of it is left at interpreter exit (see ``backends.vllm_engine.end_engine``).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from evalharness import signals
from evalharness.errors import BackendError, JudgeError, UserError, require_module
from evalharness.judging.base import Outcome
from evalharness.judging.config import JudgeConfig
from evalharness.judging.llm import (
    Rejected,
    ReplyLike,
    judge_attempts,
    messages_for,
    retry_plan,
)
from evalharness.judging.prices import Price
from evalharness.judging.templates import GameText
from evalharness.schema import TokenUsage

log = logging.getLogger(__name__)

WINDOW_S = 0.02
"""How long the first call of a batch waits for the others. The stage's workers all call
within one turn of the event loop, so this only needs to cover scheduling jitter."""
STOP_WAIT_S = 60.0
"""Longest wait, when the judge is closed, for an engine call in flight to abort."""

Position = tuple[str, list[tuple[str, float]]]
"""A generated token and its top alternatives, as ``verdicts.weight_from_positions`` reads."""
Message = dict[str, str]


def as_local(config: JudgeConfig, *, model: str | None = None, concurrency: int | None = None,
             keep_price: bool = False) -> JudgeConfig:
    """``config`` judged by the local engine (``--judge-backend vllm``): see
    ``JudgeConfig.with_overrides``, which sets the batch size (``LOCAL_BATCH`` at least,
    unless ``concurrency`` is given) and drops the hosted prices unless ``keep_price``.

    >>> from pathlib import Path
    >>> local = as_local(JudgeConfig(name="j", folder=Path("j"), model="m",
    ...                              price_input_per_1k=1.0))
    >>> local.backend, local.concurrency, local.price_input_per_1k, local.price_source
    ('vllm', 256, 0.0, 'local vLLM engine: 0')
    >>> local.fingerprint == JudgeConfig(name="j", folder=Path("j"), model="m").fingerprint
    True
    """
    price = Price(config.price_input_per_1k, config.price_output_per_1k) if keep_price else None
    local = config.with_overrides(model=model, concurrency=concurrency, backend="vllm",
                                  price=price)
    return replace(local, price_source=config.price_source) if keep_price else local


def probe_local_judge(config: JudgeConfig) -> None:
    """What can be checked before any model is loaded: vLLM is installed, and a model given
    as a path exists (a hub name is resolved by vLLM when the engine starts).

    Raises:
        MissingExtraError: vLLM is not installed.
        UserError: the model looks like a path and is not there.
    """
    from evalharness.backends.lora_plan import vllm_extra

    require_module("vllm", vllm_extra(), "The local judge (--judge-backend vllm)")
    model = config.model
    if model.startswith(("/", "./", "../", "~")) and not Path(model).expanduser().exists():
        raise UserError(
            f"the local judge's model {model} does not exist. Fix: pass --judge-model with "
            "a model folder (config.json and weights) or a hub name vLLM can load, or set "
            f"'model' in {config.folder / 'config.yaml'}.")


@dataclass(frozen=True)
class ChatRequest:
    """One conversation to complete, with the temperature of its attempt."""

    messages: list[Message]
    temperature: float


@dataclass(frozen=True)
class Completion:
    """The engine's reply to one ``ChatRequest`` (what an HTTP chat completion carries)."""

    text: str
    finish_reason: str | None
    usage: TokenUsage
    positions: list[Position] = field(default_factory=list)


@dataclass(frozen=True)
class Refused:
    """The engine refused the request (vLLM's validation message), as a server's 400."""

    message: str


Reply = Completion | Refused


class ChatEngine(Protocol):
    """What ``LocalJudge`` needs of an engine (``VLLMChatEngine``; tests pass fakes)."""

    @property
    def started(self) -> bool:
        """Whether the model is loaded."""
        ...

    def start(self) -> None:
        """Load the model (called in the event loop's thread, before the first batch)."""
        ...

    def run(self, requests: Sequence[ChatRequest]) -> list[Reply]:
        """Complete every request in one engine call (called in a worker thread)."""
        ...

    def cancel(self) -> None:
        """Make a ``run`` in flight stop soon (from another thread)."""
        ...

    def close(self) -> None:
        """End the engine and everything it started."""
        ...


class _StoppedError(Exception):
    """A ``run`` stopped by ``cancel`` (the judge is closing)."""


class VLLMChatEngine:
    """A ``vllm.LLM`` serving one judge's chat requests.

    Args:
        config: the judge (its ``model``, ``max_tokens``, ``seed``, log-prob settings).
        dtype: model dtype (default: float32 on the CPU build, auto elsewhere, as the
            candidates' engine).
        max_model_len: context length (default: the model's).
        gpu_memory_utilization: vLLM's share of GPU memory (GPU builds only).
        log_path: where vLLM's log goes (default: vLLM's own logging, at WARNING).
    """

    def __init__(self, config: JudgeConfig, *, dtype: str | None = None,
                 max_model_len: int | None = None,
                 gpu_memory_utilization: float | None = None,
                 log_path: Path | None = None) -> None:
        self.config = config
        self.dtype = dtype
        self.max_model_len = max_model_len
        self.gpu_memory_utilization = gpu_memory_utilization
        self.log_path = log_path
        self._llm: Any = None
        self._defaults: dict[str, Any] = {}
        self._stop = threading.Event()
        self._busy = threading.Lock()

    @property
    def started(self) -> bool:
        """Whether the model is loaded."""
        return self._llm is not None

    def start(self) -> None:
        """Start the engine (once), with the settings the candidates' engine uses on this
        build. Main thread: an interrupt while vLLM waits for its engine is carried through
        (``signals.not_swallowed``) rather than swallowed by vLLM.

        Raises:
            BackendError: vLLM could not start an engine for the model.
        """
        if self._llm is not None:
            return
        from evalharness.backends.lora_plan import apply_cpu_environment, is_cpu_build, vllm_extra
        from evalharness.backends.vllm_engine import end_processes, log_to_file, started_since

        require_module("vllm", vllm_extra(), "The local judge (--judge-backend vllm)")
        cpu = is_cpu_build()
        if cpu:
            apply_cpu_environment()
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        if self.log_path is not None:
            log_to_file(self.log_path)
        from vllm import LLM

        options: dict[str, Any] = {
            "model": self.config.model, "dtype": self.dtype or ("float32" if cpu else "auto"),
            "seed": 0, "use_tqdm_on_load": False,
            # The system prompt opens every game: its KV blocks are computed once.
            "enable_prefix_caching": True}
        if self.max_model_len is not None:
            options["max_model_len"] = self.max_model_len
        if self.gpu_memory_utilization is not None and not cpu:
            options["gpu_memory_utilization"] = self.gpu_memory_utilization
        before = {process.pid for process in multiprocessing.active_children()}
        try:
            with signals.not_swallowed():
                self._llm = LLM(**options)
        except Exception as exc:  # vLLM raises many types while starting an engine
            end_processes(started_since(before))
            raise BackendError(f"vLLM could not start an engine for the judge model "
                               f"{self.config.model}: {exc}") from exc
        except BaseException:
            if self._llm is None:
                end_processes(started_since(before))
            raise
        # The sampling defaults the model's generation_config.json asks for (top_p, top_k,
        # repetition penalty): ``vllm serve`` applies them to every chat request that does
        # not set them, so the local judge does too, and both give the same replies.
        diff = getattr(self._llm.llm_engine.model_config, "get_diff_sampling_param", None)
        self._defaults = dict(diff()) if callable(diff) else {}

    def _params(self, temperature: float) -> Any:
        from vllm import SamplingParams

        settings: dict[str, Any] = {**self._defaults, "temperature": temperature,
                                    "max_tokens": self.config.max_tokens}
        if self.config.seed is not None:
            settings["seed"] = self.config.seed
        if self.config.logprob_tokens is not None:
            settings["logprobs"] = self.config.top_logprobs
        return SamplingParams(**settings)

    def run(self, requests: Sequence[ChatRequest]) -> list[Reply]:
        """Complete ``requests`` in one engine call; a request the engine refuses is found
        by halving the batch (a refusal is rare: one game too long for the context)."""
        with self._busy:
            if self._stop.is_set():
                raise _StoppedError
            params: dict[float, Any] = {}
            for request in requests:
                if request.temperature not in params:
                    params[request.temperature] = self._params(request.temperature)
            return self._run(list(requests), params)

    def _run(self, requests: list[ChatRequest], params: Mapping[float, Any]) -> list[Reply]:
        from vllm.exceptions import VLLMClientError

        llm = self._llm
        try:
            # ``LLM.chat`` is this enqueue and a loop over ``step`` to the end; the loop is
            # written out to be stoppable between steps (``cancel``).
            ids: list[str] = llm.enqueue_chat([r.messages for r in requests],
                                              [params[r.temperature] for r in requests],
                                              use_tqdm=False)
        except (VLLMClientError, ValueError) as exc:  # vLLM aborts what it had enqueued
            if len(requests) == 1:
                return [Refused(f"{type(exc).__name__}: {exc}")]
            half = len(requests) // 2
            return self._run(requests[:half], params) + self._run(requests[half:], params)
        engine = llm.llm_engine
        finished: list[Any] = []
        while engine.has_unfinished_requests():
            if self._stop.is_set():
                engine.abort_request(ids, internal=True)  # the ids enqueue returns
                raise _StoppedError
            finished.extend(output for output in engine.step() if output.finished)
        if len(finished) != len(requests):
            raise BackendError(f"vLLM returned {len(finished)} replies for {len(requests)} "
                               "requests")
        # As ``LLM.chat`` does: outputs carry the numbers vLLM gave the requests in order.
        finished.sort(key=lambda output: int(output.request_id))
        return [_completion(output, self.config.top_logprobs) for output in finished]

    def cancel(self) -> None:
        """Make a ``run`` in flight abort its requests at its next engine step."""
        self._stop.set()

    def close(self) -> None:
        """Stop what runs, then end the engine: its EngineCore process and client threads
        (``end_engine``); interrupts wait until that is done (``signals.deferred``)."""
        from evalharness.backends.vllm_engine import end_engine

        self._stop.set()
        if not self._busy.acquire(timeout=STOP_WAIT_S):
            log.warning("the judge's vLLM call did not stop within %.0f s", STOP_WAIT_S)
        else:
            self._busy.release()
        llm, self._llm = self._llm, None
        if llm is not None:
            with signals.deferred():
                end_engine(llm)


def _completion(output: Any, top: int) -> Completion:
    """A ``vllm.RequestOutput`` as the HTTP judge reads a chat completion."""
    completion = output.outputs[0]
    token_ids = list(completion.token_ids)
    usage = TokenUsage(prompt_tokens=len(output.prompt_token_ids or ()),
                       completion_tokens=len(token_ids))
    return Completion(str(completion.text), completion.finish_reason, usage,
                      positions_from(token_ids, completion.logprobs, top))


def positions_from(token_ids: Sequence[int], logprobs: Sequence[Mapping[int, Any] | None] | None,
                   top: int) -> list[Position]:
    """vLLM's per-token log-prob dicts as ``(token, [(alternative, logprob), ...])``, exactly
    as ``vllm serve`` writes them into a chat completion's ``logprobs.content``: the first
    ``top`` entries of each dict in vLLM's order (the sampled token first, then by rank),
    log-probs clamped at -9999.

    >>> from types import SimpleNamespace as L
    >>> step = {7: L(logprob=-0.1, rank=1, decoded_token=" A"),
    ...         8: L(logprob=-2.5, rank=2, decoded_token=" B"),
    ...         9: L(logprob=-3.0, rank=3, decoded_token="x")}
    >>> positions_from([7], [step], 2)
    [(' A', [(' A', -0.1), (' B', -2.5)])]
    >>> positions_from([7], None, 2)
    []
    """
    positions: list[Position] = []
    if not logprobs:
        return positions
    for token_id, step in zip(token_ids, logprobs, strict=False):
        if step is None or step.get(token_id) is None:
            positions.append(("", []))  # kept, so that ``logprobs.position`` counts alike
            continue
        token = str(step[token_id].decoded_token or "")
        alternatives = [(str(value.decoded_token or ""), max(float(value.logprob), -9999.0))
                        for _, value in zip(range(top), step.values(), strict=False)]
        positions.append((token, alternatives))
    return positions


@dataclass
class _Waiting:
    request: ChatRequest
    future: asyncio.Future[Reply]


Notify = Callable[[str], None]


class LocalJudge:
    """Judges games with a model in vLLM's offline engine (see the module docstring).

    Args:
        config: the judge definition (``backend: vllm``; ``model`` is what vLLM loads).
        engine: the engine (default: a ``VLLMChatEngine`` for ``config``, started on the
            first game and ended by ``aclose``).
        max_batch: most games per engine call (default: ``config.concurrency``, which also
            bounds how many the stage has waiting at once).
        window_s: how long a batch's first game waits for the others.
        notify: shows a line while the judge model loads (the progress bar's ``note``).
    """

    def __init__(self, config: JudgeConfig, *, engine: ChatEngine | None = None,
                 max_batch: int | None = None, window_s: float = WINDOW_S,
                 notify: Notify | None = None) -> None:
        self.config = config
        self.engine: ChatEngine = engine if engine is not None else VLLMChatEngine(config)
        self.max_batch = max(1, max_batch if max_batch is not None else config.concurrency)
        self.window_s = window_s
        self.batches: list[int] = []
        """Size of each engine call made (for tests and benchmarks)."""
        self._notify = notify
        self._waiting: list[_Waiting] = []
        self._timer: asyncio.TimerHandle | None = None
        self._drainer: asyncio.Task[None] | None = None
        self._closed = False

    async def judge(self, game: GameText) -> Outcome:
        """Judge one game: the HTTP judge's loop (``llm.judge_attempts``) over engine replies."""
        config = self.config

        async def ask(attempt: int) -> tuple[ReplyLike | Rejected, int]:
            plan = retry_plan(config, attempt)
            reply = await self._ask(ChatRequest(messages_for(config, game, plan.salt),
                                                plan.temperature))
            if isinstance(reply, Refused):
                return Rejected(f"the local engine refused the request ({reply.message})"), 1
            return reply, 1

        return await judge_attempts(config, ask)

    async def _ask(self, request: ChatRequest) -> Reply:
        """Queue one request for the next batch and wait for its reply."""
        if self._closed:
            raise JudgeError(f"judge '{self.config.name}': the local engine is closed")
        loop = asyncio.get_running_loop()
        waiting = _Waiting(request, loop.create_future())
        self._waiting.append(waiting)
        if len(self._waiting) >= self.max_batch:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.window_s, self._flush)
        return await waiting.future

    def _flush(self) -> None:
        """Start sending what waits, unless a batch is being sent (it sends the rest next)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        """Send the waiting requests, ``max_batch`` per engine call, one call at a time (the
        engine is not thread-safe), until none waits."""
        while self._waiting:
            batch = self._waiting[:self.max_batch]
            del self._waiting[:len(batch)]
            try:
                if not self.engine.started:
                    self._start_engine()
                self.batches.append(len(batch))
                replies = await asyncio.to_thread(self.engine.run,
                                                  [w.request for w in batch])
            except BaseException as exc:
                # The engine failed (or the judge is closing): every caller gets the error,
                # the stage stops; what was judged before is on disk, a rerun resumes.
                failure = exc if not isinstance(exc, Exception) or isinstance(
                    exc, (JudgeError, BackendError, UserError)) else JudgeError(
                    f"judge '{self.config.name}': the local vLLM engine failed "
                    f"({type(exc).__name__}: {exc}). Everything judged so far is saved; "
                    "rerun the command to resume.")
                for waiting in [*batch, *self._waiting]:
                    if not waiting.future.done():
                        waiting.future.set_exception(failure)
                self._waiting.clear()
                if not isinstance(exc, Exception):
                    raise
                return
            for waiting, reply in zip(batch, replies, strict=True):
                if not waiting.future.done():  # a caller cancelled meanwhile
                    waiting.future.set_result(reply)

    def _start_engine(self) -> None:
        """Load the judge model (blocking the event loop: no game can be judged meanwhile,
        and interrupts reach vLLM's start-up only in the main thread)."""
        if self._notify is not None:
            self._notify(f"loading the judge model {self.config.model} into vLLM")
        started = time.perf_counter()
        try:
            self.engine.start()
        finally:
            if self._notify is not None:
                self._notify("")
        log.info("judge engine for %s started in %.1f s", self.config.model,
                 time.perf_counter() - started)

    async def aclose(self) -> None:
        """Stop a batch in flight, then end the engine (nothing is left running)."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        drainer, self._drainer = self._drainer, None
        cancelled = False
        if drainer is not None and not drainer.done():
            self.engine.cancel()
            try:
                await asyncio.wait_for(asyncio.shield(drainer), STOP_WAIT_S)
            except asyncio.CancelledError:
                cancelled = True  # closed while being cancelled: close first, then go on
            except Exception:  # its callers were given the error already
                pass
        for waiting in self._waiting:
            waiting.future.cancel()
        self._waiting.clear()
        self.engine.close()  # waits for a call still in the thread, then ends the engine
        if cancelled:
            raise asyncio.CancelledError
