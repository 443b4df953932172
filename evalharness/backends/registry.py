"""Pick a backend by name; heavy imports happen only for the backend chosen."""

from __future__ import annotations

from typing import Any

from evalharness.backends.base import Backend
from evalharness.errors import UserError

BACKENDS = ("hf", "fake")


def check_backend_name(name: str) -> None:
    """Raise ``UserError`` unless ``name`` is a known backend."""
    if name not in BACKENDS:
        raise UserError(f"unknown backend '{name}'. Fix: use one of {', '.join(BACKENDS)}.")


def make_backend(name: str, **options: Any) -> Backend:
    """A new backend instance.

    Raises:
        UserError: unknown backend name, or its extra is not installed.
    """
    if name == "hf":
        from evalharness.backends.hf import HFBackend

        return HFBackend(**options)
    if name == "fake":
        from evalharness.backends.fake import FakeBackend

        return FakeBackend()
    check_backend_name(name)
    raise AssertionError(f"backend {name} is listed but not built")
