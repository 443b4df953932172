"""The exception tree of evalharness.

::

    EvalHarnessError                 anything this package raises on purpose
    ├── UserError                    bad input: the CLI prints the message and exits 2
    │   ├── MissingExtraError        an optional dependency is not installed
    │   ├── CompatibilityError       an adapter does not fit the base model / server
    │   └── BackendLostError         a server or worker went away mid-run (work moves on)
    ├── BackendError                 a model backend failed while running
    └── JudgeError                   a judge failed in a way retries could not mend

Every ``UserError`` message names the problem, where it is (a file and line when there is
one), and the fix, so a person can act on it without reading a traceback.
"""

from __future__ import annotations


class EvalHarnessError(Exception):
    """Base class of every error evalharness raises on purpose."""


class UserError(EvalHarnessError):
    """Bad input from the user; the CLI prints it and exits with code 2."""


class MissingExtraError(UserError):
    """An optional dependency (an extra) is needed but not installed."""

    def __init__(self, module: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the Python package '{module}', which is not installed. "
            f"Fix: pip install 'evalharness[{extra}]'"
        )
        self.module = module
        self.extra = extra


class CompatibilityError(UserError):
    """An adapter cannot be served on the requested base model or server."""


class BackendLostError(UserError):
    """A server or worker stopped answering mid-run. What finished is saved; a pool of
    backends (``--endpoint`` repeated, ``--backend ray``) moves the rest to the others, and
    with none left the CLI prints this and exits 2 (a rerun resumes)."""


class BackendError(EvalHarnessError):
    """A model backend failed while generating or scoring."""


class JudgeError(EvalHarnessError):
    """A judge failed in a way that retries could not mend."""


def require_module(module: str, extra: str, purpose: str) -> None:
    """Raise ``MissingExtraError`` unless ``module`` can be imported.

    Checked before any heavy work starts, so a missing extra costs the user seconds, not a
    model load.
    """
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MissingExtraError(module, extra, purpose)
