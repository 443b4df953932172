"""Perplexity through vLLM against transformers, as a ratio measured in one run.

Both paths score the same requests (the kit's held-out set under the baseline and two
adapters: 96 texts) in one process on this machine, after each has loaded its models:

- ``first``: the first ``score`` call, which is what a ``ppl`` run pays (vLLM compiles and
  warms what it has not used yet on the first prompt-logprob request);
- ``warm``: the best of ``--rounds`` further calls, the two paths' rounds interleaved;
- ``load``: starting the engine / loading base and adapters (not part of the ratio: vLLM's
  engine start is paid once per run whatever is scored).

It also checks the two paths agree (largest per-token NLL difference) and, with
``--breakdown``, times raw ``LLM.generate`` variants on the same engine to show where the
time goes: prompt-logprob width, detokenisation, LoRA, one call per text.

``TORCH_COMPILE_DISABLE=0`` in the environment brings back vLLM's compiled token-rank count
(what the engine did before: about 2 s more on the first call, about 10 s with a fresh
``TORCHINDUCTOR_CACHE_DIR``). On a shared two-core machine the transformers figures swing
widely with other load (its two torch threads wait on each other when a core is taken;
vLLM's worker runs one pinned thread): compare ratios from quiet runs.

Run: ``.venv/bin/python benchmarks/bench_vllm_ppl.py [KIT] [--rounds N] [--breakdown]``
(default kit: runs/.kit, built if missing). About two minutes on two CPU cores, most of it
the engine start.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def timed(call: Callable[[], object]) -> float:
    """Seconds ``call`` takes."""
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def best_of(rounds: int, call: Callable[[], object]) -> float:
    """The fastest of ``rounds`` calls (this machine is shared and noisy)."""
    return min(timed(call) for _ in range(rounds))


def breakdown(backend: Any, requests: Sequence[Any], rounds: int) -> None:
    """Time raw ``LLM.generate`` variants on the engine ``backend`` drives."""
    from vllm import SamplingParams

    from evalharness.backends.tokens import scoring_ids

    llm = backend._llm
    prompts = [{"prompt_token_ids": scoring_ids(backend._tokenizer, r.text, r.context).ids}
               for r in requests]
    loras = [backend._lora_for(r.model) for r in requests]
    no_lora = [None] * len(requests)

    def params(**extra: Any) -> Any:
        return SamplingParams(max_tokens=1, temperature=0.0, **extra)

    def one_call(sampling: Any, lora: Sequence[Any]) -> Callable[[], object]:
        return lambda: llm.generate(prompts, [sampling] * len(prompts), lora_request=list(lora),
                                    use_tqdm=False)

    def per_text(sampling: Any) -> Callable[[], object]:
        return lambda: [llm.generate(prompts[i:i + 1], [sampling], lora_request=loras[i:i + 1],
                                     use_tqdm=False) for i in range(len(prompts))]

    variants: dict[str, Callable[[], object]] = {
        "prompt_logprobs=0, detokenize (before)": one_call(params(prompt_logprobs=0), loras),
        "prompt_logprobs=0, no detokenize (after)":
            one_call(params(prompt_logprobs=0, detokenize=False), loras),
        "prompt_logprobs=5, detokenize": one_call(params(prompt_logprobs=5), loras),
        "prompt_logprobs=5, no detokenize":
            one_call(params(prompt_logprobs=5, detokenize=False), loras),
        "no prompt logprobs (forward only)": one_call(params(detokenize=False), loras),
        "prompt_logprobs=0, no detokenize, no LoRA":
            one_call(params(prompt_logprobs=0, detokenize=False), no_lora),
        "no prompt logprobs, no LoRA": one_call(params(detokenize=False), no_lora),
        "one call per text, prompt_logprobs=0, no detokenize":
            per_text(params(prompt_logprobs=0, detokenize=False)),
    }
    seconds = {name: [] for name in variants}  # type: dict[str, list[float]]
    for _ in range(rounds):  # interleaved, so a burst of load hits every variant alike
        for name, call in variants.items():
            seconds[name].append(timed(call))
    print("\nwhere the time goes (raw LLM.generate, same engine, best of "
          f"{rounds}, {len(prompts)} texts):")
    for name, values in seconds.items():
        print(f"  {name:<52} {min(values):7.3f} s")


def main(kit_folder: Path, rounds: int, show_breakdown: bool) -> None:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from evalharness.backends.base import ScoreRequest
    from evalharness.backends.hf import HFBackend
    from evalharness.backends.vllm_engine import VLLMBackend
    from evalharness.candidates import resolve_models
    from evalharness.demo.kit import build_kit
    from evalharness.perplexity import load_eval_data

    kit = build_kit(kit_folder)
    models = resolve_models(["baseline", str(kit.adapter("qv-r8")), str(kit.adapter("all-r16"))])
    examples = load_eval_data(kit.eval_data).examples
    requests = [ScoreRequest(m, e.id, e.text, e.context, f"{m.key}-{e.id}")
                for m in models for e in examples]
    backends: dict[str, Any] = {"hf": HFBackend(), "vllm": VLLMBackend()}
    results: dict[str, dict[str, float]] = {name: {} for name in backends}
    nlls: dict[str, dict[str, tuple[float, ...]]] = {}
    try:
        for name, backend in backends.items():
            results[name]["load"] = timed(lambda: backend.prepare(models))  # noqa: B023
        for name, backend in backends.items():
            start = time.perf_counter()
            scored = list(backend.score(requests))
            results[name]["first"] = time.perf_counter() - start
            nlls[name] = {s.request.key: s.token_nlls for s in scored}
        warm: dict[str, list[float]] = {name: [] for name in backends}
        for _ in range(rounds):  # interleaved: a burst of load on this shared machine hits both
            for name, backend in backends.items():
                warm[name].append(timed(lambda: list(backend.score(requests))))  # noqa: B023
        for name in backends:
            results[name]["warm"] = min(warm[name])
        if show_breakdown:
            breakdown(backends["vllm"], requests, rounds)
    finally:
        for backend in backends.values():
            backend.close()
    tokens = sum(len(v) for v in nlls["hf"].values())
    diff = max(abs(a - b) for key, values in nlls["hf"].items()
               for a, b in zip(values, nlls["vllm"][key], strict=True))
    print(f"\n{len(requests)} texts ({len(models)} models x {len(examples)} examples), "
          f"{tokens} scored tokens; largest per-token NLL difference {diff:.2e}")
    for name, row in results.items():
        print(f"  {name:<5} load {row['load']:6.2f} s   first score {row['first']:6.3f} s   "
              f"warm score {row['warm']:6.3f} s")
    hf, vllm = results["hf"], results["vllm"]
    print(f"ratio vLLM/transformers: first score {vllm['first'] / hf['first']:.1f}x, "
          f"warm score {vllm['warm'] / hf['warm']:.1f}x, load + first score "
          f"{(vllm['load'] + vllm['first']) / (hf['load'] + hf['first']):.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kit", nargs="?", type=Path, default=Path("runs/.kit"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--breakdown", action="store_true",
                        help="also time raw LLM.generate variants (where the time goes)")
    arguments = parser.parse_args()
    main(arguments.kit, arguments.rounds, arguments.breakdown)
