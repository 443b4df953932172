"""Degenerate answers: empty, cut at the token limit, looping, echoing the prompt, refusing.

These are the ways a fine-tune fails that a win rate hides: a league score says the adapter
lost, not that a third of its answers were the same sentence forty times. A participant wants
to know before submitting; an organiser wants to know before reading the table. Each detector
here reads one candidate's answers and returns at most one finding (with counts, prompt ids
and short excerpts as evidence):

- ``empty-answers``: blank answers (whitespace or invisible characters only);
- ``truncated-answers``: answers cut at ``max_new_tokens`` (``finish_reason == "length"``);
- ``repetition-loop``: the same run of words repeated over and over inside one answer, the
  typical failure of an over-trained adapter (greedy decoding falls into a cycle it never
  leaves); see ``repetition`` for the measure;
- ``echoes-prompt``: the answer reproduces the prompt's text near verbatim;
- ``refusals``: the answer opens with a refusal phrase (a list in the thresholds file,
  several languages).

Echoes and refusals are flagged only when they are clearly more frequent than in the
baseline's answers: some prompts make any model quote them (proofreading) or decline, and
those say nothing about the adapter. Thresholds: ``data/quality.toml``.
"""

from __future__ import annotations

import re
from functools import cached_property

from evalharness.audit.common import (
    Hit,
    Share,
    answers_in_order,
    baseline_share,
    excess,
    finding,
    last_user_text,
    level,
    longest_common_span,
)
from evalharness.audit.config import AuditConfig, Thresholds
from evalharness.audit.findings import CandidateAnswers, Finding, Severity, excerpt
from evalharness.audit.repetition import CJK, LoopThresholds, looping, loops
from evalharness.audit.text import fold, plain, words
from evalharness.schema import Answer

# -- empty ---------------------------------------------------------------------------------


class EmptyThresholds(Thresholds):
    """``[empty-answers]`` in ``data/quality.toml``."""

    min_count: int
    severe_share: float


def is_empty(text: str) -> bool:
    """Whether ``text`` shows nothing: only whitespace and invisible characters.

    >>> is_empty(" \\n\\u200b "), is_empty("0")
    (True, False)
    """
    return not plain(text).strip()


def empty_answers(inp: CandidateAnswers, config: AuditConfig) -> list[Finding]:
    """``empty-answers``: answers that are blank (a judge can only rule against them)."""
    t = config.section("empty-answers", EmptyThresholds)
    answers = answers_in_order(inp)
    hits = [Hit(a.prompt_id, repr(a.text[:20])) for a in answers if is_empty(a.text)]
    if not answers or len(hits) < t.min_count:
        return []
    found = Share(len(hits), len(answers))
    severity: Severity = "severe" if found.share >= t.severe_share else "warning"
    evidence = [f"thresholds: flagged from {t.min_count} blank answer(s), severe from "
                f"{t.severe_share:.0%} of answers"]
    base = baseline_share(inp, lambda a: is_empty(a.text))
    if base is not None:
        evidence.insert(0, f"baseline: {base} blank")
    return [finding(inp, "empty-answers", severity, f"{found} answers are blank", hits,
                     evidence)]


# -- truncated -----------------------------------------------------------------------------


class TruncatedThresholds(Thresholds):
    """``[truncated-answers]`` in ``data/quality.toml``."""

    min_share: float
    severe_share: float


def truncated_answers(inp: CandidateAnswers, config: AuditConfig) -> list[Finding]:
    """``truncated-answers``: answers cut at the token limit, judged unfinished."""
    t = config.section("truncated-answers", TruncatedThresholds)
    answers = answers_in_order(inp)
    cut = [a for a in answers if a.finish_reason == "length"]
    found = Share(len(cut), len(answers))
    severity = level(found.share, t.min_share, t.severe_share) if cut else None
    if severity is None:
        return []
    tokens = sorted({a.n_tokens for a in cut})
    evidence = [f"cut at {', '.join(map(str, tokens[:5]))} tokens: raise --max-new-tokens, "
                "or read the head-to-head as a comparison of unfinished answers",
                f"thresholds: warning from {t.min_share:.0%}, severe from {t.severe_share:.0%}"]
    base = baseline_share(inp, lambda a: a.finish_reason == "length")
    if base is not None:
        evidence.insert(0, f"baseline: {base} cut")
    hits = [Hit(a.prompt_id, excerpt(a.text, max(0, len(a.text) - 60), 60)) for a in cut]
    return [finding(inp, "truncated-answers", severity,
                     f"{found} answers were cut at the token limit", hits, evidence)]


# -- repetition loops ----------------------------------------------------------------------


def repetition_loops(inp: CandidateAnswers, config: AuditConfig) -> list[Finding]:
    """``repetition-loop``: answers that repeat the same words over and over."""
    t = config.section("repetition-loop", LoopThresholds)
    answers = answers_in_order(inp)
    hits: list[Hit] = []
    cut = 0
    for a in answers:
        found_loop = looping(a.text, t)
        if found_loop is not None:
            hits.append(Hit(a.prompt_id, excerpt(a.text, found_loop.start)))
            cut += a.finish_reason == "length"
    found = Share(len(hits), len(answers))
    severity = level(found.share, t.min_share, t.severe_share) if hits else None
    if severity is None:
        return []
    evidence = [f"{cut} of the looping answers ran until the token limit",
                f"an answer loops when it repeats a unit of words {t.min_repeats}+ times back "
                f"to back over {t.min_run_words}+ words, or a {t.ngram}-word sequence occurs "
                f"{t.min_repeats}+ times and {t.min_repeated_share:.0%}+ of its "
                f"{t.ngram}-grams are repeats, or it compresses to {t.max_compression:.0%} "
                "of its size or less",
                f"thresholds: warning from {t.min_share:.0%} of answers, severe from "
                f"{t.severe_share:.0%}"]
    base = baseline_share(inp, lambda a: loops(a.text, t))
    if base is not None:
        evidence.insert(0, f"baseline: {base} loop")
    return [finding(inp, "repetition-loop", severity,
                     f"{found} answers are caught in a repetition loop", hits, evidence)]


# -- echoes of the prompt -----------------------------------------------------------------


class EchoThresholds(Thresholds):
    """``[echoes-prompt]`` in ``data/quality.toml``."""

    min_prompt_words: int
    min_span_share: float
    min_share: float
    baseline_margin: float


def echo_start(answer: str, prompt: str, t: EchoThresholds) -> int | None:
    """Where (as a word index) ``answer`` reproduces ``prompt``'s words near verbatim, or
    ``None``: the longest common run of words must cover ``min_span_share`` of a prompt of
    at least ``min_prompt_words`` words.

    A restating answer ("The benefits of exercise are ...") shares the question's tail; an
    echo reproduces the question itself.
    """
    asked = words(prompt)
    if len(asked) < t.min_prompt_words:
        return None
    size, start = longest_common_span(asked, words(answer))
    return start if size >= t.min_span_share * len(asked) else None


def _echoes(inp: CandidateAnswers, a: Answer, t: EchoThresholds) -> bool:
    prompt = inp.prompts.get(a.prompt_id)
    return prompt is not None and echo_start(a.text, last_user_text(prompt), t) is not None


def prompt_echoes(inp: CandidateAnswers, config: AuditConfig) -> list[Finding]:
    """``echoes-prompt``: answers that repeat the prompt back, more often than the baseline's."""
    t = config.section("echoes-prompt", EchoThresholds)
    answers = answers_in_order(inp)
    hits = [Hit(a.prompt_id, excerpt(a.text)) for a in answers if _echoes(inp, a, t)]
    found = Share(len(hits), len(answers))
    base = baseline_share(inp, lambda a: _echoes(inp, a, t))
    if not excess(found, base, t.min_share, t.baseline_margin):
        return []
    evidence = [f"an echo reproduces {t.min_span_share:.0%}+ of a prompt of "
                f"{t.min_prompt_words}+ words as one run of words",
                f"threshold: {t.min_share:.0%} of answers, and {t.baseline_margin:.0%} above "
                "the baseline's share"]
    if base is not None:
        evidence.insert(0, f"baseline: {base} echo the prompt")
    return [finding(inp, "echoes-prompt", "warning",
                     f"{found} answers repeat the prompt back", hits, evidence)]


# -- refusals ------------------------------------------------------------------------------


class RefusalThresholds(Thresholds):
    """``[refusals]`` in ``data/quality.toml``."""

    phrases: tuple[str, ...]
    head_chars: int
    min_share: float
    severe_share: float
    baseline_margin: float

    @cached_property
    def patterns(self) -> tuple[tuple[str, str], ...]:
        """Each phrase with the text ``refusal_phrase`` looks for (see ``_squashed``)."""
        found = []
        for phrase in self.phrases:
            wanted = _squashed(phrase)
            if re.match(rf" [{CJK}]", wanted):
                wanted = wanted[1:]  # no word boundaries in Chinese and Japanese
            if wanted.strip():
                found.append((phrase, wanted))
        return tuple(found)


def _squashed(text: str) -> str:
    """Folded text with every run of punctuation and spaces made one space, space-led."""
    return " " + re.sub(r"[\W_]+", " ", fold(text)).strip()


def refusal_phrase(text: str, t: RefusalThresholds) -> str | None:
    """The refusal phrase ``text`` opens with (within its first ``head_chars``), or ``None``.

    Only the opening counts: a refusal comes first, while "I cannot stress enough" deep in a
    helpful answer is not one. A phrase matches from a word's start, whatever the case,
    accents, punctuation or apostrophe style ("I’m sorry but I can’t" matches "I'm sorry,
    but I can't"); one in Chinese or Japanese, written without spaces, matches anywhere.

    >>> t = RefusalThresholds(phrases=("I can't help with", "我无法"), head_chars=200,
    ...                       min_share=0.1, severe_share=0.5, baseline_margin=0.1)
    >>> refusal_phrase("Sorry -- I can\u2019t  help with that.", t)
    "I can't help with"
    >>> refusal_phrase("抱歉，我无法回答。", t), refusal_phrase("Hi, can't help with", t)
    ('我无法', None)
    """
    head = _squashed(text[:t.head_chars])
    return next((phrase for phrase, wanted in t.patterns if wanted in head), None)


def refusals(inp: CandidateAnswers, config: AuditConfig) -> list[Finding]:
    """``refusals``: the candidate declines to answer, clearly more often than the baseline."""
    t = config.section("refusals", RefusalThresholds)
    answers = answers_in_order(inp)
    hits = [Hit(a.prompt_id, excerpt(a.text)) for a in answers if refusal_phrase(a.text, t)]
    found = Share(len(hits), len(answers))
    base = baseline_share(inp, lambda a: refusal_phrase(a.text, t) is not None)
    if not excess(found, base, t.min_share, t.baseline_margin):
        return []
    severity: Severity = "severe" if found.share >= t.severe_share else "warning"
    evidence = [f"threshold: {t.min_share:.0%} of answers and {t.baseline_margin:.0%} above "
                f"the baseline's share; severe from {t.severe_share:.0%}"]
    if base is not None:
        evidence.insert(0, f"baseline: {base} refuse")
    return [finding(inp, "refusals", severity, f"{found} answers refuse", hits, evidence)]


DETECTORS = (empty_answers, truncated_answers, repetition_loops, prompt_echoes, refusals)
"""Every detector in this module, in report order."""


def degenerate(inp: CandidateAnswers, config: AuditConfig) -> list[Finding]:
    """Every finding of this module's detectors on one candidate."""
    return [finding for detect in DETECTORS for finding in detect(inp, config)]
