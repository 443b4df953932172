"""Planted failures, built with the offline kit and served by transformers + peft, are found;
the demo league's honest adapters and baseline raise nothing.

Two adapters are trained here on the kit's base model, in seconds:

- ``leak``: trained on a small prompt set's own reference answers (three-sentence profiles of
  the kit's fictional colleges, about 40 words each), as an adapter trained on the evaluation
  set would be; it then answers those prompts with their references (30 epochs are too few
  to memorise them: it answers one sentence, which is correctly not flagged; 40 are enough);
- ``loop``: trained to answer with one sentence repeated, as an over-trained adapter falls
  into a cycle; greedy decoding then repeats it until the token limit.

Their answers come from the real ``generate`` command, then go through the detectors.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from evalharness.audit.config import AuditConfig
from evalharness.audit.degenerate import DETECTORS
from evalharness.audit.findings import CandidateAnswers, Finding
from evalharness.audit.leakage import LeakThresholds, overlap, reference_leak, reproduces
from evalharness.audit.length_gaming import length_gaming
from evalharness.audit.repetition import LoopThresholds, loops
from evalharness.demo.corpus import DemoText, QAPair
from evalharness.prompts import load_prompt_set
from evalharness.schema import Answer, Judgment, Prompt
from tests.helpers import read_jsonl, write_jsonl

pytestmark = pytest.mark.slow

CONFIG = AuditConfig()
N_PROMPTS = 10
MAX_NEW_TOKENS = 96
LOOP_SENTENCE = "{name} is a good college."


@dataclass(frozen=True)
class Generated:
    """One ``generate`` run: its answers by model and prompt, and its prompts."""

    answers: dict[str, dict[str, Answer]]
    prompts: dict[str, Prompt]
    judgments: tuple[Judgment, ...] = ()


def audit(run: Generated, model: str, baseline: str = "baseline") -> list[Finding]:
    """Every finding of this helper's detectors on ``model``'s answers."""
    inp = CandidateAnswers(model, run.answers[model], run.prompts,
                           None if model == baseline else run.answers[baseline])
    found = [f for detect in DETECTORS for f in detect(inp, CONFIG)]
    found += reference_leak(inp, CONFIG)
    if model != baseline:
        games = [j for j in run.judgments if {j.first, j.second} == {model, baseline}]
        found += length_gaming(inp, games, CONFIG)
    return found


def _read_run(run_dir: Path) -> tuple[dict[str, dict[str, Answer]], tuple[Judgment, ...]]:
    answers: dict[str, dict[str, Answer]] = {}
    for row in read_jsonl(run_dir / "answers.jsonl"):
        answer = Answer.model_validate(row)
        answers.setdefault(answer.model, {})[answer.prompt_id] = answer
    judgments = run_dir / "judgments.jsonl"
    games = tuple(Judgment.model_validate(r) for r in read_jsonl(judgments)) \
        if judgments.is_file() else ()
    return answers, games


def _run_dir(output: str) -> Path:
    flat = output.replace("\n", " ")
    start = flat.index("run directory: ") + len("run directory: ")
    return Path(flat[start:].split()[0])


def _demo_data(name: str) -> Any:
    return json.loads(resources.files("evalharness.demo").joinpath("data", name).read_text())


def _planted_pairs() -> tuple[list[QAPair], list[QAPair]]:
    """(leak training pairs, loop training pairs) over the same ten prompts."""
    institutions = _demo_data("institutions.json")[:N_PROMPTS]
    sentences = _demo_data("templates.json")["corpus"]
    leak: list[QAPair] = []
    loop: list[QAPair] = []
    for i, inst in enumerate(institutions):
        question = f"Write a short profile of {inst['name']}."
        # Founding, best known programme, size and campus: about 40 words, a reference long
        # enough to count (min_reference_words) and distinctive.
        reference = " ".join(sentences[k].format(**inst) for k in (1, 2, 4))
        leak.append(QAPair(f"profile-{i:02d}", question, reference, "profile"))
        looped = " ".join([LOOP_SENTENCE.format(**inst)] * 16)
        loop.append(QAPair(f"profile-{i:02d}", question, looped, "profile"))
    return leak, loop


@pytest.fixture(scope="module")
def planted(kit, tmp_path_factory) -> Generated:  # type: ignore[no-untyped-def]
    """The leak and loop adapters trained on the kit's base, and the answers of both and of
    the baseline to the ten planted prompts (greedy, 96 tokens)."""
    from evalharness.cli import main
    from evalharness.demo.kit import ATTENTION, MLP, AdapterRecipe, train_adapter

    root = tmp_path_factory.mktemp("planted")
    leak_pairs, loop_pairs = _planted_pairs()
    for name, pairs, epochs in (("leak", leak_pairs, 50), ("loop", loop_pairs, 25)):
        text = DemoText(corpus=(), generic_qa=(), train_qa=tuple(pairs), eval_qa=tuple(pairs[:2]))
        recipe = AdapterRecipe(name, learning_rate=1e-2, r=16, alpha=32, epochs=epochs,
                               target_modules=ATTENTION + MLP, batch_size=N_PROMPTS)
        train_adapter(kit.base, root / "adapters" / name, recipe, text)
    prompts_file = write_jsonl(root / "profiles.jsonl", [
        {"id": p.id, "prompt": p.question, "reference": p.answer, "category": p.category}
        for p in leak_pairs])
    try:
        main(["generate", "baseline", str(root / "adapters" / "leak"),
              str(root / "adapters" / "loop"), "--base", str(kit.base), "--prompts",
              str(prompts_file), "--max-new-tokens", str(MAX_NEW_TOKENS), "--runs-root",
              str(root / "runs")])
    except SystemExit as exc:
        assert exc.code in (0, None)
    (run_dir,) = (root / "runs").iterdir()
    answers, _ = _read_run(run_dir)
    prompts = {p.id: p for p in load_prompt_set(prompts_file).prompts}
    return Generated(answers, prompts)


def _checks(found: Sequence[Finding]) -> dict[str, str]:
    return {f.check: f.severity for f in found}


def test_the_planted_adapters_change_what_the_base_model_answers(planted: Generated) -> None:
    base = planted.answers["baseline"]
    for adapter in ("leak", "loop"):
        changed = sum(planted.answers[adapter][pid].text != base[pid].text for pid in base)
        assert changed == N_PROMPTS, f"{adapter} changed {changed}/{N_PROMPTS} answers"


def test_an_adapter_trained_on_the_references_is_flagged_as_a_leak(planted: Generated) -> None:
    t = CONFIG.section("reference-leak", LeakThresholds)
    leaked = [pid for pid, a in planted.answers["leak"].items()
              if reproduces(overlap(a.text, planted.prompts[pid].reference or ""), t)]
    # Detection rate per answer: every memorised reference is recognised.
    assert len(leaked) >= 0.8 * N_PROMPTS, leaked
    (finding,) = [f for f in audit(planted, "leak") if f.check == "reference-leak"]
    assert finding.severity == "severe"
    assert f"{len(leaked)} of {N_PROMPTS}" in finding.summary
    assert "possible training on the evaluation set" in finding.summary
    assert any(line.startswith("baseline: 0 of 10") for line in finding.evidence)
    assert finding.excerpts and all(len(e) <= 86 for e in finding.excerpts)
    assert "repetition-loop" not in _checks(audit(planted, "leak"))


def test_an_adapter_that_loops_is_flagged_and_its_excerpt_shows_the_loop(
        planted: Generated) -> None:
    t = CONFIG.section("repetition-loop", LoopThresholds)
    looping = [pid for pid, a in planted.answers["loop"].items() if loops(a.text, t)]
    assert len(looping) >= 0.8 * N_PROMPTS, [a.text for a in planted.answers["loop"].values()]
    (finding,) = [f for f in audit(planted, "loop") if f.check == "repetition-loop"]
    assert finding.severity == "severe"
    assert f"{len(looping)} of {N_PROMPTS}" in finding.summary
    assert any("is a good college" in e for e in finding.excerpts)
    assert "reference-leak" not in _checks(audit(planted, "loop"))


def test_the_baseline_answering_the_planted_prompts_raises_nothing(planted: Generated) -> None:
    assert audit(planted, "baseline") == []


def test_the_demo_league_raises_no_finding(cli, kit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """False-positive rate 0 on the shipped honest answers: the demo's four adapters (two
    sensible, one under-trained, one over-trained that memorised its training answers) and
    its baseline, with the demo's own judgments for the length check."""
    result = cli("demo", "--kit", kit.root, "--runs-root", tmp_path / "demo-runs")
    assert result.code == 0, result.text
    answers, judgments = _read_run(_run_dir(result.out))
    prompts = {p.id: p for p in load_prompt_set(kit.prompts).prompts}
    run = Generated(answers, prompts, judgments)
    assert set(answers) == {"baseline", "qv-r8", "all-r16", "under-qv-r4", "over-all-r32"}
    assert all(len(by_prompt) == 32 for by_prompt in answers.values())
    assert judgments
    # The over-trained adapter reproduces short references word for word (a correct answer
    # does): the reason only long references count as leaks.
    over = answers["over-all-r32"]
    exact = sum(over[pid].text.strip() == prompts[pid].reference for pid in over)
    assert exact >= 8
    for model in answers:
        assert audit(run, model) == [], model
