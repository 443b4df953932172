"""One answer for many prompts, and one block of text in every answer.

A model that gives the same (or nearly the same) answer to different prompts is not
answering them: a judge may still prefer that answer (the public "null model" submissions
win with one constant text), so the win rate alone cannot tell. ``duplicate-answers`` groups
identical answers (after ``normalised``) and near-copies (Jaccard similarity of word
shingles); ``shared-boilerplate`` finds one long span that answers which otherwise differ
all carry, which is what an attack appended to honest answers, or padding, looks like.

Near-copies are found exactly, not by MinHash: the shingle sets become a sparse matrix and
one sparse product gives every pair's overlap, fast at the 50-800 prompts of a league.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import Field
from scipy import sparse

from evalharness.audit.config import AuditConfig, Thresholds
from evalharness.audit.findings import CandidateAnswers, Finding, Severity, excerpt, some_ids
from evalharness.audit.text import Token, shingles, tokens, words

DUPLICATES = "duplicate-answers"
BOILERPLATE = "shared-boilerplate"
MAX_GROUPS_SHOWN = 3


class DuplicateThresholds(Thresholds):
    """When reused answers are a warning, and when they are severe (``data/answers.toml``)."""

    shingle_words: int = Field(ge=1)
    similarity: float = Field(gt=0, le=1)
    near_min_words: int = Field(ge=1)
    warning_min_prompts: int = Field(ge=2)
    warning_min_words: int = Field(ge=0)
    severe_share: float = Field(gt=0, le=1)
    severe_min_prompts: int = Field(ge=2)


class BoilerplateThresholds(Thresholds):
    """When a span shared by many answers is a warning, and when it is severe."""

    span_words: int = Field(ge=2)
    warning_share: float = Field(gt=0, le=1)
    severe_share: float = Field(gt=0, le=1)
    severe_span_words: int = Field(ge=2)
    baseline_share: float = Field(gt=0, le=1)
    min_answers: int = Field(ge=2)


@dataclass(frozen=True)
class Group:
    """Answers to different prompts that are identical or near-copies of each other."""

    prompt_ids: tuple[str, ...]
    """The prompts answered this way (one per distinct prompt text)."""
    identical: bool
    """Whether every answer in the group is the same text after normalisation."""
    words: int
    """Length of the group's shortest answer, in words."""
    text: str
    """One of the answers, verbatim."""


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        self.parent[self.find(i)] = self.find(j)


def similar_pairs(sets: Sequence[set[str]], threshold: float) -> list[tuple[int, int]]:
    """Index pairs ``(i, j)``, ``i < j``, whose sets have Jaccard similarity >= ``threshold``.

    >>> similar_pairs([{"a", "b"}, {"a", "b", "c"}, {"x"}], 0.6)
    [(0, 1)]
    """
    vocabulary: dict[str, int] = {}
    rows: list[int] = []
    cols: list[int] = []
    for i, items in enumerate(sets):
        for item in items:
            rows.append(i)
            cols.append(vocabulary.setdefault(item, len(vocabulary)))
    if not rows:
        return []
    matrix = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)),
                               shape=(len(sets), len(vocabulary)))
    overlap = sparse.triu(matrix @ matrix.T, k=1).tocoo()
    sizes = np.array([len(s) for s in sets], dtype=float)
    jaccard = overlap.data / (sizes[overlap.row] + sizes[overlap.col] - overlap.data)
    keep = jaccard >= threshold
    return sorted(zip(overlap.row[keep].tolist(), overlap.col[keep].tolist(), strict=True))


def clusters(sets: Sequence[set[str]], threshold: float) -> list[list[int]]:
    """Indices of ``sets`` joined when similar (single linkage), every index in one cluster.

    >>> clusters([{"a", "b"}, {"x"}, {"a", "b", "c"}, set()], 0.6)
    [[0, 2], [1], [3]]
    """
    joined = _UnionFind(len(sets))
    for i, j in similar_pairs(sets, threshold):
        joined.union(i, j)
    members: dict[int, list[int]] = {}
    for i in range(len(sets)):
        members.setdefault(joined.find(i), []).append(i)
    return list(members.values())


def _prompt_text(inp: CandidateAnswers, prompt_id: str) -> str:
    prompt = inp.prompts.get(prompt_id)
    return " ".join(words("\n".join(m.content for m in prompt.messages))) if prompt else prompt_id


def answer_words(inp: CandidateAnswers) -> dict[str, list[str]]:
    """Each answer's folded words, by prompt id (computed once, read by both checks)."""
    return {prompt_id: words(answer.text) for prompt_id, answer in inp.answers.items()}


def duplicate_groups(inp: CandidateAnswers, t: DuplicateThresholds,
                     folded: dict[str, list[str]] | None = None) -> list[Group]:
    """Groups of identical or near-identical answers to different prompts, largest first.

    Empty answers are left out (an empty answer is another check's finding). Two prompts
    with the same text count once: the same answer to the same question is no reuse.
    ``folded`` is ``answer_words(inp)`` when the caller has it already.
    """
    folded = answer_words(inp) if folded is None else folded
    by_text: dict[str, list[str]] = {}
    for prompt_id, found in folded.items():
        if found:
            by_text.setdefault(" ".join(found), []).append(prompt_id)
    texts = list(by_text)
    sets = [shingles(text.split(), t.shingle_words) if len(text.split()) >= t.near_min_words
            else set() for text in texts]
    groups = [_group(inp, [texts[i] for i in idx], by_text)
              for idx in clusters(sets, t.similarity)
              if sum(len(by_text[texts[i]]) for i in idx) >= 2]  # skip the many singletons
    groups = [g for g in groups if len(g.prompt_ids) >= 2]
    return sorted(groups, key=lambda g: -len(g.prompt_ids))


def _group(inp: CandidateAnswers, texts: list[str], by_text: dict[str, list[str]]) -> Group:
    ids = [prompt_id for text in texts for prompt_id in by_text[text]]
    distinct = list({_prompt_text(inp, i): i for i in reversed(ids)}.values())[::-1]
    return Group(prompt_ids=tuple(distinct), identical=len(texts) == 1,
                 words=min(len(text.split()) for text in texts),
                 text=inp.answers[ids[0]].text)


def _group_severity(group: Group, total: int, t: DuplicateThresholds) -> Severity | None:
    n = len(group.prompt_ids)
    if n >= t.severe_min_prompts and n >= t.severe_share * total:
        return "severe"
    if n >= t.warning_min_prompts and group.words >= t.warning_min_words:
        return "warning"
    return None


def duplicate_answers(inp: CandidateAnswers, config: AuditConfig) -> list[Finding]:
    """Findings on answers reused across prompts (``duplicate-answers``) and on one long
    span shared by most of them (``shared-boilerplate``)."""
    folded = answer_words(inp)
    found = [_duplicates(inp, config.section(DUPLICATES, DuplicateThresholds), folded),
             _boilerplate(inp, config.section(BOILERPLATE, BoilerplateThresholds), folded)]
    return [f for f in found if f is not None]


def _describe(group: Group, total: int) -> str:
    kind = "identical" if group.identical else "near-identical"
    return (f"{len(group.prompt_ids)} of {total} prompts get {kind} answers "
            f"({group.words}+ words)")


def _duplicates(inp: CandidateAnswers, t: DuplicateThresholds,
                folded: dict[str, list[str]]) -> Finding | None:
    total = len(inp.answers)
    flagged = [(g, s) for g in duplicate_groups(inp, t, folded)
               if (s := _group_severity(g, total, t)) is not None]
    if not flagged:
        return None
    top, severity = max(flagged, key=lambda gs: (gs[1] == "severe", len(gs[0].prompt_ids)))
    reused = sum(len(g.prompt_ids) for g, _ in flagged)
    return Finding(
        subject=inp.candidate, check=DUPLICATES, severity=severity,
        summary=(f"one answer is used for {len(top.prompt_ids)} of {total} prompts "
                 f"({len(top.prompt_ids) / total:.0%}); {len(flagged)} group(s) of reused "
                 f"answers cover {reused} prompts"),
        evidence=(*(_describe(g, total) for g, _ in flagged[:MAX_GROUPS_SHOWN]),
                  f"thresholds: near-identical at Jaccard >= {t.similarity} over "
                  f"{t.shingle_words}-word shingles; warning from {t.warning_min_prompts} "
                  f"prompts with answers of {t.warning_min_words}+ words; severe from "
                  f"{t.severe_share:.0%} of the prompts"),
        prompt_ids=some_ids(top.prompt_ids),
        excerpts=tuple(excerpt(g.text) for g, _ in flagged[:MAX_GROUPS_SHOWN]))


def _spans(texts: Iterable[list[str]], size: int) -> list[set[str]]:
    """Each text's shingles of ``size`` words (none for a text shorter than that)."""
    return [shingles(found, size) if len(found) >= size else set() for found in texts]


def _common(sets: Sequence[set[str]], share: float) -> set[str]:
    counts = Counter(item for items in sets for item in items)
    return {item for item, n in counts.items() if n >= share * len(sets)}


def _boilerplate(inp: CandidateAnswers, t: BoilerplateThresholds,
                 folded: dict[str, list[str]]) -> Finding | None:
    distinct = {" ".join(found): pid for pid, found in folded.items() if found}
    if len(distinct) < t.min_answers:
        return None
    texts = {pid: inp.answers[pid].text for pid in distinct.values()}
    spans = _spans((folded[pid] for pid in texts), t.span_words)
    common = _common(spans, t.warning_share) - _excluded(inp, t)
    if not common:
        return None
    carrying = [pid for pid, s in zip(texts, spans, strict=True) if s & common]
    example = texts[carrying[0]]
    span_start, span_end, span_words = _longest_span(tokens(example), common, t.span_words)
    share = len(carrying) / len(texts)
    severe = share >= t.severe_share and span_words >= t.severe_span_words
    return Finding(
        subject=inp.candidate, check=BOILERPLATE, severity="severe" if severe else "warning",
        summary=(f"{len(carrying)} of {len(texts)} distinct answers ({share:.0%}) carry the "
                 f"same {span_words}-word passage, found in no prompt"),
        evidence=(f"thresholds: spans of {t.span_words}+ words in {t.warning_share:.0%} of "
                  f"the distinct answers (warning); severe from {t.severe_share:.0%} with "
                  f"{t.severe_span_words}+ words",),
        prompt_ids=some_ids(carrying),
        excerpts=(excerpt(example, span_start),) if span_end > span_start else ())


def _excluded(inp: CandidateAnswers, t: BoilerplateThresholds) -> set[str]:
    """Spans a candidate may share honestly: the prompts' own text, the baseline's habits."""
    prompt_spans = _spans((words("\n".join(m.content for m in p.messages))
                           for p in inp.prompts.values()), t.span_words)
    excluded = set().union(*prompt_spans) if prompt_spans else set()
    if inp.baseline:
        excluded |= _common(_spans((words(a.text) for a in inp.baseline.values()),
                                   t.span_words), t.baseline_share)
    return excluded


def _longest_span(found: list[Token], common: set[str], size: int) -> tuple[int, int, int]:
    """Start and end (characters) and length (words) of the longest run of common shingles."""
    best = (0, 0, 0)
    run_start = None
    for i in range(len(found) - size + 2):
        inside = i <= len(found) - size and " ".join(
            t.word for t in found[i:i + size]) in common
        if inside and run_start is None:
            run_start = i
        if not inside and run_start is not None:
            n_words = i - run_start + size - 1
            if n_words > best[2]:
                best = (found[run_start].start, found[i + size - 2].end, n_words)
            run_start = None
    return best
