"""Start, hot-load and stop a ``vllm serve`` process on a loopback port.

The server runs in its own session (process group), so Ctrl-C in the terminal reaches only
evalharness, which then stops the whole group: the API server and its engine workers. Its log
goes to a file in the run directory. Adapters are loaded at runtime through
``/v1/load_lora_adapter`` (``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``) under their content-hash
names and unloaded when the run is done.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import httpx

from evalharness import signals
from evalharness.backends.lora_plan import COMPILE_DISABLE, CPU_ENVIRONMENT, LoraPlan
from evalharness.errors import BackendError, CompatibilityError, UserError

SERVER_MODULE = "vllm.entrypoints.openai.api_server"
"""Launched with ``python -m``: the ``vllm serve`` console script of the CPU build has no
package metadata named ``vllm`` and fails."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def check_port_free(port: int) -> None:
    """Raise ``UserError`` if ``port`` on 127.0.0.1 is taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise UserError(f"port {port} on 127.0.0.1 is already in use. Fix: pass another "
                            "--port, or leave it out to pick a free one.") from None


def server_command(plan: LoraPlan, port: int, dtype: str, max_model_len: int | None
                   ) -> list[str]:
    """The command line of the server for ``plan``."""
    command = [sys.executable, "-m", SERVER_MODULE, "--model", plan.base_model,
               "--host", "127.0.0.1", "--port", str(port), "--dtype", dtype,
               "--disable-uvicorn-access-log"]
    if max_model_len is not None:
        command += ["--max-model-len", str(max_model_len)]
    if plan.enable_lora:
        command += ["--enable-lora", "--max-lora-rank", str(plan.max_lora_rank),
                    "--max-loras", str(plan.max_loras), "--max-cpu-loras",
                    str(plan.max_cpu_loras)]
        if plan.target_modules is not None:
            command += ["--lora-target-modules", *plan.target_modules]
    return command


class VLLMServer:
    """One ``vllm serve`` process for one base model and its adapters."""

    def __init__(self, plan: LoraPlan, *, dtype: str, cpu_build: bool, log_path: Path,
                 port: int | None = None, max_model_len: int | None = None,
                 ready_timeout: float = 300.0) -> None:
        if port is not None:
            check_port_free(port)
        self.plan = plan
        self.port = port or free_port()
        self.log_path = log_path
        self.ready_timeout = ready_timeout
        self._command = server_command(plan, self.port, dtype, max_model_len)
        self._env = {**os.environ, "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"}
        if cpu_build:
            # A user's own setting wins over both (the dicts to the right override).
            compile_off = {COMPILE_DISABLE: "1"} if plan.enable_lora else {}
            self._env = {**CPU_ENVIRONMENT, **compile_off, **self._env}
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.loaded: list[str] = []

    @property
    def url(self) -> str:
        """The server's OpenAI-compatible base URL."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        """The server's process id (its process group id too)."""
        return self._process.pid if self._process else None

    def start(self) -> None:
        """Launch the server and wait until it answers ``/v1/models``.

        Raises:
            BackendError: the server exited while starting (the log's tail is quoted).
            UserError: it did not answer within ``ready_timeout`` seconds.
        """
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        with signals.deferred():  # an interrupt between fork and return would orphan it
            self._process = subprocess.Popen(self._command, stdout=self._log,
                                             stderr=subprocess.STDOUT, env=self._env,
                                             start_new_session=True)
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                code = self._process.returncode
                self.stop()
                raise BackendError(f"the vLLM server exited with code {code} while starting. "
                                   f"Last lines of {self.log_path}:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/models", timeout=2.0).status_code == 200:
                    return
            time.sleep(0.5)
        self.stop()
        raise UserError(f"the vLLM server did not become ready within {self.ready_timeout:.0f} "
                        f"s (log: {self.log_path}). Fix: raise --ready-timeout, or read the "
                        "log for why it is slow or stuck.")

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of the server log."""
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def load_adapter(self, name: str, path: str) -> None:
        """Hot-load an adapter under ``name``.

        Raises:
            CompatibilityError: the server refused it (rank above its limit, wrong base, ...).
        """
        response = httpx.post(f"http://127.0.0.1:{self.port}/v1/load_lora_adapter",
                              json={"lora_name": name, "lora_path": path}, timeout=120.0)
        if response.status_code != 200:
            raise CompatibilityError(f"the vLLM server refused adapter {path} (HTTP "
                                     f"{response.status_code}: {response.text[:400]}). Fix: "
                                     "check its rank and base model against the server's.")
        self.loaded.append(name)

    def unload_adapter(self, name: str) -> None:
        """Unload an adapter; later requests for it get 404."""
        httpx.post(f"http://127.0.0.1:{self.port}/v1/unload_lora_adapter",
                   json={"lora_name": name}, timeout=60.0)
        self.loaded.remove(name)

    def stop(self, grace: float = 20.0) -> None:
        """Stop the server's whole process group: SIGTERM, then SIGKILL after ``grace`` s.
        An interrupt meanwhile (a second Ctrl-C) waits until the group is gone."""
        with signals.deferred():
            self._stop(grace)

    def _stop(self, grace: float) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, sig)
                try:
                    process.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if process is not None:
            # Engine workers share the group; make sure none outlives the server.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None
        self._process = None
