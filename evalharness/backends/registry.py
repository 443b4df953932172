"""Pick a backend by name; heavy imports happen only for the backend chosen."""

from __future__ import annotations

from dataclasses import dataclass, replace

from evalharness.backends.base import Backend
from evalharness.backends.options import BackendOptions
from evalharness.errors import UserError
from evalharness.pipeline import BackendSpec

__all__ = ["BACKENDS", "BackendChoice", "BackendOptions", "check_backend_name", "make_backend"]

BACKENDS = ("hf", "vllm", "vllm-server", "openai", "fake")


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
