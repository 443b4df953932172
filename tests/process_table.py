"""Processes a test started, found through the process table (to prove none is left behind).

A test gives the command it starts a unique environment variable; every process that command
starts (a vLLM server, an EngineCore, a worker) inherits it, also once re-parented to init.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

TAG_VARIABLE = "EVALHARNESS_TEST_PROCESS_TAG"


def new_tag() -> dict[str, str]:
    """An environment entry that marks the processes of one test."""
    return {TAG_VARIABLE: uuid.uuid4().hex}


def tagged_processes(tag: dict[str, str]) -> list[str]:
    """``pid: command line`` of every live process carrying ``tag`` (zombies excluded)."""
    marker = f"{TAG_VARIABLE}={tag[TAG_VARIABLE]}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if state != "Z":
            found.append(f"{entry.name}: {command.strip()}")
    return found


def wait_until_gone(tag: dict[str, str], seconds: float = 15.0) -> list[str]:
    """The tagged processes still alive after up to ``seconds`` (exit takes a moment)."""
    deadline = time.monotonic() + seconds
    alive = tagged_processes(tag)
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = tagged_processes(tag)
    return alive
