"""What a detector reports: one ``Finding`` per problem, with its evidence and severity.

Findings are records (stored in ``RUN/audit.json``), so they are pydantic models like every
other record. Excerpts are untrusted model output kept verbatim; every renderer escapes them
(terminal: ``console.literal``, Markdown: ``md_escape``, HTML: ``html.escape``).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from evalharness.audit.text import visible_controls
from evalharness.schema import Answer, Prompt, Record

Severity = Literal["info", "warning", "severe"]
SEVERITY_ORDER: dict[Severity, int] = {"info": 0, "warning": 1, "severe": 2}
EXCERPT_CHARS = 80
"""Longest excerpt kept in a finding (characters)."""
STRICT_EXIT = 3
"""``evalharness audit --strict`` exits with this when a finding is severe."""
MAX_PROMPT_IDS = 12
"""Prompt ids listed as evidence at most (the count says how many there were)."""


class Finding(Record):
    """One problem a detector found, about one candidate or one judge."""

    subject: str
    """What the finding is about: a model's name, or ``judge:<name>`` for the judge."""
    check: str
    """The detector's id (``duplicate-answers``, ``judge-addressing``, ...); docs/audit.md
    lists every id."""
    severity: Severity
    """``severe``: the result should not be trusted; ``warning``: look before trusting it;
    ``info``: worth knowing."""
    summary: str
    """One line saying what was found, with counts."""
    evidence: tuple[str, ...] = ()
    """Further lines of evidence (counts, rates, thresholds crossed)."""
    prompt_ids: tuple[str, ...] = ()
    """Prompts where it was seen (at most ``MAX_PROMPT_IDS``; ``summary`` gives the count)."""
    excerpts: tuple[str, ...] = ()
    """Short verbatim excerpts of the offending text (untrusted: escape when shown)."""
    about: str | None = None
    """For a judge's finding: the candidate whose games it is about (its leaderboard row
    shows the flag); ``None`` for a finding about the subject itself."""


def _visible(char: str) -> str:
    if char in "\n\r\t":
        return " "
    return f"<U+{ord(char):04X}>" if unicodedata.category(char) == "Cc" else char


def excerpt(text: str, start: int = 0, length: int = EXCERPT_CHARS) -> str:
    """``length`` characters of ``text`` from ``start``, with ``...`` where it was cut.

    Invisible and control characters become visible escapes (a zero-width space shows as
    ``<U+200B>``, a bidi override as ``<U+202E>``), so an excerpt cannot hide text or
    reorder the line it is printed on; line breaks become spaces.

    >>> excerpt("abcdefghij", 2, 4)
    '...cdef...'
    >>> excerpt("short")
    'short'
    >>> excerpt("ok\u202egnp.exe")
    'ok<U+202E>gnp.exe'
    """
    start = max(0, start)
    shown = visible_controls(text[start:start + length]).text
    piece = "".join(_visible(c) for c in shown)
    return ("..." if start > 0 else "") + piece + ("..." if start + length < len(text) else "")


def some_ids(ids: Iterable[str]) -> tuple[str, ...]:
    """At most ``MAX_PROMPT_IDS`` prompt ids, in the order given, without repeats."""
    return tuple(dict.fromkeys(ids))[:MAX_PROMPT_IDS]


def worst(findings: Iterable[Finding]) -> Severity | None:
    """The highest severity among ``findings``; ``None`` when there are none."""
    found: Severity | None = None
    for f in findings:
        if found is None or SEVERITY_ORDER[f.severity] > SEVERITY_ORDER[found]:
            found = f.severity
    return found


@dataclass(frozen=True)
class CandidateAnswers:
    """What an answer detector sees of one candidate: its answers and what to compare with."""

    candidate: str
    """The model audited."""
    answers: dict[str, Answer]
    """Its answers by prompt id."""
    prompts: dict[str, Prompt]
    """The prompts by id (references included when the prompt set has them)."""
    baseline: dict[str, Answer] | None = None
    """The baseline's answers by prompt id; ``None`` when the candidate is the baseline."""
