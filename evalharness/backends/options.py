"""The settings every backend reads: a leaf module, so the registry and the backends that take
``BackendOptions`` import it without importing each other."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BackendOptions:
    """Every backend setting the CLI and API accept; each backend reads those it knows."""

    device: str | None = None
    """hf: torch device."""
    dtype: str | None = None
    """hf, vllm: model dtype."""
    batch_size: int = 16
    """hf: prompts per forward pass."""
    max_lora_rank: int | None = None
    """vllm: the largest adapter rank allowed."""
    max_loras: int | None = None
    """vllm: LoRA slots per batch (default: safe for the build in use)."""
    max_model_len: int | None = None
    """vllm: context length."""
    endpoints: tuple[str, ...] = ()
    """openai: base URLs of OpenAI-compatible servers (e.g. http://host:8000/v1); with more
    than one, adapters are spread over them (``evalharness.backends.pool``)."""
    api_key_env: str | None = None
    """openai: name of the environment variable holding the API key."""
    concurrency: int = 16
    """openai, vllm-server: requests in flight."""
    port: int | None = None
    """vllm-server: loopback port (default: a free one)."""
    ready_timeout: float = 300.0
    """vllm-server: seconds to wait for the server to answer."""
    log_dir: Path | None = None
    """vllm, vllm-server: where the engine or server log is written (the run directory)."""
    ray_address: str | None = None
    """ray: the cluster to join (None: ``RAY_ADDRESS``, else a local instance)."""
    ray_actors: int | None = None
    """ray: engine actors (None: one per GPU in the cluster, 1 without GPUs)."""
    ray_engine: str = "vllm"
    """ray: the backend each actor runs (``vllm`` or ``hf``); answers and perplexity records
    are keyed by it, so a Ray run and a local run of that engine share them."""
