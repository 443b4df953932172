"""Which judgments make a run's headline, when a run holds several raters' verdicts.

A run's ``judgments.jsonl`` may hold, beside its judge's verdicts, human labels (judge
``human:<name>``, from ``evalharness label``), repeated judgments of the noise floor (judge
``<name>#<k>``, from ``judge RUN --repeats``) and the verdicts of several jurors. Pooled, they
would count one game several times and mix opinions as if they were one. So the headline is
read from one source:

- a **jury** (``manifest.jury``, two judges or more): their combined verdicts
  (``jury.jury_judgments``: majority of hard verdicts, or the mean of soft preferences when
  every juror gives one);
- else **the run's judge** (``manifest.judge``) when its verdicts are there;
- else every judge's games except human labels and repeats (a judgments file made
  elsewhere), pooled as before.

Human labels and repeats are never in the headline: agreement (``agreement.py``) and the
noise floor read them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from evalharness.rater_names import is_primary
from evalharness.schema import Judgment
from evalharness.stats.jury import JuryRule, default_rule, jury_judgments


@dataclass(frozen=True)
class Headline:
    """The judgments a run's statistics are computed on, and where they came from."""

    judgments: list[Judgment]
    """The games of the headline (a jury's combined games, or one judge's)."""
    source: str
    """In words: ``pairwise-binary``, ``jury of a, b (majority)`` or ``every judge``."""
    jurors: tuple[str, ...] = ()
    """The jury's members, when it is a jury."""
    rule: JuryRule | None = None
    """How the jury combined its verdicts."""


def headline(judgments: Iterable[Judgment], judge: str | None = None,
             jury: Sequence[str] = ()) -> Headline:
    """The judgments of a run's headline (see the module docstring).

    >>> def game(key, judge, winner):
    ...     return Judgment(key=key, prompt_id="p", judge=judge, first="a", second="b",
    ...                     verdict=winner, winner=winner)
    >>> js = [game("1", "j", "A"), game("2", "human:ann", "B"), game("3", "j#1", "B")]
    >>> h = headline(js, judge="j")
    >>> [j.winner for j in h.judgments], h.source
    (['A'], 'j')
    """
    found = list(judgments)
    if len(jury) > 1:
        rule = default_rule(found, jury)
        combined = jury_judgments(found, jury, rule=rule)
        return Headline(combined, f"jury of {', '.join(jury)} ({rule})", tuple(jury), rule)
    names = {j.judge for j in found}
    if judge is not None and judge in names:
        return Headline([j for j in found if j.judge == judge], judge)
    primary = [j for j in found if is_primary(j.judge)]
    judges = sorted({j.judge for j in primary})
    return Headline(primary, judges[0] if len(judges) == 1 else "every judge")
