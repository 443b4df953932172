"""Bad input: exit code 2, a message naming the problem, where, and the fix; no traceback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.helpers import write_jsonl


def _break(case: str, kit, tmp: Path) -> list[str]:  # type: ignore[no-untyped-def]
    """Set up one bad input; return the command line that must fail."""
    adapters = tmp / "adapters"
    shutil.copytree(kit.root / "adapters", adapters)
    good_prompts = write_jsonl(tmp / "ok.jsonl", [{"id": "a", "prompt": "Hi?"}])
    adapter = adapters / "qv-r8"
    config = adapter / "adapter_config.json"

    def edit(**changes: object) -> None:
        config.write_text(json.dumps({**json.loads(config.read_text()), **changes}))

    generate = ["generate", str(adapter), "--prompts", str(good_prompts)]
    if case == "missing prompt file":
        return ["generate", str(adapter), "--prompts", str(tmp / "nope.jsonl")]
    if case == "malformed prompt line":
        (tmp / "bad.jsonl").write_text('{"id": "a", "prompt": "x"}\n{"id": "b", "prompt": \n')
        return ["generate", str(adapter), "--prompts", str(tmp / "bad.jsonl")]
    if case == "duplicate prompt id":
        write_jsonl(tmp / "dup.jsonl", [{"id": "a", "prompt": "x"}, {"id": "a", "prompt": "y"}])
        return ["generate", str(adapter), "--prompts", str(tmp / "dup.jsonl")]
    if case == "unknown backend":
        return [*generate, "--backend", "tensorrt"]
    if case == "missing adapter folder":
        return ["generate", str(tmp / "no-such-adapter"), "--prompts", str(good_prompts)]
    if case == "unreadable adapter config":
        config.write_text("{oops")
        return generate
    if case == "adapter weights missing":
        (adapter / "adapter_model.safetensors").unlink()
        return generate
    if case == "adapter for another base model":
        edit(target_modules=["c_attn"])
        return generate
    if case == "base model not on this machine":
        edit(base_model_name_or_path="/models/llama-3.2-3b-instruct")
        return generate
    if case == "baseline without a base":
        return ["generate", "baseline", "--prompts", str(good_prompts)]
    if case == "adapters on different bases":
        other = tmp / "base2"
        shutil.copytree(kit.base, other)
        cfg2 = adapters / "all-r16" / "adapter_config.json"
        cfg2.write_text(json.dumps({**json.loads(cfg2.read_text()),
                                    "base_model_name_or_path": str(other)}))
        return ["generate", str(adapter), str(adapters / "all-r16"), "--prompts",
                str(good_prompts)]
    if case == "perplexity data without response":
        write_jsonl(tmp / "eval.jsonl", [{"id": "a", "prompt": "Q?"}])
        return ["ppl", str(adapter), "--data", str(tmp / "eval.jsonl")]
    if case == "show a folder that is not a run":
        return ["show", str(tmp)]
    if case == "unknown option":
        return [*generate, "--temprature", "0.7"]
    if case == "negative max tokens":
        return [*generate, "--max-new-tokens", "0"]
    raise AssertionError(case)


CASES = {
    "missing prompt file": ("nope.jsonl: prompt set not found", "Fix: check the path"),
    "malformed prompt line": ("bad.jsonl:2: not valid JSON", "Fix: each line"),
    "duplicate prompt id": ("dup.jsonl:2: duplicate id 'a'", "Fix:"),
    "unknown backend": ("unknown backend 'tensorrt'", "Fix: use one of hf"),
    "missing adapter folder": ("no-such-adapter: no such adapter or model folder", "Fix:"),
    "unreadable adapter config": ("adapter_config.json: unreadable adapter config", "Fix:"),
    "adapter weights missing": ("no adapter weights", "Fix: copy the weights file"),
    "adapter for another base model": ("c_attn do not exist in base model", "Fix: pass the base"),
    "base model not on this machine": ("/models/llama-3.2-3b-instruct", "Fix: pass --base"),
    "baseline without a base": ("'baseline' needs a base model", "Fix: pass --base"),
    "adapters on different bases": ("trained on different base models", "Fix:"),
    "perplexity data without response": ("eval.jsonl:1: needs 'text'", "Fix:"),
    "show a folder that is not a run": ("not a run directory", "Fix:"),
    "unknown option": ("No such option", "--temprature"),
    "negative max tokens": ("--max-new-tokens 0: must be at least 1", "Fix: pass at least 1"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_exits_2_with_a_clear_message(case: str, cli, kit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli(*_break(case, kit, tmp_path))
    assert result.code == 2, result.text
    problem, fix = CASES[case]
    flat = " ".join(result.text.split())  # rich may wrap long paths
    assert problem in flat and fix in flat
    assert "Traceback" not in result.text


def test_bad_input_leaves_earlier_results_untouched(cli, kit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"id": "a", "prompt": "Where is Redmoor?"}])
    ok = cli("generate", kit.adapter("qv-r8"), "--prompts", prompts, "--max-new-tokens", "8")
    assert ok.code == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    before = (run_dir / "answers.jsonl").read_bytes()
    prompts.write_text('{"id": "a", "prompt": "Where is Redmoor?"}\n{broken\n')
    failed = cli("generate", kit.adapter("qv-r8"), "--prompts", prompts, "--run-dir", run_dir)
    assert failed.code == 2
    assert (run_dir / "answers.jsonl").read_bytes() == before


def test_long_prompt_truncated_on_request_is_answered_and_reported(cli, kit,  # type: ignore[no-untyped-def]
                                                                    tmp_path: Path) -> None:
    prompts = write_jsonl(tmp_path / "p.jsonl", [
        {"id": "short", "prompt": "Where is Redmoor?"},
        {"id": "huge", "prompt": "Where is Redmoor College? " * 8000}])
    result = cli("generate", kit.adapter("qv-r8"), "--prompts", prompts, "--max-new-tokens", "8",
                 "--on-long-prompt", "truncate")
    assert result.code == 0, result.text
    flat = " ".join(result.text.split())
    assert "warning: 1 prompt(s) longer than the model's context of 256 tokens were truncated " \
           "to their last 248 tokens (--on-long-prompt truncate): 'huge'" in flat
    (run_dir,) = (tmp_path / "runs").iterdir()
    answers = [json.loads(line) for line in (run_dir / "answers.jsonl").read_text().splitlines()]
    assert sorted(a["prompt_id"] for a in answers) == ["huge", "short"]
    assert json.loads((run_dir / "manifest.json").read_text())["gen"]["on_long_prompt"] \
        == "truncate"


def test_the_default_long_prompt_policy_leaves_answer_keys_as_they_were() -> None:
    from evalharness.schema import GenConfig

    # Answers made before --on-long-prompt existed must keep their keys: the default is not
    # written, any other policy is.
    assert GenConfig().model_dump(mode="json") == {
        "max_new_tokens": 256, "temperature": 0.0, "top_p": 1.0, "seed": 0, "stop": []}
    assert GenConfig(on_long_prompt="truncate").model_dump()["on_long_prompt"] == "truncate"
    assert GenConfig.model_validate_json(GenConfig().model_dump_json()) == GenConfig()
