"""Every exit path ends the vLLM engine: an error, SIGTERM during the offline engine's work,
SIGTERM while evalharness runs a vLLM server. Checked with the process table: no EngineCore,
API server or worker outlives the command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.process_table import new_tag, tagged_processes, wait_until_gone
from tests.vllm.conftest import VLLM_ENV

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

EXIT_PROBE = """
import json, multiprocessing, sys, threading
from evalharness.cli import main
try:
    main(sys.argv[1:])
except SystemExit as done:
    others = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    children = [p.name for p in multiprocessing.active_children()]
    print("AT-EXIT " + json.dumps({"threads": others, "children": children}), flush=True)
    raise
"""


def test_refused_run_ends_the_engine_before_exit(kit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The self-check refuses ``--max-loras 1``; by the time the command returns, the
    engine's client threads and its EngineCore process are gone. (Left running into
    interpreter teardown they aborted the process, exit -6, about one run in ten.)"""
    tag = new_tag()
    done = subprocess.run(
        [sys.executable, "-c", EXIT_PROBE, "generate", "baseline", str(kit.adapter("qv-r8")),
         "--prompts", str(kit.prompts), "--max-new-tokens", "8", "--backend", "vllm",
         "--verify", "--max-loras", "1"],
        cwd=tmp_path, env={**os.environ, **VLLM_ENV, **tag}, capture_output=True, text=True,
        timeout=600, check=False)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "terminate called" not in done.stderr
    state = json.loads(next(line for line in done.stdout.splitlines()
                            if line.startswith("AT-EXIT ")).removeprefix("AT-EXIT "))
    engine_threads = [t for t in state["threads"] if "EngineCore" in t or "MPClient" in t]
    assert engine_threads == [], state
    assert state["children"] == [], state
    assert wait_until_gone(tag) == []


def _wait_for_engine(process: subprocess.Popen[str], tag: dict[str, str], ready: Path | None,
                     seconds: float = 300) -> None:
    """Until the command has started its engine processes (and ``ready`` exists)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        if len(tagged_processes(tag)) >= 2 and (ready is None or ready.exists()):
            return
        time.sleep(0.2)
    process.kill()
    _, err = process.communicate()
    raise AssertionError(f"the engine never started:\n{err[-3000:]}")


@pytest.mark.parametrize("backend", ["vllm", "vllm-server"])
def test_sigterm_ends_every_engine_process(kit, tmp_path: Path, backend: str) -> None:  # type: ignore[no-untyped-def]
    """SIGTERM while the engine loads: exit 143, manifest ``interrupted``, nothing left.

    Offline, the signal lands in vLLM's wait for the engine's handshake, where vLLM's
    ``zmq_socket_ctx`` catches ``KeyboardInterrupt`` (so ``Terminated`` too) and goes on to
    wait ten minutes for an engine it has abandoned; ``signals.not_swallowed`` carries it
    through. The server runs in its own process group, stopped with ``killpg``."""
    tag = new_tag()
    process = subprocess.Popen(
        [sys.executable, "-m", "evalharness", "generate", "baseline",
         str(kit.adapter("qv-r8")), "--prompts", str(kit.prompts), "--max-new-tokens", "200",
         "--backend", backend, "--run-dir", str(tmp_path / "run")],
        cwd=tmp_path, env={**os.environ, **VLLM_ENV, **tag}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    _wait_for_engine(process, tag, tmp_path / "run" / "vllm-server.log"
                     if backend == "vllm-server" else None)
    time.sleep(5)  # into the engine's start-up work, where it ignored SIGTERM before
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=180)

    assert process.returncode == 143, err[-3000:]
    assert "stopped by SIGTERM" in err and "Traceback" not in err
    assert "terminate called" not in err
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    assert wait_until_gone(tag, seconds=30) == []
