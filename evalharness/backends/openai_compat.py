"""Generate and score through any OpenAI-compatible endpoint, or a vLLM server we start.

- ``--backend vllm-server``: evalharness starts ``vllm serve BASE --enable-lora`` on a free
  loopback port, hot-loads every adapter under its content-hash name, and stops it at the end.
- ``--backend openai --endpoint URL``: attach to a running server (an existing vLLM
  deployment, say). Adapter folders are hot-loaded onto it the same way when it allows runtime
  LoRA updates; the baseline is the base model it serves. ``--endpoint`` repeated spreads the
  work over several such servers (``evalharness.backends.pool``: each adapter on one server,
  the baseline on all, a server that dies has its work moved to the others).

Answers come from the chat completions API (the server applies the model's chat template).
Perplexity comes from the completions API with ``echo`` and ``logprobs`` on the token ids
evalharness computes, so the scored tokens are exactly those of the other backends; that needs
the base model's tokenizer locally.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, TypeVar

from evalharness.backends.base import (
    Generation,
    GenRequest,
    Scored,
    ScoreRequest,
    adapter_name,
)
from evalharness.backends.lora_plan import is_cpu_build, plan_lora, round_up_rank, vllm_extra
from evalharness.backends.options import BackendOptions
from evalharness.backends.pool import PoolBackend
from evalharness.backends.tokens import scoring_ids, scoring_windows
from evalharness.backends.vllm_engine import sampling_seed
from evalharness.backends.vllm_server import VLLMServer
from evalharness.errors import BackendError, BackendLostError, UserError, require_module
from evalharness.schema import GenConfig, ModelSpec

T = TypeVar("T")
R = TypeVar("R")
SERVER_LOG = "vllm-server.log"
GONE_STATUSES = frozenset({502, 503, 504})
"""Statuses that say the server (or the proxy before it) is not serving, after the client's
own retries: a server that is shutting down, not a request it cannot answer."""
log = logging.getLogger(__name__)
_TOKENIZER_LOCK = threading.RLock()


class OpenAIBackend:
    """Requests to an OpenAI-compatible server, ``concurrency`` at a time.

    Args:
        base_url: the server's ``/v1`` URL (filled in by ``prepare`` when we start it).
        api_key: the key sent (local servers accept any; never stored).
        concurrency: requests in flight.
        server: a server to start in ``prepare`` and stop in ``close``.
    """

    def __init__(self, name: str, base_url: str | None, api_key: str, concurrency: int,
                 server_factory: Callable[[Sequence[ModelSpec]], VLLMServer] | None = None
                 ) -> None:
        require_module("openai", "hf", f"The {name} backend")
        self.name = name
        self.base_url = base_url
        self.api_key = api_key
        self.concurrency = concurrency
        self._server_factory = server_factory
        self.server: VLLMServer | None = None
        self._client: Any = None
        self._served: dict[str, str] = {}  # model key -> served model name
        self._tokenizers: dict[str, Any] = {}
        self._attached_loads: list[str] = []  # adapters we loaded onto a server we do not own
        self._context: int | None = None  # the server's context length, when it says
        self._base_name = ""  # the name the server serves the base model under
        # Requests in flight on this server, over every call at once: a pool member that
        # took over a lost member's batch runs two calls, and still sends `concurrency`.
        self._slots = threading.BoundedSemaphore(concurrency)

    @property
    def attached(self) -> bool:
        """Whether the server is someone else's (``--endpoint``): its flags are not ours."""
        return self._server_factory is None

    def prepare(self, models: Sequence[ModelSpec]) -> None:
        """Start the server if we own one, then make every model servable by name."""
        import openai

        if self._server_factory is not None and self.server is None:
            self.server = self._server_factory(models)
            self.server.start()
            self.base_url = self.server.url
        assert self.base_url is not None
        if self._client is None:  # a pool prepares a member again with adapters moved to it
            self._client = openai.OpenAI(base_url=self.base_url, api_key=self.api_key,
                                         max_retries=3, timeout=600.0)
            self._base_name = self._base_model_name(models)
        base_name = self._base_name
        for model in models:
            if model.kind == "adapter":
                name = adapter_name(model)
                if name not in self._served.values():
                    self._load_adapter(model, name)
                self._served[model.key] = name
            else:
                self._served[model.key] = base_name if model.kind == "base" else model.base_model

    def _base_model_name(self, models: Sequence[ModelSpec]) -> str:
        import openai

        try:
            listed = self._client.models.list().data
        except openai.APIConnectionError:
            raise UserError(f"cannot reach the endpoint {self.base_url}. Fix: check the server "
                            "is running and the URL ends in /v1 (--endpoint).") from None
        except openai.AuthenticationError:
            raise UserError(f"the endpoint {self.base_url} refused the API key. Fix: set the "
                            "right key in the variable named by --api-key-env.") from None
        roots = [m.id for m in listed if getattr(m, "parent", None) in (None, "")]
        # vLLM lists each model's context length; other servers may not (then None).
        self._context = next((int(m.max_model_len) for m in listed
                              if isinstance(getattr(m, "max_model_len", None), int)), None)
        wanted = next((m.base_model for m in models if m.kind in {"base", "adapter"}), None)
        if wanted in roots or not roots:
            return wanted or ""
        return str(roots[0])

    def _load_adapter(self, model: ModelSpec, name: str) -> None:
        assert model.adapter is not None
        if self.server is not None:
            self.server.load_adapter(name, model.adapter)
            return
        response = self._lora_admin("load_lora_adapter",
                                    {"lora_name": name, "lora_path": model.adapter})
        if response.status_code == 200:
            self._attached_loads.append(name)
        elif "already" not in response.text:
            rank = round_up_rank(model.lora_rank or 1)
            raise UserError(f"the endpoint {self.base_url} did not load adapter {model.adapter} "
                            f"(HTTP {response.status_code}: {response.text[:300]}). Fix: "
                            "make the folder readable by the server at this path, and "
                            "restart your server with --enable-lora --max-lora-rank "
                            f"{rank} or more and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True in its "
                            "environment (README, 'Attach mode'), or let evalharness start "
                            "one (--backend vllm-server).")

    def _lora_admin(self, action: str, body: dict[str, str]) -> Any:
        import httpx

        url = self.base_url.rstrip("/") if self.base_url else ""
        try:
            return httpx.post(f"{url}/{action}", json=body,
                              headers={"Authorization": f"Bearer {self.api_key}"}, timeout=120)
        except httpx.TransportError as exc:
            raise BackendLostError(f"cannot reach the endpoint {self.base_url} ({exc}); what "
                                   "finished is saved. Fix: check the server is running; "
                                   "rerun to resume.") from None

    def _parallel(self, items: Sequence[T], call: Callable[[T], R]) -> Iterator[R]:
        import openai

        def limited(item: T) -> R:
            with self._slots:
                return call(item)

        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures: list[Future[R]] = [pool.submit(limited, item) for item in items]
            try:
                for future in as_completed(futures):
                    try:
                        yield future.result()
                    except openai.APIConnectionError:
                        raise BackendLostError(f"lost the endpoint {self.base_url} mid-run; "
                                               "what finished is saved. Fix: restart the "
                                               "server and rerun to resume.") from None
                    except openai.APIStatusError as exc:
                        if exc.status_code in GONE_STATUSES:
                            raise BackendLostError(
                                f"the endpoint {self.base_url} stopped serving mid-run (HTTP "
                                f"{exc.status_code}); what finished is saved. Fix: restart "
                                "the server and rerun to resume.") from None
                        raise BackendError(f"the endpoint answered HTTP {exc.status_code}: "
                                           f"{str(exc)[:300]}") from exc
            finally:
                for future in futures:
                    future.cancel()

    def generate(self, requests: Sequence[GenRequest], gen: GenConfig) -> Iterator[Generation]:
        """Chat completions, ``concurrency`` at a time, yielded as each finishes."""

        truncation = self._truncation(gen)

        def one(request: GenRequest) -> Generation:
            start = time.perf_counter()
            options: dict[str, Any] = {"temperature": gen.temperature, "top_p": gen.top_p,
                                       **truncation}
            if gen.temperature > 0:
                options["seed"] = sampling_seed(request.key)
            response = self._client.chat.completions.create(
                model=self._served[request.model.key],
                messages=[m.model_dump() for m in request.prompt.messages],
                max_tokens=gen.max_new_tokens, stop=list(gen.stop) or None, **options,
            )
            choice = response.choices[0]
            usage = response.usage
            return Generation(
                request=request, text=choice.message.content or "",
                n_tokens=answer_tokens(usage.completion_tokens if usage else 0, choice),
                finish_reason="length" if choice.finish_reason == "length" else "stop",
                seconds=time.perf_counter() - start,
            )

        yield from self._parallel(requests, one)

    def _truncation(self, gen: GenConfig) -> dict[str, Any]:
        """Request options for ``--on-long-prompt truncate``: vLLM keeps a prompt's last
        ``truncate_prompt_tokens`` tokens (the end holds the question), as the local backends
        do. Under ``error`` a too-long prompt was refused before any model loaded.

        Raises:
            UserError: truncation asked of a server that does not say its context length.
        """
        if gen.on_long_prompt != "truncate":
            return {}
        if self._context is None:
            raise UserError(f"--on-long-prompt truncate needs the context length of the "
                            f"server at {self.base_url}, and its model list does not give "
                            "one (vLLM's does). Fix: shorten the prompts, or use "
                            "--on-long-prompt error to have too-long prompts named.")
        keep = self._context - gen.max_new_tokens
        if keep < 1:
            raise UserError(f"--max-new-tokens {gen.max_new_tokens} leaves no room for a "
                            f"prompt in the server's context of {self._context} tokens. Fix: "
                            "lower --max-new-tokens.")
        return {"extra_body": {"truncate_prompt_tokens": keep}}

    def greedy_traces(self, probes: Sequence[tuple[ModelSpec, str]], max_tokens: int
                      ) -> list[list[tuple[str, float]]]:
        """Greedy chat answers to each (model, text) with every token's log-prob, all in
        flight together (``concurrency`` at a time), in the order given.

        The serving self-check's probe in attach mode: generation is what every LoRA server
        serves, where batched prompt log-probs can kill one (see ``evalharness.selfcheck``).
        """

        def one(item: tuple[int, tuple[ModelSpec, str]]) -> tuple[int, list[tuple[str, float]]]:
            index, (model, text) = item
            response = self._client.chat.completions.create(
                model=self._served[model.key], messages=[{"role": "user", "content": text}],
                max_tokens=max_tokens, temperature=0.0, logprobs=True)
            logprobs = response.choices[0].logprobs
            if logprobs is None or logprobs.content is None:
                raise UserError(f"the endpoint {self.base_url} returns no log-probs, which the "
                                "serving self-check needs. Fix: pass --no-verify (and check "
                                "by other means that each adapter is served as itself).")
            return index, [(t.token, float(t.logprob)) for t in logprobs.content]

        traces = dict(self._parallel(list(enumerate(probes)), one))
        return [traces[i] for i in range(len(probes))]

    def _tokenizer(self, base: str) -> Any:
        # One thread at a time: the members of a pool score in threads of their own, and
        # transformers' lazy imports are not thread-safe (ImportError: cannot import name).
        with _TOKENIZER_LOCK:
            if base not in self._tokenizers:
                require_module("transformers", "hf", "Perplexity through an endpoint")
                from transformers import AutoTokenizer

                try:
                    self._tokenizers[base] = AutoTokenizer.from_pretrained(base)
                except OSError:
                    raise UserError(f"perplexity through an endpoint needs the base model's "
                                    f"tokenizer locally, and '{base}' could not be loaded. "
                                    "Fix: pass --base with a local folder of the base "
                                    "model.") from None
            return self._tokenizers[base]

    def score(self, requests: Sequence[ScoreRequest]) -> Iterator[Scored]:
        """Completions with echo + logprobs on our token ids (one generated token, dropped);
        lm-eval's rolling windows for a text past the server's context."""
        # The server is handed every id of a pass and generates one token: two fewer than its
        # context. Unknown context: one pass (the server refuses what it cannot read).
        context = None if self._context is None else self._context - 2
        # Tokenize up front, in this thread, one pool member at a time: transformers' lazy
        # imports (chat templates included) are not thread-safe.
        passes = {}
        with _TOKENIZER_LOCK:
            for r in requests:
                scoring = scoring_ids(self._tokenizer(r.model.base_model), r.text, r.context)
                passes[id(r)] = scoring_windows(scoring.ids, scoring.start, context)

        def one(request: ScoreRequest) -> Scored:
            nlls: list[float] = []
            windows = passes[id(request)]
            for window in windows:
                response = self._client.completions.create(
                    model=self._served[request.model.key], prompt=window.ids, max_tokens=1,
                    temperature=0.0, echo=True, logprobs=0)
                values = response.choices[0].logprobs.token_logprobs
                nlls.extend(-float(values[i])
                            for i in range(window.first_scored, len(window.ids)))
            return Scored(request=request, token_nlls=tuple(nlls),
                          window=context if len(windows) > 1 else None)

        yield from self._parallel(requests, one)

    def close(self) -> None:
        """Unload the adapters we loaded and stop the server we started."""
        for name in self._attached_loads:
            try:
                self._lora_admin("unload_lora_adapter", {"lora_name": name})
            except Exception:  # the server may be gone; leaving an adapter loaded is harmless
                break
        self._attached_loads.clear()
        if self.server is not None:
            for name in list(self.server.loaded):
                try:
                    self.server.unload_adapter(name)
                except Exception:  # the server may already be gone; stopping is what matters
                    break
            self.server.stop()
            self.server = None
        if self._client is not None:
            self._client.close()
            self._client = None


def answer_tokens(completion_tokens: int, choice: Any) -> int:
    """The answer's length counted as the hf and vllm backends count it: without the token
    that ended it.

    vLLM's ``usage.completion_tokens`` includes the end-of-sequence (or stop) token when it
    ends an answer, and says so in the choice: ``finish_reason`` "stop" with ``stop_reason``
    null (EOS) or a token id. A stop *string* (``stop_reason`` a string) is part of the
    generated text, and a server that sends no ``stop_reason`` does not say how it counts, so
    both keep the count as given.

    >>> from types import SimpleNamespace as Choice
    >>> answer_tokens(12, Choice(finish_reason="stop", model_extra={"stop_reason": None}))
    11
    >>> answer_tokens(12, Choice(finish_reason="length", model_extra={"stop_reason": None}))
    12
    >>> answer_tokens(12, Choice(finish_reason="stop", model_extra={"stop_reason": "###"}))
    12
    >>> answer_tokens(12, Choice(finish_reason="stop", model_extra={}))
    12
    """
    extra = getattr(choice, "model_extra", None) or {}
    ended_on_token = (choice.finish_reason == "stop" and "stop_reason" in extra
                      and not isinstance(extra["stop_reason"], str))
    return max(completion_tokens - 1, 0) if ended_on_token else completion_tokens


def _api_key(env_name: str | None) -> str:
    if env_name is None:
        return os.environ.get("OPENAI_API_KEY", "EMPTY")
    value = os.environ.get(env_name)
    if not value:
        raise UserError(f"the API key variable {env_name} is not set. Fix: export {env_name}=... "
                        "(the key is read from the environment only, never stored).")
    return value


def make_openai_backend(name: str, options: BackendOptions) -> OpenAIBackend | PoolBackend:
    """``vllm-server`` (we start vLLM) or ``openai`` (attach to ``options.endpoints``; a pool
    when there are several)."""
    if name == "openai":
        if not options.endpoints:
            raise UserError("--backend openai needs --endpoint URL (an OpenAI-compatible "
                            "server, e.g. http://127.0.0.1:8000/v1).")
        key = _api_key(options.api_key_env)
        members = [OpenAIBackend(name, url, key, options.concurrency)
                   for url in options.endpoints]
        if len(members) == 1:
            return members[0]
        return PoolBackend(name, members, [f"endpoint {url}" for url in options.endpoints],
                           notify=log.warning)
    require_module("vllm", vllm_extra(), "The vllm-server backend")
    cpu_build = is_cpu_build()

    def start_server(models: Sequence[ModelSpec]) -> VLLMServer:
        plan = plan_lora(models, rank_limit=options.max_lora_rank, max_loras=options.max_loras,
                         cpu_build=cpu_build)
        return VLLMServer(plan, dtype=options.dtype or ("float32" if cpu_build else "auto"),
                          cpu_build=cpu_build, port=options.port,
                          log_path=(options.log_dir or Path(".")) / SERVER_LOG,
                          max_model_len=options.max_model_len,
                          ready_timeout=options.ready_timeout)

    return OpenAIBackend(name, None, "EMPTY", options.concurrency, server_factory=start_server)
