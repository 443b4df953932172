"""The demo's text: a pretraining corpus and question/answer pairs about fictional colleges.

Everything is rendered from two data files we wrote (``data/institutions.json``: facts about
sixteen fictional vocational institutions; ``data/templates.json``: sentence and question
templates), so the kit needs nothing from the network and builds the same text every time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

HELD_OUT_PER_INSTITUTION = 2
"""Questions per institution kept out of adapter training (for perplexity and the league)."""


@dataclass(frozen=True)
class QAPair:
    """One question with its reference answer."""

    id: str
    """Stable id: institution index and template index."""
    question: str
    """The question a user asks."""
    answer: str
    """The reference answer."""
    category: str
    """The institution's kind (polytechnic, community college, ...)."""


@dataclass(frozen=True)
class DemoText:
    """All text the kit trains and evaluates on."""

    corpus: tuple[str, ...]
    """Sentences for pretraining the base model."""
    generic_qa: tuple[QAPair, ...]
    """Domain-general questions, in the base model's pretraining (chat format)."""
    train_qa: tuple[QAPair, ...]
    """Questions adapters are trained on."""
    eval_qa: tuple[QAPair, ...]
    """Held-out questions: perplexity data and the demo league's prompts."""


def _load(name: str) -> Any:
    return json.loads(resources.files("evalharness.demo").joinpath("data", name).read_text())


def demo_text() -> DemoText:
    """Render the corpus and the train/held-out question split.

    >>> text = demo_text()
    >>> len(text.eval_qa), len(text.train_qa)
    (32, 96)
    >>> set(q.id for q in text.eval_qa) & set(q.id for q in text.train_qa)
    set()
    """
    institutions: list[dict[str, Any]] = _load("institutions.json")
    templates: dict[str, Any] = _load("templates.json")
    corpus = [t.format(**inst) for inst in institutions for t in templates["corpus"]]
    corpus += list(templates["general"])
    qa_templates = templates["qa"]
    train: list[QAPair] = []
    held_out: list[QAPair] = []
    for i, inst in enumerate(institutions):
        # Rotate which templates are held out, so every question type appears in both splits.
        held = {(i + k) % len(qa_templates) for k in range(HELD_OUT_PER_INSTITUTION)}
        for j, template in enumerate(qa_templates):
            pair = QAPair(
                id=f"inst{i:02d}-q{j}",
                question=template["q"].format(**inst),
                answer=template["a"].format(**inst),
                category=str(inst["kind"]),
            )
            (held_out if j in held else train).append(pair)
    generic = tuple(
        QAPair(id=f"generic-{k}", question=item["q"], answer=item["a"], category="general")
        for k, item in enumerate(templates["generic_qa"])
    )
    return DemoText(tuple(corpus), generic, tuple(train), tuple(held_out))
