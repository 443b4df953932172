"""Turn prompts and texts into token ids the same way for every local backend.

Generation and scoring must see identical token ids in transformers and in vLLM, or their
answers and perplexities would differ for reasons that have nothing to do with the model.
Both backends call these functions with a Hugging Face tokenizer.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from evalharness.errors import UserError
from evalharness.schema import GenConfig, Message, Prompt


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


@dataclass(frozen=True)
class ScoringWindow:
    """One forward pass of a windowed score: the model reads ``ids[:-1]`` and predicts each
    of ``ids[1:]``; the predictions of ``ids[first_scored:]`` are the ones counted."""

    ids: list[int]
    first_scored: int
    """Index in ``ids`` of the first token whose NLL counts (at least 1)."""


def scoring_windows(ids: Sequence[int], start: int, context: int | None) -> list[ScoringWindow]:
    """Split scoring ``ids`` (scored from ``start``) into passes the model can read.

    ``context`` is the number of tokens one pass may read (``None``: unknown, no limit). When
    every prediction fits in one pass (``len(ids) - 1 <= context``) there is exactly one
    window, ``ids`` itself: within the context nothing changes. Past it, the windows are
    lm-eval's ``loglikelihood_rolling`` ones (``get_rolling_token_windows`` with
    ``context_len=1`` and ``make_disjoint_window``), laid over the whole of ``ids``:

    - the predicted positions 1, 2, ... are cut into consecutive, disjoint blocks of
      ``context`` tokens (the stride equals the window, so every token is predicted
      exactly once);
    - each block is predicted in one pass that reads the ``context`` tokens before the
      block's last token (fewer for the first block, which starts at ``ids[0]``, the BOS
      token for plain text). So a block's first token is conditioned on just one token,
      its last on ``context``; the final, shorter block reads a full ``context``;
    - only predictions at or after ``start`` count: a chat prompt longer than the context
      is read as context by the blocks that reach into the response, never scored.

    Why not overlapping windows (stride < window), which give each token more context?
    Because perplexity beside lm-eval's figures must be lm-eval's figure; and a stride of
    the full window costs one pass per ``context`` tokens.

    Backends that are handed every id of a pass, the last included (vLLM's prompt
    log-probs, an endpoint's echo), pass a ``context`` below the model's: one less for the
    last id, and one more for the token they are asked to generate (lm-eval's vLLM
    backend uses ``max_length - 2`` for the same reason).

    Plain text (BOS ``0``, then tokens 1-6) read 3 tokens at a time: two full blocks.

    >>> [(w.ids, w.first_scored) for w in scoring_windows([0, 1, 2, 3, 4, 5, 6], 1, 3)]
    [([0, 1, 2, 3], 1), ([3, 4, 5, 6], 1)]

    One token more: the last block (token 7) is predicted from the 3 tokens before it.

    >>> [(w.ids, w.first_scored) for w in scoring_windows([0, 1, 2, 3, 4, 5, 6, 7], 1, 3)]
    [([0, 1, 2, 3], 1), ([3, 4, 5, 6], 1), ([4, 5, 6, 7], 3)]

    A chat whose response starts at ``ids[5]``: the first block (1-3) is all prompt.

    >>> [(w.ids, w.first_scored) for w in scoring_windows([0, 1, 2, 3, 4, 5, 6], 5, 3)]
    [([3, 4, 5, 6], 2)]
    """
    if context is None or len(ids) - 1 <= context:
        return [ScoringWindow(list(ids), start)]
    if context < 1:
        raise ValueError(f"a scoring window must read at least one token, not {context}")
    windows = []
    for first in range(1, len(ids), context):
        end = min(first + context, len(ids))  # this block predicts ids[first:end]
        if end <= start:
            continue  # the block is all context (a chat prompt): nothing to count
        begin = max(0, end - 1 - context)
        windows.append(ScoringWindow(list(ids[begin:end]), max(first, start) - begin))
    return windows


LONG_PROMPT_POLICIES = ("error", "truncate")
"""``--on-long-prompt``: refuse a prompt longer than the context, or keep its last tokens."""
_CONTEXT_FIELDS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length")


def context_length(config: Any, max_model_len: int | None = None) -> int | None:
    """The context length a model's config declares (``--max-model-len`` wins when given).

    ``None`` when the config names none (then nothing is checked: the engine decides).
    """
    if max_model_len is not None:
        return max_model_len
    for source in (config, getattr(config, "text_config", None)):
        for name in _CONTEXT_FIELDS:
            value = getattr(source, name, None)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


@dataclass(frozen=True)
class FittedPrompts:
    """Prompt ids after the long-prompt policy: cut ones and their original lengths."""

    ids: dict[str, list[int]]
    """Prompt id -> the token ids to generate after."""
    truncated: dict[str, int]
    """Prompt id -> its length in tokens before truncation (only the prompts cut)."""
    kept: int
    """Tokens a truncated prompt keeps (its last ones)."""

    def warning(self, context: int) -> str | None:
        """The line telling the user what was cut, or ``None`` when nothing was."""
        if not self.truncated:
            return None
        listing = ", ".join(f"'{p}' ({n} tokens)" for p, n in list(self.truncated.items())[:5])
        more = len(self.truncated) - min(len(self.truncated), 5)
        return (f"warning: {len(self.truncated)} prompt(s) longer than the model's context of "
                f"{context} tokens were truncated to their last {self.kept} tokens "
                f"(--on-long-prompt truncate): {listing}" + (f" and {more} more" if more else ""))


def fit_to_context(prompts: dict[str, list[int]], context: int, max_new_tokens: int,
                   policy: str, model: str) -> FittedPrompts:
    """Apply the long-prompt policy to every prompt, before any of them is generated.

    A prompt is too long when it leaves no position to generate in (``len >= context``):
    the model would answer from positions it was never trained on, which is how a
    200,000-character prompt got a "\\n\\n\\n\\n" answer. ``truncate`` keeps the *last*
    ``context - max_new_tokens`` tokens: the end holds the question and the chat
    template's assistant header, which the answer depends on most; the start (system prompt,
    earlier turns, the head of a long document) is what is lost.

    Args:
        prompts: prompt id -> token ids (chat template applied).
        context: the model's context length in tokens.
        max_new_tokens: the answer budget the truncated prompt leaves room for.
        policy: ``error`` or ``truncate``.
        model: the base model, for messages.

    Raises:
        UserError: under ``error``, naming every long prompt (up to 5) with its token count;
            under ``truncate``, when ``max_new_tokens`` leaves no room for any prompt.
    """
    long = {p: len(ids) for p, ids in prompts.items() if len(ids) >= context}
    keep = context - max_new_tokens
    if not long:
        return FittedPrompts(dict(prompts), {}, keep)
    listing = ", ".join(f"'{p}' is {n} tokens" for p, n in list(long.items())[:5])
    more = f" and {len(long) - 5} more" if len(long) > 5 else ""
    if policy != "truncate":
        truncate = (f"--on-long-prompt truncate (keeps each prompt's last {keep} tokens, "
                    f"leaving room for --max-new-tokens {max_new_tokens})" if keep >= 1 else
                    f"--on-long-prompt truncate with --max-new-tokens below {context} (e.g. "
                    f"{context // 2})")
        raise UserError(
            f"{len(long)} prompt(s) do not fit the context of {model} ({context} tokens): "
            f"{listing}{more}. Fix: shorten these prompts, or pass {truncate}."
        )
    if keep < 1:
        raise UserError(
            f"--on-long-prompt truncate must leave room for --max-new-tokens {max_new_tokens}, "
            f"and the context of {model} is {context} tokens ({listing}{more}). Fix: pass "
            f"--max-new-tokens below {context} (e.g. {context // 2})."
        )
    fitted = {p: (ids[-keep:] if p in long else ids) for p, ids in prompts.items()}
    return FittedPrompts(fitted, long, keep)


def fit_prompt_ids(tokenizer: Any, prompts: Sequence[Prompt], context: int | None,
                   gen: GenConfig, model: str) -> dict[str, list[int]]:
    """Every prompt's ids under ``gen.on_long_prompt``, with the truncation warning printed.

    What a local backend calls once per generate call, before its first answer: prompt id
    -> the ids to generate after. ``context`` ``None`` (unknown) checks nothing.

    Raises:
        UserError: as ``fit_to_context``.
    """
    ids = {p.id: prompt_ids(tokenizer, p.messages) for p in prompts}
    if context is None:
        return ids
    fitted = fit_to_context(ids, context, gen.max_new_tokens, gen.on_long_prompt, model)
    warning = fitted.warning(context)
    if warning:
        print(warning, file=sys.stderr)  # beside the progress bar, not in a log file
    return fitted.ids


def check_prompt_lengths(prompts: Sequence[Prompt], base_model: str, gen: GenConfig,
                         max_model_len: int | None = None) -> FittedPrompts | None:
    """The long-prompt policy applied from the base model's tokenizer and config alone.

    Meant to run before any model loads (the tokenizer and ``config.json`` take well under a
    second), whatever the backend that serves ``base_model``. Returns ``None`` when there
    is nothing to check with: transformers is not installed, or the base model's files are
    not on this machine (a remote endpoint's model); the backend then decides.

    Raises:
        UserError: as ``fit_to_context``.
    """
    import importlib.util

    if importlib.util.find_spec("transformers") is None:
        return None
    from transformers import AutoConfig, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(base_model, local_files_only=True)
        config = AutoConfig.from_pretrained(base_model, local_files_only=True)
    except (OSError, ValueError):
        return None
    context = context_length(config, max_model_len)
    if context is None or not getattr(tokenizer, "chat_template", None):
        return None
    ids = {p.id: prompt_ids(tokenizer, p.messages) for p in prompts}
    return fit_to_context(ids, context, gen.max_new_tokens, gen.on_long_prompt, base_model)
