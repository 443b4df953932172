"""``--endpoint`` repeated over two real vLLM CPU servers: the answers and perplexities of one
endpoint, each adapter loaded on one server only, and a server killed mid-run losing nothing."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.helpers import read_jsonl
from tests.vllm.conftest import VLLM_ENV, vllm_server_processes

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

MODELS = ("qv-r8", "all-r16")


@contextlib.contextmanager
def two_servers(kit, tmp_path: Path) -> Iterator[list]:  # type: ignore[no-untyped-def,type-arg]
    """Two vLLM servers of the kit's base, started together, planned for both adapters.

    Ten LoRA slots: on the CPU build an unloaded adapter does not free its slot (README,
    "Attach mode"), and the runs below load adapters on these servers eight times in all;
    with the last slot taken, the baseline would be served with an adapter applied.
    """
    from evalharness.backends.lora_plan import plan_lora
    from evalharness.backends.vllm_server import VLLMServer
    from evalharness.candidates import resolve_models

    models = resolve_models(["baseline", *(str(kit.adapter(m)) for m in MODELS)])
    servers = [VLLMServer(plan_lora(models, max_loras=10, cpu_build=True), dtype="float32",
                          cpu_build=True,
                          log_path=tmp_path / f"server-{i}.log") for i in range(2)]
    try:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda server: server.start(), servers))
        yield servers
    finally:
        for server in servers:
            server.stop()


def _only_run(root: Path) -> Path:
    (run_dir,) = [p for p in root.iterdir() if (p / "manifest.json").exists()]
    return run_dir


def _records(root: Path, name: str, field: str) -> dict[tuple[str, str], object]:
    records = read_jsonl(_only_run(root) / name)
    assert len({r["key"] for r in records}) == len(records), "a record was stored twice"
    return {(r["model"], r["prompt_id" if "prompt_id" in r else "example_id"]): r[field]
            for r in records}


def _served(url: str) -> set[str]:
    return {m["id"] for m in httpx.get(f"{url}/models", timeout=5).json()["data"]}


def test_two_vllm_servers_answer_and_score_as_one_and_survive_a_kill(  # type: ignore[no-untyped-def]
        kit, run_cli_subprocess, tmp_path: Path) -> None:
    generate = ("generate", "baseline", *(kit.adapter(m) for m in MODELS), "--prompts",
                kit.prompts, "--max-new-tokens", "24", "--backend", "openai")
    ppl = ("ppl", "baseline", *(kit.adapter(m) for m in MODELS), "--data", kit.eval_data,
           "--backend", "openai")
    with two_servers(kit, tmp_path) as servers:
        urls = [s.url for s in servers]
        both = [part for url in urls for part in ("--endpoint", url)]
        # The self-check runs on each server with the adapter it serves.
        two = run_cli_subprocess(*generate, *both, "--verify", "--runs-root", tmp_path / "2")
        assert two.returncode == 0, two.stderr[-3000:]
        one = run_cli_subprocess(*generate, "--endpoint", urls[0], "--runs-root", tmp_path / "1")
        assert one.returncode == 0, one.stderr[-3000:]
        expected = _records(tmp_path / "1", "answers.jsonl", "text")
        assert _records(tmp_path / "2", "answers.jsonl", "text") == expected
        assert len(expected) == 3 * 32
        # Perplexity through both servers: the NLLs of one.
        ppl_one = run_cli_subprocess(*ppl, "--endpoint", urls[0], "--runs-root", tmp_path / "p1")
        ppl_two = run_cli_subprocess(*ppl, *both, "--runs-root", tmp_path / "p2")
        assert ppl_one.returncode == 0 and ppl_two.returncode == 0, ppl_two.stderr[-3000:]
        nll = _records(tmp_path / "p1", "perplexity.jsonl", "nll_sum")
        assert _records(tmp_path / "p2", "perplexity.jsonl", "nll_sum").keys() == nll.keys()
        assert all(abs(float(v) - float(nll[k])) < 1e-4  # type: ignore[arg-type]
                   for k, v in _records(tmp_path / "p2", "perplexity.jsonl", "nll_sum").items())
        # Kill one server (its whole process group) while the run is under way.
        root = tmp_path / "3"
        process = subprocess.Popen(
            [sys.executable, "-m", "evalharness", *map(str, generate), *both,
             "--runs-root", str(root)],
            cwd=tmp_path, env={**os.environ, **VLLM_ENV}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        killed = False
        deadline = time.monotonic() + 300
        while not killed and process.poll() is None and time.monotonic() < deadline:
            answers = list(root.glob("*/answers.jsonl"))
            if answers and len(answers[0].read_text().splitlines()) >= 6:
                assert servers[1].pid is not None
                os.killpg(servers[1].pid, signal.SIGKILL)
                killed = True
            time.sleep(0.02)
        _, err = process.communicate(timeout=600)
        assert killed, "the run ended before the server could be killed"
        assert process.returncode == 0, err[-3000:]
        assert f"lost the endpoint {urls[1]} mid-run; its unfinished work moves" in " ".join(
            err.split())
        assert _records(root, "answers.jsonl", "text") == expected
        # What the runs loaded on the survivor (its own adapter, the one moved to it) is
        # unloaded again at the end.
        assert _served(urls[0]) == {str(kit.base)}, "adapters were left on the survivor"
    assert vllm_server_processes() == []
