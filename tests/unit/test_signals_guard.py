"""signals.not_swallowed and signals.deferred: an interrupt survives library code that catches
KeyboardInterrupt (vLLM's engine start-up does), and waits out clean-up that must finish."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator

import pytest

from evalharness import signals


@contextlib.contextmanager
def swallowing() -> Iterator[None]:
    """Like vLLM's ``zmq_socket_ctx``: catches KeyboardInterrupt and carries on."""
    with contextlib.suppress(KeyboardInterrupt):
        yield


def library_wait() -> None:
    with swallowing():
        time.sleep(5)  # the signal arrives here
    time.sleep(5)  # the library's next long wait


@contextlib.contextmanager
def signal_in(seconds: float, signum: int) -> Iterator[None]:
    previous = signal.signal(signal.SIGALRM, lambda *_: os.kill(os.getpid(), signum))
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_not_swallowed_carries_terminated_through(signum: int) -> None:
    start = time.monotonic()
    with signals.handled() as received:
        with pytest.raises(signals.Terminated), signal_in(0.1, signum), \
                signals.not_swallowed():
            library_wait()
        assert signal.getsignal(signum) == signal.SIG_IGN  # later signals still ignored
    assert time.monotonic() - start < 3
    assert received.signum == signum


def test_not_swallowed_carries_ctrl_c_through() -> None:
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt), signal_in(0.1, signal.SIGINT), \
            signals.not_swallowed():
        library_wait()
    assert time.monotonic() - start < 3
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_not_swallowed_leaves_other_errors_and_handlers_alone() -> None:
    with pytest.raises(ValueError), signals.not_swallowed():
        raise ValueError("not an interrupt")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_deferred_finishes_the_block_then_raises() -> None:
    finished = False
    with signals.handled() as received, pytest.raises(signals.Terminated), \
            signal_in(0.1, signal.SIGTERM), signals.deferred():
        time.sleep(0.5)
        finished = True
    assert finished and received.exit_code == 143
