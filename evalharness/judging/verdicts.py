"""Pure parsers: a judge's text (and log-probs) -> a verdict on its scale.

A judge's scale is data (``verdicts`` in its ``config.yaml``): each label has a regular
expression and the position it makes win (``A``, ``B`` or ``tie``). A text is valid when the
patterns find exactly one label in it; no label, or two different labels, is invalid and
never read as a tie.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from evalharness.schema import Winner

TokenAlternatives = Sequence[tuple[str, float]]
"""Top log-probs at one generated position: ``(token, natural-log probability)`` pairs."""


@dataclass(frozen=True)
class VerdictRule:
    """One label of a judge's scale."""

    label: str
    """The label as stored in ``Judgment.verdict`` (``A``, ``A>>B``, ...)."""
    winner: Winner
    """Which position the label makes win."""
    pattern: re.Pattern[str]
    """Finds the label in the judge's text."""


@dataclass(frozen=True)
class Verdict:
    """What a text says: a label and its winner, or why none could be read."""

    label: str | None
    winner: Winner | None
    error: str | None = None

    @property
    def valid(self) -> bool:
        """Whether a label was read."""
        return self.label is not None


def rules(spec: Iterable[tuple[str, Winner, str]]) -> tuple[VerdictRule, ...]:
    """Compile ``(label, winner, regex)`` triples (for tests and doctests)."""
    return tuple(VerdictRule(label, winner, re.compile(regex)) for label, winner, regex in spec)


def parse_verdict(text: str, scale: Sequence[VerdictRule]) -> Verdict:
    """Read the one verdict in ``text``.

    >>> binary = rules([("A", "A", r"\\[\\[A\\]\\]"), ("B", "B", r"\\[\\[B\\]\\]"),
    ...                 ("tie", "tie", r"\\[\\[(?:C|tie)\\]\\]")])
    >>> parse_verdict("A is more precise. Verdict: [[A]]", binary)
    Verdict(label='A', winner='A', error=None)
    >>> parse_verdict("Both are fine [[tie]]", binary).winner
    'tie'
    >>> parse_verdict("I like both.", binary).error
    'no verdict found: none of the patterns for A, B, tie matched'
    >>> parse_verdict("[[A]] ... no wait, [[B]]", binary).error
    'conflicting verdicts: A, B'
    >>> parse_verdict("[[A]] final: [[A]]", binary).label
    'A'
    """
    found: dict[int, str] = {}
    for rule in scale:
        for match in rule.pattern.finditer(text):
            found.setdefault(match.start(), rule.label)
    labels = list(dict.fromkeys(found[position] for position in sorted(found)))
    if not labels:
        names = ", ".join(rule.label for rule in scale)
        return Verdict(None, None, f"no verdict found: none of the patterns for {names} matched")
    if len(labels) > 1:
        return Verdict(None, None, f"conflicting verdicts: {', '.join(labels)}")
    winner = next(rule.winner for rule in scale if rule.label == labels[0])
    return Verdict(labels[0], winner)


@dataclass(frozen=True)
class LogprobTokens:
    """Which verdict tokens stand for each side (compared after stripping spaces, case kept:
    a published judge may answer ``m`` for the first output and ``M`` for the second), and
    which generated token carries the preference."""

    a: frozenset[str]
    b: frozenset[str]
    tie: frozenset[str] = frozenset()
    position: int | None = None
    """``None``: the first generated token that *is* a verdict token. A number: that generated
    token (0 = the first), read from its top alternatives whatever token was sampled there,
    as AlpacaEval's weighted judges read the first token."""

    @classmethod
    def of(cls, a: Iterable[str], b: Iterable[str], tie: Iterable[str] = (),
           position: int | None = None) -> LogprobTokens:
        """Build from plain lists."""
        return cls(frozenset(t.strip() for t in a), frozenset(t.strip() for t in b),
                   frozenset(t.strip() for t in tie), position)

    def side(self, token: str) -> Winner | None:
        """The side ``token`` votes for, if it is a verdict token."""
        token = token.strip()
        if token in self.a:
            return "A"
        if token in self.b:
            return "B"
        if token in self.tie:
            return "tie"
        return None


def soft_preference(top: TokenAlternatives, tokens: LogprobTokens) -> float | None:
    """P(A better) at one position: verdict-token mass renormalised, ties counting half.

    Tokens that are not verdict tokens are ignored; several spellings of one side (``A``,
    `` A``) add up. ``None`` when no verdict token is among the alternatives.

    >>> t = LogprobTokens.of(["A"], ["B"], ["C"])
    >>> top = [("A", math.log(0.6)), ("B", math.log(0.2)), ("x", math.log(0.2))]
    >>> round(soft_preference(top, t), 6)
    0.75
    >>> round(soft_preference([("A", math.log(.3)), (" A", math.log(.1)), ("C", math.log(.2)),
    ...                        ("B", math.log(.4))], t), 4)
    0.5
    >>> soft_preference([("hmm", -0.1)], t) is None
    True
    """
    mass = {"A": 0.0, "B": 0.0, "tie": 0.0}
    for token, logprob in top:
        side = tokens.side(token)
        if side is not None and math.isfinite(logprob):
            mass[side] += math.exp(logprob)
    total = mass["A"] + mass["B"] + mass["tie"]
    if total <= 0.0:
        return None
    return (mass["A"] + 0.5 * mass["tie"]) / total


def weight_from_positions(positions: Sequence[tuple[str, TokenAlternatives]],
                          tokens: LogprobTokens) -> float | None:
    """P(A better) at the generated token ``tokens.position`` names.

    ``positions`` holds, for each generated token, the token and its top alternatives. With
    no position set, the preference is read at the first generated token that is a verdict
    token; with a position, at that token from its alternatives, so a judge that sampled
    something else there (``The``) still gives the preference its alternatives hold.

    >>> t = LogprobTokens.of(["A"], ["B"])
    >>> gen = [("Verdict", [("Verdict", 0.0)]), (":", [(":", 0.0)]),
    ...        (" B", [(" B", math.log(0.7)), (" A", math.log(0.3))])]
    >>> round(weight_from_positions(gen, t), 6)
    0.3
    >>> weight_from_positions([("maybe", [("maybe", 0.0)])], t) is None
    True
    >>> first = LogprobTokens.of(["m"], ["M"], position=0)
    >>> sampled_other = [("The", [("The", math.log(0.5)), ("M", math.log(0.3)),
    ...                           ("m", math.log(0.1))])]
    >>> round(weight_from_positions(sampled_other, first), 6)
    0.25
    >>> weight_from_positions(sampled_other, LogprobTokens.of(["m"], ["M"], position=1)) is None
    True
    """
    if tokens.position is not None:
        if tokens.position >= len(positions):
            return None
        return soft_preference(positions[tokens.position][1], tokens)
    for token, top in positions:
        if tokens.side(token) is not None:
            return soft_preference(top, tokens)
    return None


def verdict_from_weight(weight: float, scale: Sequence[VerdictRule]) -> Verdict:
    """The hard verdict a soft preference stands for: the likelier side's first label.

    Used when a judge reads its preference at a fixed token and the text holds no label:
    the verdict tokens' probabilities are the judge's answer there.

    >>> mm = rules([("m", "A", "^m$"), ("M", "B", "^M$")])
    >>> verdict_from_weight(0.25, mm)
    Verdict(label='M', winner='B', error=None)
    >>> verdict_from_weight(0.5, mm)
    Verdict(label='tie', winner='tie', error=None)
    """
    side: Winner = "A" if weight > 0.5 else "B" if weight < 0.5 else "tie"
    # A dead heat on a scale without a tie label is still a tie (the side's own name).
    label = next((rule.label for rule in scale if rule.winner == side), side)
    return Verdict(label, side)
