"""The offline vLLM backend: one engine holds the base model and serves every adapter.

Every adapter is passed as a ``LoRARequest`` named by its content hash, and requests for
all adapters and the baseline go to the engine together, so a league of twenty adapters pays
one model load. Prompts are tokenized by evalharness (``backends.tokens``), exactly as the
transformers backend does, and sent as token ids.

(Named ``vllm_engine`` rather than ``vllm`` so the module never shadows the library.)
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from evalharness import signals
from evalharness.backends.base import (
    Generation,
    GenRequest,
    Scored,
    ScoreRequest,
    adapter_name,
)
from evalharness.backends.lora_plan import (
    COMPILE_DISABLE,
    LoraPlan,
    apply_cpu_environment,
    is_cpu_build,
    plan_lora,
    vllm_extra,
)
from evalharness.backends.tokens import fit_prompt_ids, scoring_ids, scoring_windows
from evalharness.errors import BackendError, require_module
from evalharness.schema import GenConfig, ModelSpec

log = logging.getLogger(__name__)

CHUNK = 256
"""Requests per engine call: results are written to disk after each chunk."""


ENGINE_LOG = "vllm-engine.log"
"""The engine's log in the run directory (dozens of start-up lines that would bury the
terminal's progress bars and results)."""


def log_to_file(path: Path) -> None:
    """Send vLLM's logging, in this process and in the EngineCore it spawns, to ``path``.

    vLLM reads ``VLLM_LOGGING_CONFIG_PATH`` when it is first imported, in every process; a
    program that imported vLLM before keeps the configuration it had.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(levelname)s %(asctime)s %(name)s: %(message)s"}},
        "handlers": {"file": {"class": "logging.FileHandler", "filename": str(path),
                              "mode": "a", "encoding": "utf-8", "formatter": "plain",
                              "level": "INFO"}},
        "loggers": {"vllm": {"handlers": ["file"], "level": "INFO", "propagate": False},
                    # torch's warnings in the engine processes ("Triton not available")
                    "torch": {"handlers": ["file"], "level": "WARNING", "propagate": False}},
    }
    config_path = path.with_name(f".{path.stem}-logging.json")
    config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    os.environ["VLLM_CONFIGURE_LOGGING"] = "1"
    os.environ["VLLM_LOGGING_CONFIG_PATH"] = str(config_path)
    # What logging does not carry, in the processes the engine spawns: torch's C++ warnings
    # (NUMA binding) and a deprecation warning vLLM's Triton dispatcher triggers in torch.
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
    if QUIET_WARNING not in os.environ.get("PYTHONWARNINGS", ""):
        os.environ["PYTHONWARNINGS"] = ",".join(
            filter(None, (os.environ.get("PYTHONWARNINGS"), QUIET_WARNING)))


QUIET_WARNING = "ignore::FutureWarning:vllm.triton_utils.dispatcher"


def sampling_seed(key: str) -> int:
    """A per-answer seed from the answer's key (independent of batch composition).

    >>> sampling_seed("0000000000000ff" + "0" * 49)
    255
    """
    return int(key[:15], 16) % (2**31)


class VLLMBackend:
    """Generate and score with an offline ``vllm.LLM`` engine.

    Args:
        max_lora_rank: the largest adapter rank allowed (default: the adapters' largest).
        max_loras: LoRA slots per batch (default: safe for the build in use).
        dtype: model dtype (default: float32 on the CPU build, auto elsewhere).
        max_model_len: context length (default: the model's).
        gpu_memory_utilization: vLLM's share of GPU memory (GPU builds only).
    """

    name = "vllm"

    def __init__(self, max_lora_rank: int | None = None, max_loras: int | None = None,
                 dtype: str | None = None, max_model_len: int | None = None,
                 gpu_memory_utilization: float | None = None, log_dir: Path | None = None
                 ) -> None:
        require_module("vllm", vllm_extra(), "The vllm backend")
        self.cpu_build = is_cpu_build()
        self.rank_limit = max_lora_rank
        self.max_loras = max_loras
        self.dtype = dtype or ("float32" if self.cpu_build else "auto")
        self.max_model_len = max_model_len
        self.gpu_memory_utilization = gpu_memory_utilization
        self.log_path = log_dir / ENGINE_LOG if log_dir is not None else None
        self.plan: LoraPlan | None = None
        self._llm: Any = None
        self._tokenizer: Any = None
        self._lora: dict[str, Any] = {}  # model key -> LoRARequest
        self._greedy: tuple[GenConfig, Any] | None = None

    def prepare(self, models: Sequence[ModelSpec]) -> None:
        """Check the adapters fit one engine, then start it (once)."""
        plan = plan_lora(models, rank_limit=self.rank_limit, max_loras=self.max_loras,
                         cpu_build=self.cpu_build)
        for warning in plan.warnings:
            log.warning(warning)
        if self._llm is None:
            self._start(plan)
        self._register(plan.adapters)

    def _start(self, plan: LoraPlan) -> None:
        if self.cpu_build:
            apply_cpu_environment()
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        if self.log_path is not None:
            log_to_file(self.log_path)
        from vllm import LLM

        options: dict[str, Any] = {"model": plan.base_model, "dtype": self.dtype, "seed": 0,
                                   "use_tqdm_on_load": False}  # bars on the terminal
        if plan.enable_lora:
            options.update(enable_lora=True, max_lora_rank=plan.max_lora_rank,
                           max_loras=plan.max_loras, max_cpu_loras=plan.max_cpu_loras)
            if plan.target_modules is not None:
                options["lora_target_modules"] = list(plan.target_modules)
        if self.max_model_len is not None:
            options["max_model_len"] = self.max_model_len
        if self.gpu_memory_utilization is not None and not self.cpu_build:
            options["gpu_memory_utilization"] = self.gpu_memory_utilization
        before = {process.pid for process in multiprocessing.active_children()}
        try:
            # vLLM's start-up swallows KeyboardInterrupt (Ctrl-C, and so SIGTERM/SIGHUP too)
            # while it waits for the engine, then waits ten more minutes for an engine it
            # has abandoned; not_swallowed carries the interrupt through instead.
            with signals.not_swallowed(), engine_environment(
                    {COMPILE_DISABLE: "1"} if self.cpu_build and plan.enable_lora else {}):
                self._llm = LLM(**options)
        except Exception as exc:  # vLLM raises many types while starting an engine
            end_processes(started_since(before))
            where = f" (engine log: {self.log_path})" if self.log_path else ""
            raise BackendError(f"vLLM could not start an engine for {plan.base_model}: "
                               f"{exc}{where}") from exc
        except BaseException:  # interrupted: vLLM's clean-up ran; make sure, briefly
            if self._llm is None:
                end_processes(started_since(before))
            raise
        self._tokenizer = self._llm.get_tokenizer()
        self.plan = plan

    def _register(self, adapters: Sequence[ModelSpec]) -> None:
        from vllm.lora.request import LoRARequest

        for adapter in adapters:
            if adapter.key not in self._lora:
                assert adapter.adapter is not None
                self._lora[adapter.key] = LoRARequest(
                    lora_name=adapter_name(adapter), lora_int_id=len(self._lora) + 1,
                    lora_path=adapter.adapter,
                )

    def _lora_for(self, model: ModelSpec) -> Any:
        return self._lora[model.key] if model.kind == "adapter" else None

    def _run(self, prompts: list[dict[str, Any]], params: list[Any], loras: list[Any]
             ) -> list[Any]:
        try:
            outputs: list[Any] = self._llm.generate(prompts, params, lora_request=loras,
                                                    use_tqdm=False)
        except Exception as exc:  # an engine failure mid-run: what is on disk stays
            raise BackendError(f"vLLM failed while running {len(prompts)} requests: "
                               f"{exc}") from exc
        return outputs

    def _sampling(self, gen: GenConfig, key: str) -> Any:
        """Sampling parameters for one answer: shared when greedy, seeded per answer when not
        (one object per request costs vLLM measurable time on large batches)."""
        from vllm import SamplingParams

        if gen.temperature > 0:
            return SamplingParams(max_tokens=gen.max_new_tokens, temperature=gen.temperature,
                                  top_p=gen.top_p, seed=sampling_seed(key),
                                  stop=list(gen.stop) or None, skip_special_tokens=True)
        if self._greedy is None or self._greedy[0] != gen:
            self._greedy = (gen, SamplingParams(max_tokens=gen.max_new_tokens, temperature=0.0,
                                                stop=list(gen.stop) or None,
                                                skip_special_tokens=True))
        return self._greedy[1]

    def generate(self, requests: Sequence[GenRequest], gen: GenConfig) -> Iterator[Generation]:
        """All requests through the one engine, adapters and baseline mixed, in chunks."""
        eos = self._tokenizer.eos_token_id
        assert self.plan is not None
        unique = list({r.prompt.id: r.prompt for r in requests}.values())
        ids = fit_prompt_ids(self._tokenizer, unique,
                             self._llm.llm_engine.model_config.max_model_len, gen,
                             self.plan.base_model)
        for first in range(0, len(requests), CHUNK):
            chunk = requests[first:first + CHUNK]
            params = [self._sampling(gen, r.key) for r in chunk]
            prompts = [{"prompt_token_ids": ids[r.prompt.id]} for r in chunk]
            start = time.perf_counter()
            outputs = self._run(prompts, params, [self._lora_for(r.model) for r in chunk])
            seconds = (time.perf_counter() - start) / len(chunk)
            for request, output in zip(chunk, outputs, strict=True):
                completion = output.outputs[0]
                tokens = list(completion.token_ids)
                if tokens and tokens[-1] == eos:
                    tokens = tokens[:-1]  # counted like the hf backend: EOS is not answer
                yield Generation(
                    request=request, text=completion.text, n_tokens=len(tokens),
                    finish_reason="length" if completion.finish_reason == "length" else "stop",
                    seconds=seconds,
                )

    def score(self, requests: Sequence[ScoreRequest]) -> Iterator[Scored]:
        """Prompt log-probs of each text (one generated token, discarded); lm-eval's rolling
        windows for a text past the context.

        Every window of a chunk goes to the engine in one call (one call per text costs
        twice as much here). ``prompt_logprobs=0`` returns only each prompt token's own
        log-prob (k > 0 adds a top-k over the vocabulary per position), and
        ``detokenize=False`` skips decoding every prompt token to text, which the NLLs never
        read (benchmarks/bench_vllm_ppl.py times each).
        """
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0,
                                detokenize=False)
        # vLLM is handed every id of a pass and generates one token after them: two fewer
        # than the context (lm-eval's vLLM backend uses max_length - 2 likewise).
        context = self._llm.llm_engine.model_config.max_model_len - 2
        for first in range(0, len(requests), CHUNK):
            chunk = requests[first:first + CHUNK]
            passes = []
            for request in chunk:
                scoring = scoring_ids(self._tokenizer, request.text, request.context)
                passes.append(scoring_windows(scoring.ids, scoring.start, context))
            flat = [(row, w) for row, windows in enumerate(passes) for w in windows]
            outputs = self._run([{"prompt_token_ids": w.ids} for _, w in flat],
                                [params] * len(flat),
                                [self._lora_for(chunk[row].model) for row, _ in flat])
            nlls: list[list[float]] = [[] for _ in chunk]
            for (row, window), output in zip(flat, outputs, strict=True):
                logprobs = output.prompt_logprobs
                nlls[row].extend(-float(logprobs[i][window.ids[i]].logprob)
                                 for i in range(window.first_scored, len(window.ids)))
            for request, values, windows in zip(chunk, nlls, passes, strict=True):
                yield Scored(request=request, token_nlls=tuple(values),
                             window=context if len(windows) > 1 else None)

    def close(self) -> None:
        """Shut the engine down, wait for what it started, and free its memory."""
        llm, self._llm = self._llm, None
        self._tokenizer = None
        self._greedy = None
        self._lora.clear()
        if llm is not None:
            with signals.deferred():  # an engine stop cut short leaves its process behind
                end_engine(llm)



@contextmanager
def engine_environment(values: dict[str, str]) -> Iterator[None]:
    """Set ``values`` in the environment while the engine starts: the processes vLLM spawns
    copy it then; this process gets its own back afterwards (its torch has read its settings
    already, when vLLM was imported). A variable the user set wins.

    >>> with engine_environment({"EVALHARNESS_EXAMPLE": "1"}):
    ...     os.environ["EVALHARNESS_EXAMPLE"]
    '1'
    >>> "EVALHARNESS_EXAMPLE" in os.environ
    False
    """
    added = {name: value for name, value in values.items() if name not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


ENGINE_THREADS = ("EngineCoreOutputQueueThread", "MPClientEngineMonitor")
"""Threads the engine client starts in this process. One still running when the interpreter
tears down is killed inside libzmq's C++ code, which aborts the whole process ("terminate
called without an active exception", exit -6) about one run in ten."""


def end_engine(llm: Any, timeout: float = 30.0) -> None:
    """Stop ``llm``'s EngineCore process and join the client threads it started.

    ``LLMEngine`` has no ``shutdown`` of its own: its client's finaliser normally runs at
    garbage collection or at interpreter exit, racing the teardown. Here it runs now: the
    client stops the engine process, closes its sockets and signals its output thread; then
    the threads are joined and the ZMQ context ended, so nothing of the engine is left when
    the command returns, on success and on every error path alike.
    """
    import gc
    import threading

    client = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    manager = getattr(getattr(client, "resources", None), "engine_manager", None)
    processes = list(getattr(manager, "processes", None) or ())
    shutdown = getattr(client, "shutdown", None)
    if callable(shutdown):
        shutdown()
    end_processes(processes)  # vLLM sends SIGTERM, waits 5 s, kills; checked here
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if thread.name in ENGINE_THREADS and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning("vLLM thread %s did not stop within %.0f s", thread.name, timeout)
    context = getattr(client, "ctx", None)
    destroy = getattr(context, "destroy", None)
    if callable(destroy):
        destroy(linger=0)
    del llm, client, context
    gc.collect()


def started_since(before: set[int | None]) -> list[multiprocessing.process.BaseProcess]:
    """This process's multiprocessing children that are not in ``before`` (process ids)."""
    return [p for p in multiprocessing.active_children() if p.pid not in before]


def end_processes(processes: Sequence[multiprocessing.process.BaseProcess],
                  grace: float = 5.0) -> None:
    """SIGTERM to each live process, SIGKILL to any still alive after ``grace`` s, then reap
    them. (An EngineCore busy loading a model ignores SIGTERM; multiprocessing joins every
    child at interpreter exit, so one left alive would hang the exit.)"""
    alive = [p for p in processes if p.is_alive()]
    deadline = time.monotonic() + 2.0
    for process in alive:  # one vLLM just killed needs a moment to be reaped
        process.join(max(0.0, deadline - time.monotonic()))
    alive = [p for p in alive if p.is_alive()]
    if not alive:
        return
    log.warning("stopping %d vLLM engine process(es) left running: %s", len(alive),
                ", ".join(f"{p.name} (pid {p.pid})" for p in alive))
    for process in alive:
        process.terminate()
    deadline = time.monotonic() + grace
    for process in alive:
        process.join(max(0.0, deadline - time.monotonic()))
    for process in alive:
        if process.is_alive():
            process.kill()
            process.join(5.0)
