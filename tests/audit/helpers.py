"""Answers for the detector tests."""

from __future__ import annotations

from typing import Literal

from evalharness.schema import Answer


def answer(model: str, pid: str, text: str, finish: Literal["stop", "length"] = "stop"
           ) -> Answer:
    """``model``'s answer ``text`` to prompt ``pid`` (one token per word)."""
    return Answer(key=f"{model}:{pid}", prompt_id=pid, model=model, model_key=model, text=text,
                  n_tokens=len(text.split()), finish_reason=finish, seconds=0.0)


def answers(texts: dict[str, str], model: str = "cand") -> dict[str, Answer]:
    """``model``'s answers by prompt id."""
    return {pid: answer(model, pid, text) for pid, text in texts.items()}
