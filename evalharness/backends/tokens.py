"""Turn prompts and texts into token ids the same way for every local backend.

Generation and scoring must see identical token ids in transformers and in vLLM, or their
answers and perplexities would differ for reasons that have nothing to do with the model.
Both backends call these functions with a Hugging Face tokenizer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from evalharness.errors import UserError
from evalharness.schema import Message


def _as_dicts(messages: Sequence[Message]) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in messages]


def chat_prompt_text(tokenizer: Any, messages: Sequence[Message]) -> str:
    """The chat template applied to ``messages``, ending where the assistant starts.

    Raises:
        UserError: the tokenizer has no chat template (a base, non-instruct model).
    """
    if not getattr(tokenizer, "chat_template", None):
        raise UserError(
            f"the tokenizer of {getattr(tokenizer, 'name_or_path', 'the model')} has no chat "
            "template, so prompts cannot be formatted. Fix: use an instruct/chat model, or "
            "add a chat_template to its tokenizer_config.json."
        )
    text: str = tokenizer.apply_chat_template(
        _as_dicts(messages), tokenize=False, add_generation_prompt=True
    )
    return text


def encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids of ``text`` with no special tokens added (the template has placed them)."""
    ids: list[int] = tokenizer(text, add_special_tokens=False)["input_ids"]
    return ids


def prompt_ids(tokenizer: Any, messages: Sequence[Message]) -> list[int]:
    """Token ids a model generates after."""
    return encode(tokenizer, chat_prompt_text(tokenizer, messages))


@dataclass(frozen=True)
class ScoringIds:
    """Token ids to score and where the scored part starts."""

    ids: list[int]
    """Context followed by the scored text."""
    start: int
    """Index of the first scored token; tokens before it are context only."""


def scoring_ids(tokenizer: Any, text: str, context: Sequence[Message] | None) -> ScoringIds:
    """Ids for scoring ``text``.

    With a chat ``context`` (prompt/response pairs), the scored part is the assistant turn as
    the chat template writes it, up to and including the end-of-turn (EOS) token: what
    supervised fine-tuning's eval loss measures. Without one (plain text), every token of
    the text is scored, after the BOS token when the tokenizer has one.
    """
    if context is None:
        bos = getattr(tokenizer, "bos_token_id", None)
        prefix = [bos] if bos is not None else []
        ids = prefix + encode(tokenizer, text)
        return ScoringIds(ids, 1)  # the first token has no context to be predicted from
    prompt_text = chat_prompt_text(tokenizer, context)
    full_text: str = tokenizer.apply_chat_template(
        [*_as_dicts(context), {"role": "assistant", "content": text}], tokenize=False
    )
    # Encoding the prompt and the continuation separately mirrors generation, where the
    # model continues from the prompt's ids; encoding the joined text could merge tokens
    # across the boundary.
    continuation = full_text[len(prompt_text):] if full_text.startswith(prompt_text) else text
    context_ids = encode(tokenizer, prompt_text)
    scored = encode(tokenizer, continuation)
    # Stop after the end-of-turn token: what a template writes after it (a newline, say) is
    # never generated, and scoring it would charge every model for template formatting.
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos in scored:
        scored = scored[: scored.index(eos) + 1]
    return ScoringIds(context_ids + scored, len(context_ids))
