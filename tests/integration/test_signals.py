"""SIGTERM and SIGHUP (timeout, CI, Slurm, docker stop, a closed terminal) stop a command the
way Ctrl-C does: exit 128 + signal, manifest ``interrupted``, nothing finished lost, no process
left behind, and the rerun resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fakes.openai_server import FakeOpenAIServer, Reply
from tests.helpers import judge_folder, read_jsonl
from tests.process_table import new_tag, wait_until_gone

pytestmark = pytest.mark.slow
ENV = {"HF_HUB_OFFLINE": "1", "COLUMNS": "200", "TOKENIZERS_PARALLELISM": "false"}


def _wait_for_lines(root: Path, pattern: str, count: int, process: subprocess.Popen[str],
                    seconds: float = 180) -> Path:
    """The first file matching ``pattern`` under ``root`` once it holds ``count`` lines."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        found = list(root.glob(pattern))
        if found and len(read_jsonl(found[0])) >= count:
            return found[0]
        time.sleep(0.1)
    process.kill()
    _, err = process.communicate()
    raise AssertionError(f"no {pattern} with {count} lines appeared:\n{err[-2000:]}")


def _stop(process: subprocess.Popen[str], signum: int) -> str:
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    return err


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_signal_during_generation_stops_like_ctrl_c(kit, tmp_path: Path, signum: int,  # type: ignore[no-untyped-def]
                                                    code: int) -> None:
    tag = new_tag()
    command = [sys.executable, "-m", "evalharness", "generate", "baseline",
               str(kit.adapter("qv-r8")), "--prompts", str(kit.prompts), "--batch-size", "1",
               "--max-new-tokens", "64"]
    process = subprocess.Popen(command, cwd=tmp_path, env={**os.environ, **ENV, **tag},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    answers = _wait_for_lines(tmp_path / "runs", "*/answers.jsonl", 3, process)
    err = _stop(process, signum)

    assert process.returncode == code, err
    name = signal.Signals(signum).name
    assert f"stopped by {name}" in err and "rerun the same command to resume" in err
    assert "Traceback" not in err
    kept = read_jsonl(answers)
    assert 3 <= len(kept) < 64
    manifest = json.loads((answers.parent / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    assert wait_until_gone(tag) == []


def test_sigterm_during_judging_keeps_judgments_and_rerun_judges_only_the_rest(  # type: ignore[no-untyped-def]
        kit, tmp_path: Path) -> None:
    key_env = {"EVALHARNESS_TEST_JUDGE_KEY": "sk-test-signals"}
    judge = judge_folder(tmp_path / "slow-judge", "EVALHARNESS_TEST_JUDGE_KEY")
    with FakeOpenAIServer(lambda call: Reply("Short reason.\n[[A]]"), latency=0.25) as server:
        command = [sys.executable, "-m", "evalharness", "compare", str(kit.adapter("qv-r8")),
                   "--prompts", str(kit.prompts), "--backend", "fake", "--judge", str(judge),
                   "--judge-url", server.base_url, "--judge-model", "fake-judge",
                   "--judge-concurrency", "1", "--bootstrap", "200"]
        env = {**os.environ, **ENV, **key_env}
        process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        judgments = _wait_for_lines(tmp_path / "runs", "*/judgments.jsonl", 3, process)
        err = _stop(process, signal.SIGTERM)

        assert process.returncode == 143, err
        assert "Traceback" not in err
        kept = len(read_jsonl(judgments))
        assert 3 <= kept < 64
        manifest = json.loads((judgments.parent / "manifest.json").read_text())
        assert manifest["status"] == "interrupted"

        server.latency = 0.0
        calls_before = server.n_calls
        rerun = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                               timeout=300, check=False)
        assert rerun.returncode == 0, rerun.stderr
        assert len(read_jsonl(judgments)) == 64
        # Only the games not on disk are asked again (plus, at most, one endpoint probe).
        assert server.n_calls - calls_before <= 64 - kept + 1
