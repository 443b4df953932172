"""`generate` and `ppl` through the CLI with real transformers + peft on the tiny kit."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.helpers import read_jsonl, write_jsonl

MODELS = ("baseline", "qv-r8", "all-r16")


def _models(kit) -> list[str]:  # type: ignore[no-untyped-def]
    return ["baseline", str(kit.adapter("qv-r8")), str(kit.adapter("all-r16"))]


def _answers(run_dir: Path) -> dict[tuple[str, str], str]:
    return {(str(r["model"]), str(r["prompt_id"])): str(r["text"])
            for r in read_jsonl(run_dir / "answers.jsonl")}


def _run_dir(output: str) -> Path:
    line = next(x for x in output.splitlines() if x.startswith("run directory: "))
    return Path(line.removeprefix("run directory: ").strip())


@pytest.fixture(scope="module")
def generated(kit, tmp_path_factory):  # type: ignore[no-untyped-def]
    """One greedy generation run over the kit's 32 held-out prompts, shared by tests below."""
    import os

    from evalharness.cli import main

    root = tmp_path_factory.mktemp("gen")
    os.chdir(root)
    try:
        main(["generate", *_models(kit), "--prompts", str(kit.prompts),
              "--max-new-tokens", "40"])
    except SystemExit as exc:
        assert exc.code in (0, None)
    (run_dir,) = (root / "runs").iterdir()
    return run_dir


def test_every_model_answers_every_prompt_and_adapters_change_answers(generated: Path) -> None:
    answers = _answers(generated)
    prompts = {p for _, p in answers}
    assert len(prompts) == 32 and len(answers) == 96
    for adapter in ("qv-r8", "all-r16"):
        differing = sum(answers[(adapter, p)] != answers[("baseline", p)] for p in prompts)
        assert differing >= 28, f"{adapter} changed only {differing}/32 answers"
    assert all(text.strip() for text in answers.values())


def test_rerun_generates_nothing(cli, kit, generated: Path) -> None:  # type: ignore[no-untyped-def]
    lines_before = (generated / "answers.jsonl").read_text()
    result = cli("generate", *_models(kit), "--prompts", kit.prompts, "--max-new-tokens", "40",
                 "--run-dir", generated)
    assert result.code == 0, result.text
    assert "0 computed now" in result.out and "96 already in the run" in result.out
    assert (generated / "answers.jsonl").read_text() == lines_before


def test_greedy_answers_are_identical_when_regenerated_from_scratch(cli, kit, generated: Path,  # type: ignore[no-untyped-def]
                                                                   tmp_path: Path) -> None:
    fresh_root = tmp_path / "elsewhere"  # no other runs to reuse: everything is generated anew
    result = cli("generate", "baseline", kit.adapter("all-r16"), "--prompts", kit.prompts,
                 "--max-new-tokens", "40", "--runs-root", fresh_root)
    assert result.code == 0, result.text
    assert "64 computed now" in result.out
    again = _answers(_run_dir(result.out))
    first = _answers(generated)
    assert all(first[key] == text for key, text in again.items())


def test_sampling_is_reproducible_by_seed(cli, kit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"id": f"q{i}", "prompt": q} for i, q in
                                                 enumerate(["Where is Redmoor Community College?",
                                                            "What is an apprenticeship?"])])
    texts = []
    for seed, root in ((1, "r1"), (1, "r2"), (2, "r3")):
        result = cli("generate", kit.adapter("qv-r8"), "--prompts", prompts, "--temperature",
                     "1.5", "--seed", str(seed), "--max-new-tokens", "24", "--runs-root", root)
        assert result.code == 0, result.text
        texts.append(_answers(_run_dir(result.out)))
    assert texts[0] == texts[1]
    assert texts[0] != texts[2]


def test_show_and_runs_list_what_is_on_disk(cli, generated: Path) -> None:  # type: ignore[no-untyped-def]
    shown = cli("show", generated, "--limit", "2")
    assert shown.code == 0, shown.text
    assert "status: complete" in shown.out
    assert "answers: baseline 32, qv-r8 32, all-r16 32" in shown.out
    listed = cli("runs", "--runs-root", generated.parent)
    assert generated.name[:12] in listed.out and "complete" in listed.out


def test_ppl_equals_a_plain_transformers_forward_with_labels(cli, kit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rows = [
        {"id": "pair", "prompt": "Where is Harbourview Polytechnic?",
         "response": "Harbourview Polytechnic is a polytechnic in Port Amsel."},
        {"id": "pair2", "prompt": "What is special about Oakhurst Technical College?",
         "response": "Students build a house every year."},
        {"id": "plain", "text": "Larchfield Polytechnic was founded in 1955."},
    ]
    data = write_jsonl(tmp_path / "eval.jsonl", rows)
    result = cli("ppl", "baseline", kit.adapter("all-r16"), "--data", data, "--batch-size", "2")
    assert result.code == 0, result.text
    records = {(r["model"], r["example_id"]): r for r in
               read_jsonl(_run_dir(result.out) / "perplexity.jsonl")}

    tokenizer = AutoTokenizer.from_pretrained(str(kit.base))
    base = AutoModelForCausalLM.from_pretrained(str(kit.base), dtype=torch.float32).eval()
    adapted = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(str(kit.base), dtype=torch.float32),
        str(kit.adapter("all-r16"))).eval()

    def independent(model, row) -> tuple[float, int]:  # type: ignore[no-untyped-def]
        if "text" in row:
            ids = [tokenizer.bos_token_id, *tokenizer(row["text"], add_special_tokens=False)
                   ["input_ids"]]
            labels = list(ids)
        else:
            prompt = tokenizer.apply_chat_template([{"role": "user", "content": row["prompt"]}],
                                                   tokenize=False, add_generation_prompt=True)
            context = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            answer = tokenizer(row["response"] + tokenizer.eos_token,
                               add_special_tokens=False)["input_ids"]
            ids, labels = context + answer, [-100] * len(context) + answer
        with torch.no_grad():
            loss = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss
        scored = sum(1 for label in labels[1:] if label != -100)
        return float(loss) * scored, scored

    for name, model in (("baseline", base), ("all-r16", adapted)):
        for row in rows:
            nll, tokens = independent(model, row)
            record = records[(name, row["id"])]
            assert record["n_tokens"] == tokens
            assert math.isclose(float(record["nll_sum"]), nll, rel_tol=1e-5), (name, row["id"])
    assert records[("all-r16", "pair")]["nll_sum"] < records[("baseline", "pair")]["nll_sum"]
    assert "bits/byte" in result.out and "all-r16" in result.out
