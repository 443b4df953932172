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
    endpoint: str | None = None
    """openai: base URL of an OpenAI-compatible server (e.g. http://host:8000/v1)."""
    api_key_env: str | None = None
    """openai: name of the environment variable holding the API key."""
    concurrency: int = 16
    """openai, vllm-server: requests in flight."""
    port: int | None = None
    """vllm-server: loopback port (default: a free one)."""
    ready_timeout: float = 300.0
    """vllm-server: seconds to wait for the server to answer."""
    log_dir: Path | None = None
    """vllm-server: where the server log is written (the run directory)."""
