"""vLLM backend benchmarks, as ratios measured in one run (this machine is noisy).

1. Harness overhead: answers per second through ``VLLMBackend.generate`` against calling
   ``vllm.LLM.generate`` directly on the same engine with the same token ids and LoRA
   requests (aim: harness / direct >= 0.9).
2. One engine for a league: the baseline and four adapters served by one engine (LoRA
   hot-loading) against a fresh engine per adapter, wall time including engine starts.

Run: ``.venv/bin/python benchmarks/bench_vllm.py [KIT]`` (default kit: runs/.kit, built if
missing). Takes a few minutes on two CPU cores.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROUNDS = 3


def main(kit_folder: Path) -> None:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from vllm import SamplingParams

    from evalharness.backends.base import GenRequest
    from evalharness.backends.tokens import prompt_ids
    from evalharness.backends.vllm_engine import VLLMBackend
    from evalharness.candidates import resolve_models
    from evalharness.demo.kit import build_kit
    from evalharness.prompts import load_prompt_set
    from evalharness.schema import GenConfig

    kit = build_kit(kit_folder)
    adapters = [str(kit.adapter(a.name)) for a in kit.recipe.adapters]
    models = resolve_models(["baseline", *adapters])
    prompts = load_prompt_set(kit.prompts).prompts
    gen = GenConfig(max_new_tokens=48)
    requests = [GenRequest(m, p, f"{m.key}-{p.id}") for m in models for p in prompts]

    # 1. Harness vs direct calls on the same engine.
    backend = VLLMBackend()
    start = time.perf_counter()
    backend.prepare(models)
    one_engine_start = time.perf_counter() - start
    llm = backend._llm  # the very engine the harness drives
    tokenizer = backend._tokenizer
    direct_prompts = [{"prompt_token_ids": prompt_ids(tokenizer, r.prompt.messages)}
                      for r in requests]
    params = SamplingParams(max_tokens=gen.max_new_tokens, temperature=0.0)
    loras = [backend._lora_for(r.model) for r in requests]
    harness_s, direct_s = [], []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        outputs = llm.generate(direct_prompts, [params] * len(requests), lora_request=loras,
                               use_tqdm=False)
        direct_s.append(time.perf_counter() - start)
        direct_tokens = sum(len(o.outputs[0].token_ids) for o in outputs)
        start = time.perf_counter()
        results = list(backend.generate(requests, gen))
        harness_s.append(time.perf_counter() - start)
    print(f"requests: {len(requests)} ({len(models)} models x {len(prompts)} prompts), "
          f"{direct_tokens} tokens per round")
    print(f"direct vLLM:  best {min(direct_s):.2f} s  ({direct_tokens / min(direct_s):.0f} "
          "tok/s)")
    print(f"via harness:  best {min(harness_s):.2f} s  ({len(results)} answers)")
    print(f"throughput ratio harness/direct: {min(direct_s) / min(harness_s):.3f}")

    # 2. One engine for the whole league vs a fresh engine per adapter.
    start = time.perf_counter()
    list(backend.generate(requests, gen))
    one_engine = one_engine_start + (time.perf_counter() - start)
    backend.close()
    per_adapter = 0.0
    baseline = models[0]
    for adapter in models[1:]:
        start = time.perf_counter()
        fresh = VLLMBackend()
        fresh.prepare([baseline, adapter])
        list(fresh.generate([r for r in requests if r.model.key == adapter.key], gen))
        fresh.close()
        per_adapter += time.perf_counter() - start
    print(f"league of {len(models) - 1} adapters: one engine {one_engine:.1f} s, a fresh engine "
          f"per adapter {per_adapter:.1f} s; ratio {per_adapter / one_engine:.2f}x")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("runs/.kit"))
