"""Pick a backend by name; heavy imports happen only for the backend chosen."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, replace

from evalharness.backends.base import Backend
from evalharness.backends.options import BackendOptions
from evalharness.errors import UserError, require_module
from evalharness.pipeline import BackendSpec
from evalharness.schema import GenConfig, ModelSpec, Prompt

__all__ = ["BACKENDS", "BackendChoice", "BackendOptions", "check_backend_name", "make_backend"]

BACKENDS = ("hf", "vllm", "vllm-server", "openai", "ray", "fake")
RAY_ENGINES = ("vllm", "hf")
"""What a Ray actor may run: the in-process engines."""


def check_backend_name(name: str) -> None:
    """Raise ``UserError`` unless ``name`` is a known backend."""
    if name not in BACKENDS:
        raise UserError(f"unknown backend '{name}'. Fix: use one of "
                        f"{', '.join(b for b in BACKENDS if b != 'fake')}.")


def make_backend(name: str, options: BackendOptions | None = None) -> Backend:
    """A new backend instance.

    Raises:
        UserError: unknown backend name, or its extra is not installed.
    """
    check_backend_name(name)
    options = options or BackendOptions()
    if name == "hf":
        from evalharness.backends.hf import HFBackend

        return HFBackend(device=options.device, dtype=options.dtype,
                         batch_size=options.batch_size)
    if name == "vllm":
        from evalharness.backends.vllm_engine import VLLMBackend

        return VLLMBackend(max_lora_rank=options.max_lora_rank, max_loras=options.max_loras,
                           dtype=options.dtype, max_model_len=options.max_model_len,
                           log_dir=options.log_dir)
    if name in {"vllm-server", "openai"}:
        from evalharness.backends.openai_compat import make_openai_backend

        return make_openai_backend(name, options)
    if name == "ray":
        from evalharness.backends.ray import RayBackend

        return RayBackend(options, functools.partial(make_backend, options.ray_engine))
    from evalharness.backends.fake import FakeBackend

    return FakeBackend()


@dataclass(frozen=True)
class BackendChoice:
    """The backend the user chose, its settings, and whether to self-check it."""

    name: str
    options: BackendOptions
    verify: bool

    @property
    def engine(self) -> str:
        """The engine identity in answer and perplexity keys (backend and dtype).

        A Ray run is keyed by the engine its actors run: its answers are that engine's, and
        a run on one machine and a run on the cluster share them.

        >>> BackendChoice("hf", BackendOptions(dtype="bfloat16"), verify=False).engine
        'hf:bfloat16'
        >>> BackendChoice("ray", BackendOptions(), verify=False).engine
        'vllm:default'
        """
        return f"{self.engine_name}:{self.options.dtype or 'default'}"

    @property
    def engine_name(self) -> str:
        """The backend that runs the models: the chosen one, or a Ray actor's engine."""
        return self.options.ray_engine if self.name == "ray" else self.name

    def check_inputs(self, models: Sequence[ModelSpec], prompts: Sequence[Prompt],
                     gen: GenConfig) -> None:
        """What can be refused before any model loads: adapter ranks above the vLLM limit,
        prompts longer than the context (under ``gen.on_long_prompt``).

        Raises:
            UserError: naming the adapter or prompt, the limit and the fix.
        """
        from evalharness.backends.lora_plan import check_lora_ranks
        from evalharness.backends.tokens import check_prompt_lengths

        engine = self.engine_name
        if engine in {"vllm", "vllm-server"}:
            check_lora_ranks(models, self.options.max_lora_rank)
        if engine in {"hf", "vllm", "vllm-server"} and prompts:
            max_len = None if engine == "hf" else self.options.max_model_len
            for base in sorted({m.base_model for m in models}):
                check_prompt_lengths(prompts, base, gen, max_len)

    def spec(self) -> BackendSpec:
        """What the pipeline needs (the backend is built only when work needs it)."""
        check_backend_name(self.name)  # a typo must not wait until the first missing answer
        if self.name == "ray":  # both checked before a run directory or cluster is touched
            if self.options.ray_engine not in RAY_ENGINES:
                raise UserError(f"--ray-engine {self.options.ray_engine!r} is not known. Fix: "
                                f"use one of {', '.join(RAY_ENGINES)}.")
            require_module("ray", "ray", "The ray backend")
        return BackendSpec(
            name=self.name, engine=self.engine, verify=self.verify,
            precheck=self.check_inputs,
            factory=lambda run_dir: make_backend(self.name,
                                                 replace(self.options, log_dir=run_dir)),
        )


PPL_BACKENDS = ("auto", "engine", "hf")


def ppl_backend(choice: BackendChoice, wanted: str = "auto") -> tuple[BackendChoice, str | None]:
    """The backend that scores perplexity for ``evalharness ppl``, and why when it is not
    ``choice``.

    ``auto`` scores with transformers instead of a vLLM engine or server on vLLM's CPU build:
    there its LoRA kernels copy a weight matrix per token and layer, so scoring the kit's
    held-out set takes about 6x transformers' time warm, and the engine or server start (25-50
    s) is paid on top. The NLLs agree to 1e-5, so the faster path is as correct; its records
    are keyed by the engine that computed them (``hf``), and ``--backend hf`` runs reuse them.
    The choice depends on the command alone, never on what is on disk, so a resumed run never
    mixes two engines' records. ``engine`` keeps ``choice``; ``hf`` always uses transformers.

    Raises:
        UserError: an unknown ``wanted``.
    """
    from evalharness.backends.lora_plan import is_cpu_build

    if wanted not in PPL_BACKENDS:
        raise UserError(f"--ppl-backend {wanted!r} is not known. Fix: use one of "
                        f"{', '.join(PPL_BACKENDS)}.")
    if wanted == "engine" or choice.engine_name not in {"vllm", "vllm-server"} or (
            wanted == "auto" and not is_cpu_build()):
        return choice, None
    why = ("asked for with --ppl-backend hf" if wanted == "hf" else
           "vLLM's CPU build scores about 6x slower than transformers (its LoRA kernels), with "
           "the same NLLs; --ppl-backend engine keeps it")
    if choice.name == "ray":  # the cluster stays; its actors run transformers
        return (BackendChoice("ray", replace(choice.options, ray_engine="hf"), choice.verify),
                f"hf engines in the Ray actors instead of vllm: {why}")
    return BackendChoice("hf", choice.options, verify=False), f"hf instead of {choice.name}: {why}"
