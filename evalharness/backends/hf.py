"""The transformers + peft backend: portable, CPU or GPU, one base model in memory.

Adapters are loaded into one ``PeftModel`` under their content-hash names and switched with
``set_adapter``; the baseline runs inside ``disable_adapter()``. Merged models are full models
and get their own load. Generation is batched with left padding; greedy by default. Sampling
runs one prompt at a time with a seed derived from the answer's key, so a sampled answer does
not depend on which other prompts shared its batch (and resuming cannot change it).
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

from evalharness.backends.base import (
    Generation,
    GenRequest,
    Scored,
    ScoreRequest,
    adapter_name,
    cut_at_stop,
)
from evalharness.backends.tokens import (
    ScoringWindow,
    context_length,
    fit_prompt_ids,
    scoring_ids,
    scoring_windows,
)
from evalharness.errors import BackendError, UserError, require_module
from evalharness.schema import GenConfig, ModelSpec

DEFAULT_BATCH_SIZE = 16
DTYPES = ("float32", "float16", "bfloat16", "auto")
"""The ``--dtype`` values the local backends accept (``auto``: the checkpoint's own)."""
DEVICE_PATTERN = re.compile(r"cpu|cuda|cuda:\d+|mps")


def check_dtype(dtype: str | None) -> None:
    """Raise ``UserError`` unless ``dtype`` is one the hf and vllm backends load with."""
    if dtype is not None and dtype not in DTYPES:
        raise UserError(f"--dtype {dtype!r} is not a dtype evalharness loads models with. "
                        f"Fix: pass one of {', '.join(DTYPES)} (or omit it).")


def check_device(device: str | None) -> None:
    """Raise ``UserError`` unless ``device`` names a torch device that exists here.

    A name is checked without torch; whether a GPU is there needs torch (imported only when
    a GPU device is asked for), and is found now rather than after the run has started.
    """
    if device is None or device == "cpu":
        return
    if not DEVICE_PATTERN.fullmatch(device):
        raise UserError(f"--device {device!r} is not a device the hf backend knows. Fix: pass "
                        "cpu, cuda, cuda:N (N = GPU index) or mps (or omit it: cuda when "
                        "available, else cpu).")
    require_module("torch", "hf", "The hf backend")
    import torch

    if device == "mps":
        if not torch.backends.mps.is_available():
            raise UserError("--device mps: Apple's Metal backend is not available here. Fix: "
                            "pass --device cpu (or omit --device).")
        return
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(device.partition(":")[2] or 0)
    if index >= count:
        found = f"{count} CUDA GPU(s)" if count else "no CUDA GPU (or a CPU-only torch)"
        raise UserError(f"--device {device}: this machine has {found}. Fix: pass --device cpu"
                        + (f" or cuda:0 ... cuda:{count - 1}" if count else "")
                        + " (or omit --device).")


def quiet_transformers() -> None:
    """Silence transformers' per-load progress bars and info logs."""
    # Per-load progress bars from transformers would drown our own progress display.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


class HFBackend:
    """Generate and score with transformers + peft.

    Args:
        device: ``cpu``, ``cuda``, ... (default: ``cuda`` when available).
        dtype: ``float32`` (default on CPU), ``bfloat16`` or ``float16``.
        batch_size: prompts per forward pass.
    """

    name = "hf"

    def __init__(self, device: str | None = None, dtype: str | None = None,
                 batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        require_module("torch", "hf", "The hf backend")
        require_module("transformers", "hf", "The hf backend")
        require_module("peft", "hf", "The hf backend")
        check_dtype(dtype)
        check_device(device)
        import torch

        quiet_transformers()
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = dtype or ("float32" if self.device == "cpu" else "bfloat16")
        self.batch_size = batch_size
        self._engines: dict[str, Any] = {}  # base model path -> model (PeftModel when adapters)
        self._tokenizers: dict[str, Any] = {}
        self._adapters: dict[str, set[str]] = defaultdict(set)  # base -> adapter names loaded

    # -- loading -------------------------------------------------------------------------

    def prepare(self, models: Sequence[ModelSpec]) -> None:
        """Load each distinct base model once and every adapter into it."""
        for model in models:
            self._engine_for(model)

    def _load_base(self, base: str) -> Any:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(base)
            dtype = "auto" if self.dtype == "auto" else getattr(torch, self.dtype)
            model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
        except OSError as exc:
            raise UserError(
                f"cannot load model '{base}' ({str(exc).splitlines()[0]}). Fix: pass a local "
                "model folder, or a hub id that is in the local cache when offline."
            ) from None
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        model.to(self.device).eval()
        self._tokenizers[base] = tokenizer
        return model

    def _engine_for(self, model: ModelSpec) -> Any:
        base = model.base_model
        if base not in self._engines:
            self._engines[base] = self._load_base(base)
        engine = self._engines[base]
        if model.kind == "adapter":
            assert model.adapter is not None
            name = adapter_name(model)
            if name not in self._adapters[base]:
                engine = self._load_adapter(engine, model.adapter, name)
                self._engines[base] = engine
                self._adapters[base].add(name)
        return engine

    def _load_adapter(self, engine: Any, path: str, name: str) -> Any:
        from peft import PeftModel

        try:
            if isinstance(engine, PeftModel):
                engine.load_adapter(path, adapter_name=name)
                return engine
            return PeftModel.from_pretrained(engine, path, adapter_name=name).eval()
        except (ValueError, RuntimeError, KeyError) as exc:
            raise UserError(
                f"{path}: peft could not load this adapter ({str(exc).splitlines()[0]}). "
                "Fix: check it was trained on this base model (--base)."
            ) from None

    @contextlib.contextmanager
    def _activated(self, model: ModelSpec) -> Iterator[tuple[Any, Any]]:
        """The engine with ``model``'s adapter active (or all adapters off for the base)."""
        from peft import PeftModel

        engine = self._engine_for(model)
        tokenizer = self._tokenizers[model.base_model]
        if not isinstance(engine, PeftModel):
            yield engine, tokenizer
        elif model.kind == "adapter":
            engine.set_adapter(adapter_name(model))
            yield engine, tokenizer
        else:
            with engine.disable_adapter():
                yield engine, tokenizer

    # -- generation ----------------------------------------------------------------------

    def generate(self, requests: Sequence[GenRequest], gen: GenConfig) -> Iterator[Generation]:
        """Answer every request, batched per model, yielding each batch as it finishes."""
        by_model: dict[str, list[GenRequest]] = defaultdict(list)
        for request in requests:
            by_model[request.model.key].append(request)
        # Every prompt is measured against the context before the first answer, so a long
        # prompt stops the run before any model time is spent on it.
        fitted = self._fit_prompts(requests, gen)
        for group in by_model.values():
            with self._activated(group[0].model) as (engine, tokenizer):
                ids = fitted[group[0].model.base_model]
                encoded = [(r, ids[r.prompt.id]) for r in group]
                # Similar lengths in a batch waste less compute on padding.
                encoded.sort(key=lambda item: len(item[1]))
                size = self.batch_size if gen.temperature == 0 else 1
                for first in range(0, len(encoded), size):
                    yield from self._generate_batch(engine, tokenizer,
                                                    encoded[first:first + size], gen)

    def _fit_prompts(self, requests: Sequence[GenRequest], gen: GenConfig
                     ) -> dict[str, dict[str, list[int]]]:
        """Per base model: prompt id -> the ids to generate after (``gen.on_long_prompt``)."""
        by_base: dict[str, dict[str, GenRequest]] = defaultdict(dict)
        for request in requests:
            by_base[request.model.base_model].setdefault(request.prompt.id, request)
        fitted: dict[str, dict[str, list[int]]] = {}
        for base, first in by_base.items():
            engine = self._engine_for(next(iter(first.values())).model)
            fitted[base] = fit_prompt_ids(self._tokenizers[base],
                                          [r.prompt for r in first.values()],
                                          context_length(engine.config), gen, base)
        return fitted

    def _generate_batch(self, engine: Any, tokenizer: Any,
                        batch: list[tuple[GenRequest, list[int]]], gen: GenConfig
                        ) -> Iterator[Generation]:
        import torch

        width = max(len(ids) for _, ids in batch)
        pad = tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for _, ids in batch])
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for _, ids in batch])
        options: dict[str, Any] = {"do_sample": False}
        if gen.temperature > 0:
            torch.manual_seed(int(batch[0][0].key[:15], 16))
            options = {"do_sample": True, "temperature": gen.temperature, "top_p": gen.top_p}
        eos = _eos_ids(engine, tokenizer)
        start = time.perf_counter()
        try:
            with torch.no_grad():
                output = engine.generate(
                    input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device),
                    max_new_tokens=gen.max_new_tokens, pad_token_id=pad, eos_token_id=eos,
                    top_k=None, **options,
                )
        except RuntimeError as exc:
            raise BackendError(f"generation failed: {exc}") from exc
        seconds = (time.perf_counter() - start) / len(batch)
        for row, (request, _) in enumerate(batch):
            new = output[row, width:].tolist()
            ended = next((i for i, token in enumerate(new) if token in eos), None)
            tokens = new if ended is None else new[:ended]
            text = tokenizer.decode(tokens, skip_special_tokens=True)
            text, stopped = cut_at_stop(text, gen.stop)
            yield Generation(
                request=request, text=text, n_tokens=len(tokens),
                finish_reason="stop" if ended is not None or stopped else "length",
                seconds=seconds,
            )

    # -- scoring -------------------------------------------------------------------------

    def score(self, requests: Sequence[ScoreRequest]) -> Iterator[Scored]:
        """Per-token NLLs of each request's scored tokens, batched per model.

        A text longer than the model's context is scored in lm-eval's rolling windows
        (``scoring_windows``): one pass beyond ``max_position_embeddings`` would read
        positions the model never saw in training, and its numbers drift silently.
        """
        by_model: dict[str, list[ScoreRequest]] = defaultdict(list)
        for request in requests:
            by_model[request.model.key].append(request)
        for group in by_model.values():
            with self._activated(group[0].model) as (engine, tokenizer):
                context = context_length(engine.config)
                passes: list[list[ScoringWindow]] = []
                for request in group:
                    scoring = scoring_ids(tokenizer, request.text, request.context)
                    passes.append(scoring_windows(scoring.ids, scoring.start, context))
                # The windows of every request share the batches, in order; a request is
                # yielded once its last window is scored.
                flat = [(row, window) for row, windows in enumerate(passes) for window in windows]
                nlls: list[list[float]] = [[] for _ in group]
                remaining = [len(windows) for windows in passes]
                done = 0
                for first in range(0, len(flat), self.batch_size):
                    batch = flat[first:first + self.batch_size]
                    for (row, _), values in zip(batch, self._window_nlls(engine, batch),
                                                strict=True):
                        nlls[row].extend(values)
                        remaining[row] -= 1
                    while done < len(group) and remaining[done] == 0:
                        yield Scored(request=group[done], token_nlls=tuple(nlls[done]),
                                     window=context if len(passes[done]) > 1 else None)
                        done += 1
                for row in range(done, len(group)):  # nothing to score (no window at all)
                    yield Scored(request=group[row], token_nlls=())

    def _window_nlls(self, engine: Any, batch: Sequence[tuple[int, ScoringWindow]]
                     ) -> list[list[float]]:
        """The counted NLLs of each window: one forward pass over the batch."""
        import torch

        # The model reads all but each window's last id (a prediction target only), so a
        # full window stays within the positions the model has.
        reads = [window.ids[:-1] for _, window in batch]
        width = max(len(r) for r in reads)
        # Right padding: a causal model's logits for real tokens ignore what follows.
        ids = torch.tensor([r + [0] * (width - len(r)) for r in reads])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in reads])
        targets = torch.tensor([w.ids[1:] + [0] * (width - len(w.ids) + 1) for _, w in batch])
        with torch.no_grad():
            logits = engine(input_ids=ids.to(self.device),
                            attention_mask=mask.to(self.device)).logits.float()
        logprobs = torch.log_softmax(logits, dim=-1)
        token_lp = logprobs.gather(-1, targets.to(self.device).unsqueeze(-1)).squeeze(-1)
        return [(-token_lp[row, w.first_scored - 1:len(w.ids) - 1]).tolist()
                for row, (_, w) in enumerate(batch)]

    def close(self) -> None:
        """Drop the loaded models."""
        self._engines.clear()
        self._tokenizers.clear()
        self._adapters.clear()


def _eos_ids(engine: Any, tokenizer: Any) -> list[int]:
    config_eos = getattr(engine.generation_config, "eos_token_id", None)
    ids = config_eos if isinstance(config_eos, list) else [config_eos]
    ids.append(tokenizer.eos_token_id)
    return sorted({int(i) for i in ids if i is not None})
