"""Run by test_vllm_backend.py in a subprocess (vLLM spawns workers: needs a main guard).

Serves the kit's baseline and adapters with our VLLMBackend and our HFBackend on the same
requests and prints ``RESULT {json}``: how many greedy answers are identical, and the largest
per-token NLL difference on the held-out data.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(kit_root: str) -> None:
    from evalharness.backends.base import GenRequest, ScoreRequest
    from evalharness.backends.hf import HFBackend
    from evalharness.backends.vllm_engine import VLLMBackend
    from evalharness.candidates import resolve_models
    from evalharness.perplexity import load_eval_data
    from evalharness.prompts import load_prompt_set
    from evalharness.schema import GenConfig

    kit = Path(kit_root)
    models = resolve_models(["baseline", str(kit / "adapters" / "qv-r8"),
                             str(kit / "adapters" / "all-r16")])
    gen = GenConfig(max_new_tokens=48)
    prompts = load_prompt_set(kit / "data" / "prompts.jsonl").prompts
    examples = load_eval_data(kit / "data" / "eval.jsonl").examples
    generate = [GenRequest(m, p, f"{m.key}-{p.id}") for m in models for p in prompts]
    score = [ScoreRequest(m, e.id, e.text, e.context, f"{m.key}-{e.id}") for m in models
             for e in examples]
    answers: dict[str, dict[str, str]] = {}
    nlls: dict[str, dict[str, tuple[float, ...]]] = {}
    for backend in (VLLMBackend(), HFBackend()):
        backend.prepare(models)
        answers[backend.name] = {f"{g.request.model.name}/{g.request.prompt.id}": g.text
                                 for g in backend.generate(generate, gen)}
        nlls[backend.name] = {f"{s.request.model.name}/{s.request.example_id}": s.token_nlls
                              for s in backend.score(score)}
        backend.close()
    same = {name: sum(answers["vllm"][k] == answers["hf"][k] for k in answers["hf"]
                      if k.startswith(name + "/")) for name in (m.name for m in models)}
    lengths_equal = all(len(nlls["vllm"][k]) == len(nlls["hf"][k]) for k in nlls["hf"])
    max_diff = max(abs(a - b) for k in nlls["hf"]
                   for a, b in zip(nlls["vllm"][k], nlls["hf"][k], strict=True))
    differs = {name: sum(answers["vllm"][f"{name}/{p.id}"] != answers["vllm"][f"baseline/{p.id}"]
                         for p in prompts) for name in ("qv-r8", "all-r16")}
    print("RESULT " + json.dumps({"same": same, "per_model": len(prompts),
                                  "lengths_equal": lengths_equal, "max_nll_diff": max_diff,
                                  "adapter_differs_from_baseline": differs}))


if __name__ == "__main__":
    main(sys.argv[1])
