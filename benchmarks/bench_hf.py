"""transformers + peft backend: generation throughput, batched against one prompt at a time.

Both measured in one run on the same loaded model (the ratio is what to compare across
machines; the tokens per second are this machine's). Also times the kit build when the kit is
missing.

Run: ``.venv/bin/python benchmarks/bench_hf.py [KIT]`` (default kit: runs/.kit).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


def main(kit_folder: Path) -> None:
    from evalharness.backends.base import GenRequest
    from evalharness.backends.hf import HFBackend
    from evalharness.candidates import resolve_models
    from evalharness.demo.kit import build_kit
    from evalharness.prompts import load_prompt_set
    from evalharness.schema import GenConfig

    start = time.perf_counter()
    kit = build_kit(kit_folder)
    built = time.perf_counter() - start
    print(f"kit: {'built' if kit.seconds else 'reused'} in {built:.1f} s {kit.seconds or ''}")
    models = resolve_models(["baseline", str(kit.adapter("qv-r8")), str(kit.adapter("all-r16"))])
    prompts = load_prompt_set(kit.prompts).prompts
    requests = [GenRequest(m, p, f"{m.key}-{p.id}") for m in models for p in prompts]
    gen = GenConfig(max_new_tokens=48)
    for batch_size in (16, 1):
        backend = HFBackend(batch_size=batch_size)
        backend.prepare(models)
        start = time.perf_counter()
        tokens = sum(g.n_tokens for g in backend.generate(requests, gen))
        seconds = time.perf_counter() - start
        print(f"batch size {batch_size:>2}: {len(requests)} answers, {tokens} tokens in "
              f"{seconds:.2f} s = {tokens / seconds:.0f} tokens/s")
        backend.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("runs/.kit"))
