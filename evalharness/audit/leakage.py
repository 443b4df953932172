"""Reference leakage: answers that reproduce the prompt set's reference answers near verbatim.

An adapter trained on the evaluation set (its hidden reference answers included) wins by
recall, not skill, and nothing in a win rate shows it. What does show it is the text: the
candidate's answers reproduce long runs of the references word for word, far more than the
baseline's answers do. ``reference-leak`` measures, per prompt, the longest run of words
the answer shares with the reference and the share of the reference's word 8-grams found in
the answer, and flags the candidate when many answers reproduce their reference.

Only long references count (``min_reference_words``, 25 words by default). A short factual
reference is what any correct answer says: the offline demo's references are one sentence
of 8 to 15 words ("Harbourview Polytechnic is a polytechnic in Port Amsel."), and its honest
adapters answer exactly that. A reference of several sentences is distinctive: two honest
writers do not share a run of 20 words by chance. Where they do (a famous quotation, a
legal text the prompt asks for), the baseline reproduces it too, and the finding needs the
candidate's share well above the baseline's. Thresholds: ``[reference-leak]`` in
``data/quality.toml``.
"""

from __future__ import annotations

import re
import statistics
from typing import NamedTuple

from evalharness.audit.common import MAX_EXCERPTS, Share, excess, longest_common_span
from evalharness.audit.config import AuditConfig, Thresholds
from evalharness.audit.findings import CandidateAnswers, Finding, Severity, excerpt, some_ids
from evalharness.audit.text import words
from evalharness.schema import Answer

_WORD = re.compile(r"[^\W_]+")


class LeakThresholds(Thresholds):
    """``[reference-leak]`` in ``data/quality.toml``."""

    min_reference_words: int
    ngram: int
    min_span_words: int
    min_ngram_share: float
    min_count: int
    min_share: float
    severe_share: float
    baseline_margin: float


class Overlap(NamedTuple):
    """How much of a reference one answer reproduces."""

    span: int
    """Words in the longest run shared with the reference."""
    span_start: int
    """Where that run starts in the answer (a word index)."""
    ngram_share: float
    """Share of the reference's word n-grams that occur in the answer."""


def overlap(answer: str, reference: str, ngram: int = 8) -> Overlap:
    """Measure how much of ``reference`` the ``answer`` reproduces (folded words: case,
    punctuation and lookalike letters do not hide a copy).

    >>> ref = "one two three four five six seven eight nine ten"
    >>> overlap("so: One, two, three four five six seven eight. Done", ref)
    Overlap(span=8, span_start=1, ngram_share=0.3333333333333333)
    """
    ref_words, ans_words = words(reference), words(answer)
    span, start = longest_common_span(ref_words, ans_words)
    ref_grams = {tuple(ref_words[i:i + ngram]) for i in range(len(ref_words) - ngram + 1)}
    if not ref_grams:
        return Overlap(span, start, 0.0)
    ans_grams = {tuple(ans_words[i:i + ngram]) for i in range(len(ans_words) - ngram + 1)}
    return Overlap(span, start, len(ref_grams & ans_grams) / len(ref_grams))


def reproduces(found: Overlap, t: LeakThresholds) -> bool:
    """Whether an answer with overlap ``found`` reproduces its reference: one long run of
    words, or most of the reference's n-grams (a copy with a few words changed)."""
    return found.span >= t.min_span_words or found.ngram_share >= t.min_ngram_share


def _char_start(text: str, word_index: int) -> int:
    starts = [m.start() for m in _WORD.finditer(text)]
    # Folding can merge or split words (invisible characters, ligatures): then start at 0.
    return starts[word_index] if len(starts) == len(words(text)) and starts else 0


def _overlaps(answers: dict[str, Answer], references: dict[str, str], ngram: int
              ) -> dict[str, Overlap]:
    return {pid: overlap(answers[pid].text, ref, ngram)
            for pid, ref in references.items() if pid in answers}


def reference_leak(inp: CandidateAnswers, config: AuditConfig) -> list[Finding]:
    """``reference-leak``: the candidate reproduces long references near verbatim, far more
    often than the baseline: possible training on the evaluation set."""
    t = config.section("reference-leak", LeakThresholds)
    references = {pid: p.reference for pid, p in inp.prompts.items()
                  if p.reference and len(words(p.reference)) >= t.min_reference_words}
    mine = _overlaps(inp.answers, references, t.ngram)
    if not mine:
        return []
    leaked = [pid for pid, o in mine.items() if reproduces(o, t)]
    found = Share(len(leaked), len(mine))
    theirs = None if inp.baseline is None else _overlaps(inp.baseline, references, t.ngram)
    base = None if theirs is None else \
        Share(sum(1 for o in theirs.values() if reproduces(o, t)), len(theirs))
    if len(leaked) < t.min_count or not excess(found, base, t.min_share, t.baseline_margin):
        return []
    severity: Severity = "severe" if found.share >= t.severe_share else "warning"
    median = statistics.median(o.ngram_share for o in mine.values())
    evidence = [f"median share of the reference's {t.ngram}-word runs reproduced: "
                f"{median:.0%}; longest shared run: {max(o.span for o in mine.values())} words"]
    if base is not None and theirs:
        evidence.append(f"baseline: {base} reproduce their reference; median share "
                        f"{statistics.median(o.ngram_share for o in theirs.values()):.0%}")
    evidence += [
        f"only references of {t.min_reference_words}+ words count ({len(mine)} prompts): a "
        "short factual reference is what any correct answer says",
        f"an answer reproduces its reference with a shared run of {t.min_span_words}+ words "
        f"or {t.min_ngram_share:.0%}+ of its {t.ngram}-word runs; flagged from "
        f"{t.min_count} answers and {t.min_share:.0%}, {t.baseline_margin:.0%} above the "
        f"baseline; severe from {t.severe_share:.0%}"]
    excerpts = []
    for pid in leaked[:MAX_EXCERPTS]:
        text = inp.answers[pid].text
        excerpts.append(excerpt(text, _char_start(text, mine[pid].span_start)))
    return [Finding(
        subject=inp.candidate, check="reference-leak", severity=severity,
        summary=(f"{found} answers reproduce the prompt's reference answer near verbatim: "
                 "possible training on the evaluation set"),
        evidence=tuple(evidence), prompt_ids=some_ids(leaked), excerpts=tuple(excerpts))]
