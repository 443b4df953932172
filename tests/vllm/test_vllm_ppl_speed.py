"""Perplexity through the offline vLLM engine after the speed work (issue 13, item 6):
correctness only; benchmarks/bench_vllm_ppl.py measures the speed.

The engine now scores with ``detokenize=False`` and, on the CPU build with LoRA, starts
without ``torch.compile``. None of that may change a number: the
per-token NLLs, rolling windows included, must still match transformers on the same windows,
a text's NLLs must not depend on what shares its batch, and nothing is compiled on the way.

Run by the test in a subprocess (vLLM spawns workers: it needs the main guard below), as
``python tests/vllm/test_vllm_ppl_speed.py KIT``; prints ``RESULT {json}``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

LONG_REPEATS = 2
"""The kit's held-out responses joined this many times: a text several windows long."""


def test_vllm_scores_match_transformers_with_windows_and_nothing_compiled(  # type: ignore[no-untyped-def]
        kit, tmp_path: Path) -> None:
    from tests.vllm.conftest import VLLM_ENV

    inductor = tmp_path / "inductor-cache"
    env = {**os.environ, **VLLM_ENV, "TORCHINDUCTOR_CACHE_DIR": str(inductor)}
    env.pop("TORCH_COMPILE_DISABLE", None)  # what a user has by default
    done = subprocess.run([sys.executable, __file__, str(kit.root)], capture_output=True,
                          text=True, timeout=600, env=env, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
                        .removeprefix("RESULT "))
    print(json.dumps(result, indent=1))
    assert result["texts"] == 3 * (32 + 3)
    assert result["lengths_equal"] and result["windows_equal"]
    # the long texts really were scored in several windows, the short ones in one pass
    assert result["windowed_texts"] == 3 * 2, result
    assert result["max_nll_diff"] <= 1e-3  # the tolerance of the existing agreement test
    assert result["max_nll_diff_windowed"] <= 1e-3
    # one call per text and one call for all give the same numbers (batch invariance, and
    # every row mapped back to its own request)
    assert result["max_alone_vs_batched"] <= 1e-4
    assert result["parent_environment_unchanged"]
    compiled = [p.name for p in inductor.rglob("*") if p.is_file()] if inductor.exists() else []
    assert compiled == [], f"the engine compiled kernels for prompt log-probs: {compiled[:5]}"


def _requests(kit_root: Path) -> list[Any]:
    """The kit's held-out set under the baseline and two adapters, plus per model three
    texts past the context: plain text and a long response after a long chat prompt (both
    scored in several windows), and a short response after a long prompt (one pass over
    the prompt's last tokens)."""
    from evalharness.backends.base import ScoreRequest
    from evalharness.candidates import resolve_models
    from evalharness.perplexity import load_eval_data
    from evalharness.schema import Message

    models = resolve_models(["baseline", str(kit_root / "adapters" / "qv-r8"),
                             str(kit_root / "adapters" / "all-r16")])
    examples = load_eval_data(kit_root / "data" / "eval.jsonl").examples
    long_text = " ".join(e.text for e in examples * LONG_REPEATS)
    texts = [(e.id, e.text, e.context) for e in examples] + [
        ("long-plain", long_text, None),
        ("long-chat", long_text, (Message(role="user", content=long_text),)),
        ("long-prompt", examples[0].text, (Message(role="user", content=long_text),)),
    ]
    return [ScoreRequest(m, example_id, text, context, f"{m.key}-{example_id}")
            for m in models for example_id, text, context in texts]


def main(kit_root: str) -> None:
    """Score the requests with both backends on the same windows; print what was seen."""
    import evalharness.backends.hf as hf_module
    from evalharness.backends.hf import HFBackend
    from evalharness.backends.vllm_engine import VLLMBackend

    requests = _requests(Path(kit_root))
    vllm = VLLMBackend()
    vllm.prepare([r.model for r in requests])
    environment_unchanged = "TORCH_COMPILE_DISABLE" not in os.environ
    window = vllm._llm.llm_engine.model_config.max_model_len - 2
    by_vllm = {s.request.key: s for s in vllm.score(requests)}
    sample = requests[::7] + [r for r in requests if r.example_id.startswith("long")]
    alone = [next(iter(vllm.score([r]))) for r in sample]
    vllm.close()

    # transformers on the very windows vLLM reads (its own context is two tokens longer)
    hf_module.context_length = lambda config, max_model_len=None: window  # type: ignore[attr-defined]
    hf = HFBackend()
    hf.prepare([r.model for r in requests])
    by_hf = {s.request.key: s for s in hf.score(requests)}
    hf.close()

    def max_diff(keys: list[str]) -> float:
        return max(abs(a - b) for k in keys for a, b in
                   zip(by_vllm[k].token_nlls, by_hf[k].token_nlls, strict=True))

    keys = list(by_hf)
    windowed = [k for k in keys if by_vllm[k].window is not None]
    print("RESULT " + json.dumps({
        "texts": len(by_vllm),
        "lengths_equal": all(len(by_vllm[k].token_nlls) == len(by_hf[k].token_nlls)
                             for k in keys),
        "windows_equal": all(by_vllm[k].window == by_hf[k].window for k in keys),
        "windowed_texts": len(windowed),
        "max_nll_diff": max_diff(keys),
        "max_nll_diff_windowed": max_diff(windowed),
        "max_alone_vs_batched": max(
            abs(a - b) for s in alone
            for a, b in zip(s.token_nlls, by_vllm[s.request.key].token_nlls, strict=True)),
        "parent_environment_unchanged": environment_unchanged,
    }))


if __name__ == "__main__":
    main(sys.argv[1])
