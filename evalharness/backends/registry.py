"""Pick a backend by name; heavy imports happen only for the backend chosen."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from evalharness.backends.base import Backend
from evalharness.errors import UserError
from evalharness.pipeline import BackendSpec

BACKENDS = ("hf", "vllm", "vllm-server", "openai", "fake")


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
                           dtype=options.dtype, max_model_len=options.max_model_len)
    if name in {"vllm-server", "openai"}:
        from evalharness.backends.openai_compat import make_openai_backend

        return make_openai_backend(name, options)
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

        >>> BackendChoice("hf", BackendOptions(dtype="bfloat16"), verify=False).engine
        'hf:bfloat16'
        """
        return f"{self.name}:{self.options.dtype or 'default'}"

    def spec(self) -> BackendSpec:
        """What the pipeline needs (the backend is built only when work needs it)."""
        check_backend_name(self.name)  # a typo must not wait until the first missing answer
        return BackendSpec(
            name=self.name, engine=self.engine, verify=self.verify,
            factory=lambda run_dir: make_backend(self.name,
                                                 replace(self.options, log_dir=run_dir)),
        )
