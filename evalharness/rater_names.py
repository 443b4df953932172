"""Who gave a verdict, read from the judge name a judgment carries.

A run's ``judgments.jsonl`` holds, beside its judge's verdicts, people's labels (judge
``human:<name>``, from ``evalharness label``) and the noise floor's repeats (judge
``<judge>#<k>``, from ``judge RUN --repeats``). Statistics, the audit and the labelling app
all tell them apart by these names; this module is the one place that knows them, and it
imports nothing, so the labelling app does not load the statistics to use it.
"""

from __future__ import annotations

from typing import Literal

RaterKind = Literal["human", "judge"]

HUMAN_PREFIX = "human:"
"""Judgments by a person carry the judge name ``human:<name>`` (the labelling app writes it)."""
REPEAT_MARK = "#"
"""``<judge>#<k>``: the k-th repeat of a judge's games (the noise floor)."""


def rater_kind(rater: str) -> RaterKind:
    """``human`` for a person's labels (judge name ``human:<name>``), ``judge`` otherwise.

    >>> rater_kind("human:ana"), rater_kind("gpt-4o#2")
    ('human', 'judge')
    """
    return "human" if rater.startswith(HUMAN_PREFIX) else "judge"


def is_repeat(rater: str) -> bool:
    """Whether ``rater`` names repeated judgments of another judge.

    >>> is_repeat("pairwise-binary#2"), is_repeat("pairwise-binary")
    (True, False)
    """
    return REPEAT_MARK in rater


def is_primary(rater: str) -> bool:
    """Whether ``rater``'s verdicts may make a headline: a judge, not a person or a repeat.

    >>> is_primary("pairwise-binary"), is_primary("human:ana"), is_primary("j#1")
    (True, False, False)
    """
    return rater_kind(rater) == "judge" and not is_repeat(rater)
