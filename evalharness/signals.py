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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType

HANDLED = (signal.SIGTERM, signal.SIGHUP)
INTERRUPTS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""Signals that interrupt a command: Ctrl-C and the two ``handled`` turns into ``Terminated``."""

Handler = Callable[[int, FrameType | None], object]


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


class Stop(BaseException):
    """An interrupt on its way through library code that would swallow it (see
    ``not_swallowed``); it is neither a ``KeyboardInterrupt`` nor an ``Exception``."""

    def __init__(self, interrupt: KeyboardInterrupt) -> None:
        super().__init__(str(interrupt) or type(interrupt).__name__)
        self.interrupt = interrupt


def _install(wrap: Callable[[Handler], Handler]) -> dict[int, tuple[Handler, Handler]]:
    """Wrap the Python-level handler of each interrupt signal; returns ``{signal: (previous,
    installed)}``. Ignored and default dispositions are left alone (an ignored SIGTERM stays
    ignored)."""
    installed: dict[int, tuple[Handler, Handler]] = {}
    for signum in INTERRUPTS:
        previous = signal.getsignal(signum)
        if callable(previous):
            ours = wrap(previous)
            signal.signal(signum, ours)
            installed[signum] = (previous, ours)
    return installed


def _restore(installed: dict[int, tuple[Handler, Handler]]) -> None:
    """Put the previous handlers back, except where a handler changed meanwhile (``handled``
    ignores later signals once the first arrived: that stays so)."""
    for signum, (previous, ours) in installed.items():
        if signal.getsignal(signum) is ours:
            signal.signal(signum, previous)


@contextmanager
def not_swallowed() -> Iterator[None]:
    """While inside, an interrupt (Ctrl-C, SIGTERM, SIGHUP) travels as ``Stop``, which code that
    catches ``KeyboardInterrupt`` or ``Exception`` lets through; on leaving, the interrupt
    (``KeyboardInterrupt`` or ``Terminated``) is raised again.

    For calls into libraries that catch ``KeyboardInterrupt``: vLLM's engine start-up does
    (``zmq_socket_ctx``), then waits up to ten minutes for an engine whose start it has just
    abandoned. ``Stop`` instead unwinds through vLLM's ``finally`` blocks, which stop the engine
    process. An interrupt the inner code lost anyway (raised inside a finaliser) is raised on
    leaving too. Main thread only; elsewhere nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[KeyboardInterrupt] = []

    def wrap(previous: Handler) -> Handler:
        def carry(signum: int, frame: FrameType | None) -> None:
            try:
                previous(signum, frame)
            except KeyboardInterrupt as interrupt:
                caught.append(interrupt)
                raise Stop(interrupt) from None

        return carry

    installed = _install(wrap)
    try:
        yield
    except BaseException as exc:
        _restore(installed)
        if caught:
            raise caught[0] from (None if isinstance(exc, Stop) else exc)
        raise
    _restore(installed)
    if caught:
        raise caught[0]


@contextmanager
def deferred() -> Iterator[None]:
    """While inside, an interrupt (Ctrl-C, SIGTERM, SIGHUP) waits; it is raised on leaving.

    For clean-up that must run to its end: an engine shutdown cut short leaves an EngineCore
    process that ignores SIGTERM, which multiprocessing then joins forever at exit. Main thread
    only; elsewhere nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[tuple[Handler, int]] = []

    def wrap(previous: Handler) -> Handler:
        def hold(signum: int, frame: FrameType | None) -> None:
            pending.append((previous, signum))

        return hold

    installed = _install(wrap)
    try:
        yield
    finally:
        _restore(installed)
        if pending:
            previous, signum = pending[0]
            previous(signum, None)  # raises KeyboardInterrupt or Terminated
