"""The backend options every model-running command shares, declared once.

``@backend_options(verify=...)`` adds ``--backend``, the backends' settings and
``--verify/--no-verify`` to a typer command and hands the command one ``BackendChoice``.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Annotated, Any, TypeVar

import typer

from evalharness.backends.registry import BackendOptions, check_backend_name, make_backend
from evalharness.pipeline import BackendSpec

F = TypeVar("F", bound=Callable[..., Any])


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


def _option(annotation: Any, default: Any, help_text: str, **extra: Any) -> inspect.Parameter:
    return inspect.Parameter("x", inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[annotation, typer.Option(help=help_text,
                                                                           **extra)])


_PANEL = {"rich_help_panel": "Backend"}
_PARAMETERS: dict[str, inspect.Parameter] = {
    "backend": _option(str, "hf", "hf (transformers+peft), vllm (offline engine), "
                       "vllm-server (we start vllm serve), openai (--endpoint).", **_PANEL),
    "device": _option(str | None, None, "hf: cpu, cuda, ... (default: cuda if available).",
                      **_PANEL),
    "dtype": _option(str | None, None, "hf/vllm: float32, bfloat16, float16.", **_PANEL),
    "batch_size": _option(int, 16, "hf: prompts per forward pass.", min=1, **_PANEL),
    "max_lora_rank": _option(int | None, None, "vllm: largest adapter rank allowed (a "
                             "larger adapter is refused before the engine starts).", min=1,
                             **_PANEL),
    "max_loras": _option(int | None, None, "vllm: LoRA slots per batch (default: safe for the "
                         "build in use).", min=1, **_PANEL),
    "max_model_len": _option(int | None, None, "vllm: context length.", min=16, **_PANEL),
    "endpoint": _option(str | None, None, "openai: base URL of an OpenAI-compatible server, "
                        "e.g. http://127.0.0.1:8000/v1.", **_PANEL),
    "api_key_env": _option(str | None, None, "openai: NAME of the variable holding the API "
                           "key (the key itself is never stored).", **_PANEL),
    "concurrency": _option(int, 16, "openai/vllm-server: requests in flight.", min=1,
                           **_PANEL),
    "port": _option(int | None, None, "vllm-server: loopback port (default: a free one).",
                    min=1, max=65535, **_PANEL),
    "ready_timeout": _option(float, 300.0, "vllm-server: seconds to wait for the server.",
                             min=1.0, **_PANEL),
}
_OPTION_NAMES = tuple(name for name in _PARAMETERS if name != "backend")


def backend_options(verify: bool) -> Callable[[F], F]:
    """Add the backend options (and ``--verify``, defaulting to ``verify``) to a command.

    The decorated function takes ``backend: BackendChoice`` instead of the separate options.
    """

    def decorate(command: F) -> F:
        signature = inspect.signature(command)
        # typer reads Annotated metadata from the signature; resolve the string annotations
        # (``from __future__ import annotations``) so the command's own options keep theirs.
        hints = typing.get_type_hints(command, include_extras=True)
        kept = [p.replace(annotation=hints.get(p.name, p.annotation))
                for p in signature.parameters.values() if p.name != "backend"]
        added = [p.replace(name=name) for name, p in _PARAMETERS.items()]
        added.append(_option(bool, verify, "Serving self-check before any answer: each adapter "
                             "changes the output; the baseline is the same alone and batched "
                             "with adapters.", **_PANEL).replace(name="verify"))

        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            chosen = BackendOptions(**{name: kwargs.pop(name) for name in _OPTION_NAMES})
            kwargs["backend"] = BackendChoice(kwargs.pop("backend"), chosen, kwargs.pop("verify"))
            return command(*args, **kwargs)

        wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[*kept, *added])
        return wrapper  # type: ignore[return-value]

    return decorate

