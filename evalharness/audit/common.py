"""What the answer detectors share: shares of flagged answers against the baseline's, the
order answers are read in, and one way to build a finding from the answers it flagged."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from difflib import SequenceMatcher
from typing import NamedTuple

from evalharness.audit.findings import CandidateAnswers, Finding, Severity, some_ids
from evalharness.schema import Answer, Prompt

MAX_EXCERPTS = 3
"""Excerpts kept per finding (the prompt ids and the count say how many more there were)."""

class Hit(NamedTuple):
    """One answer a detector flagged."""

    prompt_id: str
    """The prompt it answers."""
    excerpt: str
    """A short excerpt showing the problem."""


class Share(NamedTuple):
    """How many answers were flagged, of how many."""

    flagged: int
    """Answers flagged."""
    total: int
    """Answers looked at."""

    @property
    def share(self) -> float:
        """``flagged / total`` (0 when there were none)."""
        return self.flagged / self.total if self.total else 0.0

    def __str__(self) -> str:
        return f"{self.flagged} of {self.total} ({100 * self.share:.0f}%)"


def answers_in_order(inp: CandidateAnswers) -> list[Answer]:
    """The candidate's answers in prompt-set order (answers to unknown prompts last)."""
    known = [inp.answers[pid] for pid in inp.prompts if pid in inp.answers]
    return known + [a for pid, a in inp.answers.items() if pid not in inp.prompts]


def last_user_text(prompt: Prompt) -> str:
    """The last user turn of ``prompt``: the request the answer responds to."""
    users = [m.content for m in prompt.messages if m.role == "user"]
    return users[-1] if users else ""


def longest_common_span(a: Sequence[str], b: Sequence[str]) -> tuple[int, int]:
    """Length of the longest run of tokens shared by ``a`` and ``b``, and where it starts in
    ``b``.

    >>> longest_common_span("x the cat sat y".split(), "a the cat sat on".split())
    (3, 1)
    """
    if not a or not b:
        return 0, 0
    match = SequenceMatcher(None, a, b, autojunk=False).find_longest_match(0, len(a), 0, len(b))
    return match.size, match.b


def level(share: float, warning: float, severe: float) -> Severity | None:
    """The severity ``share`` reaches: ``severe`` at ``severe``, ``warning`` at ``warning``.

    >>> level(0.3, 0.1, 0.5), level(0.05, 0.1, 0.5)
    ('warning', None)
    """
    if share >= severe:
        return "severe"
    return "warning" if share >= warning else None


def finding(inp: CandidateAnswers, check: str, severity: Severity, summary: str,
             hits: Sequence[Hit], evidence: Iterable[str]) -> Finding:
    """One finding about ``inp``'s candidate, its prompt ids and first excerpts from ``hits``."""
    return Finding(subject=inp.candidate, check=check, severity=severity, summary=summary,
                   evidence=tuple(evidence), prompt_ids=some_ids(h.prompt_id for h in hits),
                   excerpts=tuple(h.excerpt for h in hits[:MAX_EXCERPTS]))


def baseline_share(inp: CandidateAnswers, flag: Callable[[Answer], bool]) -> Share | None:
    """How many of the baseline's answers ``flag`` flags; ``None`` without a baseline."""
    if inp.baseline is None:
        return None
    return Share(sum(1 for a in inp.baseline.values() if flag(a)), len(inp.baseline))


def excess(found: Share, base: Share | None, min_share: float, margin: float) -> bool:
    """Whether ``found`` is at least ``min_share`` and, given a baseline, ``margin`` above
    its share: for what some prompts make any model do (quote them, decline them).

    >>> excess(Share(10, 50), Share(6, 50), 0.1, 0.1), excess(Share(10, 50), None, 0.1, 0.1)
    (False, True)
    """
    floor = min_share if base is None else max(min_share, base.share + margin)
    return found.flagged > 0 and found.share >= floor
