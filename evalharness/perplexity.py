"""Perplexity from NLL sums: corpus token perplexity, per-example perplexity, bits per byte.

Three numbers, because they answer different questions:

- **token perplexity** ``exp(sum NLL / sum tokens)``: the corpus-level figure; every token
  weighs the same. This is ``exp(eval loss)`` when the loss is averaged over tokens.
- **mean per-example perplexity**: the average of each example's own perplexity; short
  examples weigh as much as long ones, and since ``exp`` is convex this mean is never below
  the corpus figure (Jensen). Averaging per-*batch* perplexities has the same effect, which is
  why a table can list eval loss 1.0017 beside perplexity 2.9456 when exp(1.0017) = 2.72.
- **bits per byte** ``sum NLL / (ln 2 * sum UTF-8 bytes)``: independent of the tokenizer, so
  models with different vocabularies compare.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from evalharness.errors import UserError
from evalharness.keys import content_key
from evalharness.rows import read_rows, text_id
from evalharness.schema import DataRef, Message, PerplexityRecord


@dataclass(frozen=True)
class EvalExample:
    """One example to score: ``text`` after ``context`` (a chat), or plain text."""

    id: str
    text: str
    context: tuple[Message, ...] | None


@dataclass(frozen=True)
class EvalData:
    """Validated perplexity data and its reference for the manifest."""

    ref: DataRef
    examples: tuple[EvalExample, ...]


@dataclass(frozen=True)
class PerplexitySummary:
    """Perplexity of one model over a data set."""

    model: str
    n_examples: int
    n_tokens: int
    n_bytes: int
    mean_nll: float
    """Mean NLL per token (nats): the SFT-style eval loss."""
    token_perplexity: float
    """exp(sum NLL / sum tokens)."""
    mean_example_perplexity: float
    """Mean over examples of exp(example NLL / example tokens)."""
    bits_per_byte: float
    """sum NLL / (ln 2 * sum bytes)."""


def summarize(model: str, records: Sequence[PerplexityRecord]) -> PerplexitySummary:
    """Corpus and per-example perplexity of ``records`` (one model's).

    Worked example: two examples with NLL sums 2.0 nats over 2 tokens and 6.0 over 3 tokens,
    4 and 8 bytes: token perplexity exp(8/5); per-example mean (e^1 + e^2)/2; bits per byte
    8 / (ln 2 * 12).

    >>> r = [PerplexityRecord(key="a", model="m", model_key="k", example_id="1", nll_sum=2.0,
    ...                       n_tokens=2, n_bytes=4),
    ...      PerplexityRecord(key="b", model="m", model_key="k", example_id="2", nll_sum=6.0,
    ...                       n_tokens=3, n_bytes=8)]
    >>> s = summarize("m", r)
    >>> round(s.token_perplexity, 4), round(s.mean_example_perplexity, 4)
    (4.953, 5.0537)
    >>> round(s.bits_per_byte, 4)
    0.9618
    """
    scored = [r for r in records if r.n_tokens > 0]
    if not scored:
        raise UserError(f"no scored tokens for model '{model}'. Fix: check the data's texts are "
                        "not empty.")
    nll = sum(r.nll_sum for r in scored)
    tokens = sum(r.n_tokens for r in scored)
    n_bytes = sum(r.n_bytes for r in scored)
    return PerplexitySummary(
        model=model,
        n_examples=len(scored),
        n_tokens=tokens,
        n_bytes=n_bytes,
        mean_nll=nll / tokens,
        token_perplexity=math.exp(nll / tokens),
        mean_example_perplexity=sum(math.exp(r.nll_sum / r.n_tokens) for r in scored)
        / len(scored),
        bits_per_byte=nll / (math.log(2) * n_bytes) if n_bytes else float("nan"),
    )


def load_eval_data(path: Path | str) -> EvalData:
    """Read perplexity data: ``{"id", "text"}`` rows, or ``{"id", "prompt"|"messages",
    "response"}`` rows (only the response is scored). ``id`` defaults to the row number.

    Raises:
        UserError: every invalid row, with its location and the fix.
    """
    from evalharness.prompts import parse_messages_field

    path = Path(path)
    rows = read_rows(path, "perplexity data")
    examples: list[EvalExample] = []
    problems: list[str] = []
    seen: set[str] = set()
    for index, row in enumerate(rows):
        fields = row.fields
        try:
            example_id = text_id(fields.get("id", index))
        except ValueError as exc:
            problems.append(f"{row.where}: {exc}")
            continue
        if example_id in seen:
            problems.append(f"{row.where}: duplicate id '{example_id}'")
            continue
        seen.add(example_id)
        try:
            if "text" in fields:
                text, context = _text_field(fields, "text"), None
            elif "response" in fields:
                text = _text_field(fields, "response")
                context = parse_messages_field(fields, example_id)
            else:
                raise ValueError("needs 'text', or 'prompt'/'messages' with 'response'")
        except ValueError as exc:
            problems.append(f"{row.where}: {exc}")
            continue
        if not text.strip():
            problems.append(f"{row.where}: empty text to score")
            continue
        examples.append(EvalExample(example_id, text, context))
    if not rows:
        problems.append(f"{path}: no examples")
    if problems:
        raise UserError(
            f"invalid perplexity data {path} ({len(problems)} problem(s)):\n  "
            + "\n  ".join(problems[:20])
            + "\nFix: each row needs 'text' (plain text, all tokens scored) or "
            "'prompt'/'messages' plus 'response' (only the response is scored)."
        )
    digest = content_key([[e.id, e.text, [m.model_dump() for m in e.context or ()]]
                          for e in examples])
    return EvalData(DataRef(name=path.stem, source=str(path), sha256=digest, n=len(examples)),
                    tuple(examples))


def _text_field(fields: dict[str, object], name: str) -> str:
    # str() of a number or a list would score text nobody wrote.
    value = fields[name]
    if not isinstance(value, str):
        raise ValueError(f"'{name}' must be text, got {type(value).__name__}")
    return value


SCORING = "rolling-windows-v1"
"""How texts are scored, in every perplexity key: records made before texts longer than the
context were scored in rolling windows (one pass past the context, up to 4.7% off) carry no
such mark, so they are recomputed once instead of being reused."""


def record_key(model_key: str, example: EvalExample, engine: str) -> str:
    """Content key of a perplexity record: the model, the engine, the scoring method
    (``SCORING``), and exactly what is scored."""
    return content_key({
        "scoring": SCORING,
        "engine": engine,
        "model": model_key,
        "text": example.text,
        "context": [m.model_dump() for m in example.context] if example.context else None,
    })


def window_summary(records: Sequence[PerplexityRecord]) -> dict[str, int] | None:
    """What the manifest says of rolling windows: the window (= stride) and how many texts
    needed it; ``None`` when every text fit the context.

    >>> window_summary([])
    """
    windowed = [r.window for r in records if r.window is not None]
    if not windowed:
        return None
    return {"window": max(windowed), "stride": max(windowed), "texts": len(windowed)}
