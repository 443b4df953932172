"""`ppl --backend vllm` on vLLM's CPU build scores with transformers, and says so.

On the CPU build vLLM's LoRA kernels make scoring about 6x slower than transformers with the
same NLLs (benchmarks/bench_vllm_ppl.py), so `--ppl-backend auto` (the default) picks the
faster path; the manifest and the terminal name it, and the records are keyed by the engine
that computed them, so a `--backend hf` run reuses them. No vLLM engine is started.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from evalharness.backends.lora_plan import is_cpu_build
from tests.helpers import read_jsonl, write_jsonl

pytestmark = pytest.mark.skipif(not is_cpu_build(), reason="the rule is for vLLM's CPU build")


def _manifest(runs: Path, command: str = "ppl") -> dict[str, Any]:
    (found,) = [json.loads((p / "manifest.json").read_text()) for p in runs.iterdir()
                if (p / "manifest.json").is_file()
                and json.loads((p / "manifest.json").read_text())["command"] == command]
    return found


def test_auto_scores_with_transformers_and_an_hf_run_reuses_it(kit: Any, cli: Any,
                                                             tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "eval.jsonl", [{"id": f"e{i}", "text": text} for i, text
                                                 in enumerate(("Elmstead is a college.",
                                                               "Redmoor was founded in 1971."))])
    adapter = kit.adapter("qv-r8")
    result = cli("ppl", "baseline", adapter, "--base", kit.base, "--data", data,
                 "--backend", "vllm", "--runs-root", tmp_path / "runs")
    assert result.code == 0, result.text
    assert "scored with hf instead of vllm" in " ".join(result.out.split())
    manifest = _manifest(tmp_path / "runs")
    assert manifest["backend"] == "hf"
    assert manifest["ppl_backend"].startswith("hf instead of vllm: vLLM's CPU build")
    assert not list((tmp_path / "runs").glob("*/vllm-engine.log"))  # no engine was started
    again = cli("ppl", "baseline", adapter, "--base", kit.base, "--data", data,
                "--backend", "hf", "--runs-root", tmp_path / "other")
    assert again.code == 0
    # The hf run computes nothing new only if the keys match: check the records instead.
    first = {r["key"] for p in (tmp_path / "runs").iterdir()
             for r in read_jsonl(p / "perplexity.jsonl")}
    second = {r["key"] for p in (tmp_path / "other").iterdir()
              for r in read_jsonl(p / "perplexity.jsonl")}
    assert first == second and len(first) == 4


def test_engine_keeps_the_backend_and_a_bad_value_is_refused(kit: Any, cli: Any,
                                                             tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "eval.jsonl", [{"id": "e0", "text": "A short text."}])
    bad = cli("ppl", "baseline", "--base", kit.base, "--data", data, "--backend", "vllm",
              "--ppl-backend", "fastest")
    assert bad.code == 2 and "--ppl-backend 'fastest' is not known" in bad.err
    from evalharness.backends.options import BackendOptions
    from evalharness.backends.registry import BackendChoice, ppl_backend

    vllm = BackendChoice("vllm", BackendOptions(), verify=True)
    assert ppl_backend(vllm, "engine") == (vllm, None)
    chosen, why = ppl_backend(vllm, "hf")
    assert chosen.name == "hf" and why == "hf instead of vllm: asked for with --ppl-backend hf"
    hf = BackendChoice("hf", BackendOptions(), verify=False)
    assert ppl_backend(hf) == (hf, None)
