"""How much an answer repeats itself: the measure behind ``repetition-loop``.

A loop of a k-word phrase repeated r times makes (r - 1) / r of its n-grams repeats and each
n-gram of the phrase occur r times; honest prose repeats a few set phrases two or three
times. ``repetition`` measures both, plus back-to-back copies of a unit and the compression
ratio (for loops of characters); ``loops`` applies the ``[repetition-loop]`` thresholds.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from typing import NamedTuple

import numpy as np

from evalharness.audit.config import Thresholds
from evalharness.audit.text import plain

# Ideographic and kana characters are words of their own: Chinese and Japanese are written
# without spaces, so a loop in them is a loop of characters.
CJK = r"\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(rf"[{CJK}]|[^\W_{CJK}]+")


class LoopThresholds(Thresholds):
    """``[repetition-loop]`` in ``data/quality.toml``."""

    ngram: int
    min_words: int
    min_repeats: int
    min_repeated_share: float
    max_period: int
    min_run_words: int
    max_compression: float
    min_bytes: int
    min_share: float
    severe_share: float


class Repetition(NamedTuple):
    """How repetitive one answer is (words: see ``tokens``)."""

    n_words: int
    """Words in the answer."""
    repeated_share: float
    """Share of the answer's word n-grams that repeat an earlier one (0: none repeats)."""
    top_count: int
    """Occurrences of the most frequent n-gram."""
    run_words: int
    """Words in the longest stretch where one unit of words repeats back to back."""
    run_period: int
    """Words in that unit (0: no word follows a copy of itself)."""
    start: int
    """Where in ``plain(text)`` that stretch starts (or, without one, the most frequent
    n-gram): about where the loop is in the answer."""
    compression: float
    """zlib-compressed size over UTF-8 size: about 0.5 for prose, near 0 for a loop."""

    @property
    def run_repeats(self) -> float:
        """How many times the unit repeats in the stretch."""
        return self.run_words / self.run_period if self.run_period else 0.0


def _positioned(text: str) -> list[tuple[str, int]]:
    return [(m.group(), m.start()) for m in _TOKEN.finditer(plain(text))
            if not m.group().isdigit()]


def tokens(text: str) -> list[str]:
    """The words a loop is counted in: casefolded, each CJK character a word of its own, and
    numbers left out (a loop that numbers its lines is still a loop; counting to twenty is
    not one).

    >>> tokens("1. Hello, World! 2. 你好")
    ['hello', 'world', '你', '好']
    """
    return [word for word, _ in _positioned(text)]


def _longest_true_run(flags: np.ndarray) -> tuple[int, int]:
    """Length and start of the longest run of ``True`` in ``flags`` ((0, 0) without one)."""
    if not flags.any():
        return 0, 0
    edges = np.diff(np.concatenate(([0], flags.astype(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    best = int(np.argmax(ends - starts))
    return int(ends[best] - starts[best]), int(starts[best])


def repetition(text: str, ngram: int = 4, max_period: int = 40) -> Repetition:
    """Measure how much of ``text`` repeats itself: in word ``ngram``-grams, in back-to-back
    copies of a unit of up to ``max_period`` words, and in bytes.

    A loop of a k-word phrase repeated r times makes (r - 1) / r of its n-grams repeats and
    each n-gram of the phrase occur r times; honest prose repeats a few set phrases ("on the
    other hand"), two or three times, a few percent of its n-grams, and never the same
    sentence four times in a row.

    >>> r = repetition("Sure thing. " + "Apply today. " * 10)
    >>> round(r.repeated_share, 2), r.top_count, r.run_period, r.run_words, r.start
    (0.79, 9, 2, 20, 12)
    >>> repetition("A polytechnic teaches applied subjects and offers degrees.")[1:5]
    (0.0, 1, 0, 0)
    """
    found = _positioned(text)
    toks = [word for word, _ in found]
    grams = [" ".join(toks[i:i + ngram]) for i in range(len(toks) - ngram + 1)]
    counts = Counter(grams)
    top, top_count = counts.most_common(1)[0] if counts else ("", 0)
    repeated = (len(grams) - len(counts)) / len(grams) if grams else 0.0
    start = found[grams.index(top)][1] if top else 0
    index: dict[str, int] = {}
    ids = np.array([index.setdefault(word, len(index)) for word in toks], dtype=np.int64)
    copied, period, run_words = 0, 0, 0
    for p in range(1, min(max_period, len(toks) // 2) + 1):
        # ids[i] == ids[i + p] along a stretch of L: tokens i .. i + L + p - 1 repeat a
        # p-word unit back to back, L of them copies of the words p before. The unit with the
        # most copied words wins (the shortest, on a tie: a unit of 4 also repeats every 8).
        length, first = _longest_true_run(ids[p:] == ids[:-p])
        if length > copied:
            copied, period, run_words, start = length, p, length + p, found[first][1]
    raw = text.encode("utf-8")
    compression = len(zlib.compress(raw, 9)) / len(raw) if raw else 1.0
    return Repetition(len(toks), repeated, top_count, run_words, period, start, compression)


def loops(text: str, t: LoopThresholds) -> bool:
    """Whether ``text`` is caught in a repetition loop, by ``t``'s thresholds.

    Three ways in: a unit of words repeated back to back ``min_repeats`` times or more over
    ``min_run_words`` words (whatever came before it); many n-grams repeating and one of them
    many times (a loop whose copies drift a little, as a small model's do); or a long text
    that compresses to almost nothing (a loop of characters or punctuation, without words).
    """
    return looping(text, t) is not None


def looping(text: str, t: LoopThresholds) -> Repetition | None:
    """The measure of ``text``'s loop when it is caught in one (see ``loops``), else ``None``."""
    r = repetition(text, t.ngram, t.max_period)
    if r.run_words >= t.min_run_words and r.run_repeats >= t.min_repeats:
        return r
    if r.n_words >= t.min_words and r.top_count >= t.min_repeats \
            and r.repeated_share >= t.min_repeated_share:
        return r
    if len(text.encode("utf-8")) >= t.min_bytes and r.compression <= t.max_compression:
        return r
    return None
