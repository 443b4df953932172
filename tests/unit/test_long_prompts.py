"""The long-prompt policy: refuse or keep the last tokens, decided before generation."""

from __future__ import annotations

import pytest

from evalharness.backends.tokens import context_length, fit_to_context
from evalharness.errors import UserError


def test_error_names_each_long_prompt_its_length_and_the_fix() -> None:
    prompts = {"ok": [1] * 10, "long": [2] * 300, "longer": [3] * 5000}
    with pytest.raises(UserError) as info:
        fit_to_context(prompts, 256, 64, "error", "tiny")
    message = str(info.value)
    assert "2 prompt(s) do not fit the context of tiny (256 tokens)" in message
    assert "'long' is 300 tokens, 'longer' is 5000 tokens" in message
    assert "Fix:" in message and "--on-long-prompt truncate" in message
    assert "last 192 tokens" in message


def test_truncate_keeps_the_last_tokens_with_room_for_the_answer() -> None:
    long = list(range(1000))
    fitted = fit_to_context({"ok": [7] * 10, "long": long}, 256, 56, "truncate", "tiny")
    assert fitted.ids["ok"] == [7] * 10  # prompts that fit are untouched
    assert fitted.ids["long"] == long[-200:]  # the end: the question and assistant header
    assert fitted.truncated == {"long": 1000}
    warning = fitted.warning(256)
    assert warning is not None
    assert "1 prompt(s) longer than the model's context of 256 tokens were truncated to " \
        "their last 200 tokens" in warning and "'long' (1000 tokens)" in warning


def test_truncate_without_room_for_the_answer_is_refused() -> None:
    with pytest.raises(UserError, match="Fix: pass --max-new-tokens below 256"):
        fit_to_context({"long": [1] * 300}, 256, 256, "truncate", "tiny")


def test_nothing_long_nothing_changes_even_when_the_answer_budget_exceeds_the_context() -> None:
    fitted = fit_to_context({"a": [1] * 40}, 256, 256, "error", "tiny")
    assert fitted.ids == {"a": [1] * 40} and fitted.warning(256) is None


def test_context_length_prefers_max_model_len_then_the_config() -> None:
    class Config:
        max_position_embeddings = 4096

    class Wrapper:
        text_config = Config()

    assert context_length(Config()) == 4096
    assert context_length(Wrapper()) == 4096
    assert context_length(Config(), max_model_len=1024) == 1024
    assert context_length(object()) is None


def test_the_check_needs_only_the_base_models_tokenizer_and_config(kit) -> None:  # type: ignore[no-untyped-def]
    from evalharness.backends.tokens import check_prompt_lengths
    from evalharness.schema import GenConfig, Message, Prompt

    def prompt(pid: str, text: str) -> Prompt:
        return Prompt(id=pid, messages=(Message(role="user", content=text),))

    prompts = [prompt("short", "Where is Redmoor?"), prompt("huge", "Where is Redmoor? " * 2000)]
    with pytest.raises(UserError, match=r"'huge' is \d+ tokens"):
        check_prompt_lengths(prompts, str(kit.base), GenConfig())
    fitted = check_prompt_lengths(prompts, str(kit.base),
                                  GenConfig(max_new_tokens=16, on_long_prompt="truncate"))
    assert fitted is not None and set(fitted.truncated) == {"huge"}
    assert len(fitted.ids["huge"]) == 256 - 16
    # No tokenizer on this machine (a remote endpoint's model): nothing to check with.
    assert check_prompt_lengths(prompts, "no-such-org/no-such-model", GenConfig()) is None
