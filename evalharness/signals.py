"""SIGTERM and SIGHUP end a command the way Ctrl-C does.

``timeout``, CI runners, Slurm and ``docker stop`` send SIGTERM; a closed terminal sends
SIGHUP. Python's default for both is to die at once, skipping every ``finally``: a managed
vLLM server or EngineCore process is left running (holding memory, a port, a GPU) and the
manifest still says ``running``. Raising an exception instead unwinds the command like
Ctrl-C: backends close (stopping their processes), the manifest says ``interrupted``, and the
CLI exits with 128 + the signal number.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType

HANDLED = (signal.SIGTERM, signal.SIGHUP)


class Terminated(KeyboardInterrupt):
    """The process was asked to stop by a signal (a ``KeyboardInterrupt``, so every place
    that cleans up after Ctrl-C cleans up after it too)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass
class Received:
    """Which signal stopped the command, if one did (typer turns every interrupt into exit
    code 130, so the CLI reads the signal from here)."""

    signum: int | None = None

    @property
    def name(self) -> str:
        """The signal's name, e.g. ``SIGTERM``."""
        return signal.Signals(self.signum).name if self.signum is not None else "none"

    @property
    def exit_code(self) -> int | None:
        """128 + the signal number, the shell's convention (143 for SIGTERM)."""
        return None if self.signum is None else 128 + self.signum


@contextmanager
def handled() -> Iterator[Received]:
    """While inside, SIGTERM and SIGHUP raise ``Terminated`` in the main thread; yields what
    was received. The previous handlers come back on leaving (the CLI also runs in-process,
    e.g. under pytest)."""
    received = Received()

    def stop(signum: int, frame: FrameType | None) -> None:
        # Later signals are ignored so the clean-up the first one started (stopping a
        # server, writing the manifest) is not itself cut short; SIGKILL remains.
        for name in HANDLED:
            signal.signal(name, signal.SIG_IGN)
        received.signum = signum
        raise Terminated(signum)

    if threading.current_thread() is not threading.main_thread():
        yield received  # only the main thread may set handlers; leave the defaults
        return
    previous = {name: signal.signal(name, stop) for name in HANDLED}
    try:
        yield received
    finally:
        for name, handler in previous.items():
            signal.signal(name, handler)
