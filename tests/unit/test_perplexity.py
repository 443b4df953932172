"""Perplexity arithmetic and evaluation-data validation."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from evalharness.errors import UserError
from evalharness.perplexity import load_eval_data, summarize
from evalharness.schema import PerplexityRecord
from tests.helpers import write_jsonl


def _record(example: str, nll: float, tokens: int, n_bytes: int) -> PerplexityRecord:
    return PerplexityRecord(key=example, model="m", model_key="k", example_id=example,
                            nll_sum=nll, n_tokens=tokens, n_bytes=n_bytes)


def test_bits_per_byte_hand_example() -> None:
    """Text "abcd" (4 bytes) in 2 tokens, each with probability 1/16.

    NLL = 2 * ln 16 nats = 8 bits, over 4 bytes -> 2.0 bits per byte; token perplexity 16.
    """
    summary = summarize("m", [_record("e", 2 * math.log(16), 2, 4)])
    assert summary.bits_per_byte == pytest.approx(2.0, rel=1e-12)
    assert summary.token_perplexity == pytest.approx(16.0, rel=1e-12)


def test_corpus_and_mean_example_perplexity_differ_as_jensen_says() -> None:
    """Losses 0.5 nats/token on a 90-token example and 3.0 on a 10-token one.

    Corpus: exp((45 + 30) / 100) = exp(0.75) = 2.117; per-example mean:
    (exp(0.5) + exp(3.0)) / 2 = 10.867. exp of the mean loss (1.75) = 5.755 is a third figure:
    none of them is wrong, they weigh tokens and examples differently.
    """
    summary = summarize("m", [_record("a", 45.0, 90, 400), _record("b", 30.0, 10, 40)])
    assert summary.token_perplexity == pytest.approx(math.exp(0.75))
    assert summary.mean_example_perplexity == pytest.approx((math.exp(0.5) + math.exp(3)) / 2)
    assert summary.mean_example_perplexity > summary.token_perplexity


def test_eval_data_forms(tmp_path: Path) -> None:
    data = load_eval_data(write_jsonl(tmp_path / "d.jsonl", [
        {"id": "t", "text": "Plain text."},
        {"id": "p", "prompt": "Q?", "response": "A."},
        {"messages": [{"role": "user", "content": "Q?"}], "response": "B."},
    ]))
    plain, pair, chat = data.examples
    assert plain.context is None and pair.context is not None and chat.id == "2"
    assert data.ref.n == 3 and len(data.ref.sha256) == 64


def test_eval_data_problems_are_listed_with_lines(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [
        {"id": "a", "text": "fine"},
        {"id": "a", "text": "duplicate"},
        {"id": "b", "prompt": "Q?"},
        {"id": "c", "text": "  "},
    ])
    with pytest.raises(UserError) as caught:
        load_eval_data(path)
    message = str(caught.value)
    assert "d.jsonl:2: duplicate id 'a'" in message
    assert "d.jsonl:3: needs 'text', or 'prompt'/'messages' with 'response'" in message
    assert "d.jsonl:4: empty text to score" in message
