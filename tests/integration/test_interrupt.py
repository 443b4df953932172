"""Ctrl-C mid-run: exit 130, finished answers kept, the rerun resumes where it stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import read_jsonl


def test_ctrl_c_keeps_finished_answers_and_rerun_resumes(kit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    command = [sys.executable, "-m", "evalharness", "generate", "baseline",
               str(kit.adapter("qv-r8")), "--prompts", str(kit.prompts), "--batch-size", "1",
               "--max-new-tokens", "64"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    answers = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        found = list((tmp_path / "runs").glob("*/answers.jsonl"))
        if found and len(read_jsonl(found[0])) >= 3:
            answers = found[0]
            break
        time.sleep(0.1)
    assert answers is not None, "no answers appeared before the deadline"
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "rerun the same command to resume" in err
    assert "Traceback" not in err
    kept = len(read_jsonl(answers))
    assert 3 <= kept < 64
    manifest = json.loads((answers.parent / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"

    rerun = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=300, check=False)
    assert rerun.returncode == 0, rerun.stderr
    flat = " ".join(rerun.stdout.split())
    assert f"{kept} already in the run" in flat and f"{64 - kept} computed now" in flat
    assert len({r["key"] for r in read_jsonl(answers)}) == 64
