"""A jury: several judges' verdicts on the same games combined into one judge's verdicts.

Each juror's judgments stay as they are (its own win rates, its own agreement); the jury is
one more rater, whose judgments ``jury_judgments`` derives from theirs, one per game
(prompt, model in position A, model in position B), so every statistic works on it as on
any judge. Two rules (``default_rule`` picks one):

- **majority** (``majority_winner``): each juror's hard verdict (``games.hard_label``; a
  soft-only verdict counts as what its preference rounds to) is one vote for ``A``, ``B`` or
  ``tie``. A label named by *more than half* of the jurors who voted wins; with no strict
  majority the jury says ``tie`` (1 A / 1 B, or A / tie with two jurors: the jurors do not
  agree that one answer is better, and a tie scores the game at the half an undecided jury
  means). The jury's judgment is hard only (``weight_a`` is ``None``).
- **mean** (``mean_preference``): the mean of the jurors' soft preferences P(A better)
  (``weight_a``; a juror with only a hard verdict on this game counts it as 1, 0.5 or 0).
  The winner is what the mean says: above 0.5 ``A``, below ``B``, exactly 0.5 (after
  rounding to 12 decimals, so 0.7 and 0.3 make a tie) ``tie``; ``weight_a`` is the mean.
  Soft preferences keep each juror's confidence, so it is the default when every juror has
  them; mixing in hard verdicts would weigh them as certainties, so otherwise majority is.

Invalid verdicts do not vote. A game on which no juror gave a valid verdict is invalid for
the jury: ``winner`` and ``weight_a`` are ``None`` and ``error`` says why. A game only
some jurors judged is decided by those present; ``raw`` records the count and each vote,
e.g. ``jury of 2/3 (majority): a=A, b=B, c=missing``. A juror's repeated verdicts on one
game: its last valid one counts (records are append-only; a re-judged game counts once).

The jury's judgments cost nothing themselves (``usage`` and ``cost_usd`` are zero): their
jurors' judgments carry the tokens, and counting them again would double the bill.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

from evalharness.errors import UserError
from evalharness.keys import content_key
from evalharness.schema import Judgment, Winner
from evalharness.stats.games import hard_label, position_a_score

JuryRule = Literal["majority", "mean"]
"""How a jury combines its jurors' verdicts."""
RULES: tuple[JuryRule, ...] = ("majority", "mean")

_GameId = tuple[str, str, str]
"""(prompt id, model in position A, model in position B)."""


def majority_winner(votes: Sequence[Winner]) -> Winner:
    """The label more than half of ``votes`` name, else ``tie``.

    >>> majority_winner(["A", "A", "B"]), majority_winner(["A", "B"])
    ('A', 'tie')
    >>> majority_winner(["A", "tie"]), majority_winner(["B", "B", "A", "tie"])
    ('tie', 'tie')
    """
    labels: tuple[Winner, ...] = ("A", "B", "tie")
    return next((label for label in labels if 2 * votes.count(label) > len(votes)), "tie")


def mean_preference(preferences: Sequence[float]) -> tuple[Winner, float]:
    """The winner and the mean of ``preferences`` (each P(A better)), rounded to 12 decimals
    so that preferences which cancel on paper make a tie in floating point too.

    >>> mean_preference([0.9, 0.4])
    ('A', 0.65)
    >>> mean_preference([0.7, 0.3]), mean_preference([0.2, 0.5, 0.5])
    (('tie', 0.5), ('B', 0.4))
    """
    mean = round(sum(preferences) / len(preferences), 12)
    return ("A" if mean > 0.5 else "B" if mean < 0.5 else "tie"), mean


def default_rule(judgments: Iterable[Judgment], judges: Sequence[str]) -> JuryRule:
    """``mean`` when every valid verdict of the ``judges`` has a soft preference, else
    ``majority``.

    >>> from evalharness.schema import Judgment
    >>> soft = Judgment(key="k", prompt_id="p", judge="a", first="x", second="y",
    ...                 verdict=None, weight_a=0.8)
    >>> hard = soft.model_copy(update={"judge": "b", "winner": "A", "weight_a": None})
    >>> default_rule([soft], ["a"]), default_rule([soft, hard], ["a", "b"])
    ('mean', 'majority')
    """
    jurors = set(judges)
    valid = [j for j in judgments if j.judge in jurors and j.valid]
    return "mean" if valid and all(j.weight_a is not None for j in valid) else "majority"


def _check(judges: Sequence[str], name: str, rule: str, present: set[str]) -> None:
    problems = []
    if not judges:
        problems.append("a jury needs at least one judge")
    if len(set(judges)) != len(judges):
        problems.append(f"a judge is named twice in {list(judges)}")
    if name in judges:
        problems.append(f"the jury's name {name!r} is one of its jurors")
    if rule not in RULES:
        problems.append(f"unknown jury rule {rule!r} (known: {', '.join(RULES)})")
    missing = [j for j in judges if j not in present]
    if missing:
        problems.append(f"no judgments by {', '.join(map(repr, missing))} (judges present: "
                        f"{', '.join(map(repr, sorted(present))) or 'none'})")
    if problems:
        raise UserError("cannot form the jury: " + "; ".join(problems)
                        + ". Fix: name each judge of the run once, and a rule of "
                        + " or ".join(RULES) + ".")


def _vote(j: Judgment | None, rule: JuryRule) -> str:
    if j is None:
        return "missing"
    if not j.valid:
        return "invalid"
    if rule == "mean":
        return f"{position_a_score(j, 'soft'):.3g}"
    return str(hard_label(j))


def _combine(game: _GameId, ballots: dict[str, Judgment], judges: Sequence[str], name: str,
             rule: JuryRule) -> Judgment:
    cast = [ballots.get(judge) for judge in judges]
    valid = [j for j in cast if j is not None and j.valid]
    winner: Winner | None = None
    weight_a: float | None = None
    if valid and rule == "majority":
        winner = majority_winner([label for j in valid if (label := hard_label(j))])
    elif valid:
        prefs = [p for j in valid if (p := position_a_score(j, "soft")) is not None]
        winner, weight_a = mean_preference(prefs)
    votes = ", ".join(f"{judge}={_vote(j, rule)}" for judge, j in zip(judges, cast, strict=True))
    raw = f"jury of {len(valid)}/{len(judges)} ({rule}): {votes}"
    present = [j for j in cast if j is not None]
    return Judgment(
        # Each juror's verdict is in the key, so a juror re-judged under the same key (a
        # retried invalid game) gives the jury a new key too.
        key=content_key({"jury": name, "rule": rule, "jurors": {
            judge: None if j is None else [j.key, j.winner, j.weight_a]
            for judge, j in zip(judges, cast, strict=True)}}),
        prompt_id=game[0], judge=name, first=game[1], second=game[2],
        verdict=winner, winner=winner, weight_a=weight_a,
        first_length=next((j.first_length for j in present if j.first_length is not None),
                          None),
        second_length=next((j.second_length for j in present if j.second_length is not None),
                           None),
        category=next((j.category for j in present if j.category != "default"), "default"),
        raw=raw,
        error=None if valid else f"every juror's verdict was invalid or missing: {votes}",
    )


def jury_judgments(
    judgments: Iterable[Judgment],
    judges: Sequence[str],
    *,
    name: str = "jury",
    rule: JuryRule = "majority",
) -> list[Judgment]:
    """One judgment by the jury ``name`` for every game any of ``judges`` judged.

    Games come in the order of their first judgment in ``judgments``.

    Args:
        judgments: judgments of any judges (those not in the jury are ignored).
        judges: the jurors, in the order ``raw`` lists their votes.
        name: the jury's judge name.
        rule: ``majority`` or ``mean`` (see the module docstring; ``default_rule``).

    Raises:
        UserError: no jurors, a juror named twice or without any judgment, the jury named
            as one of its jurors, or an unknown rule.

    >>> from evalharness.schema import Judgment
    >>> def vote(judge, winner):
    ...     return Judgment(key=judge, prompt_id="p1", judge=judge, first="ft",
    ...                     second="base", verdict=winner, winner=winner)
    >>> jury = jury_judgments([vote("a", "A"), vote("b", "B"), vote("c", "A")],
    ...                       ["a", "b", "c"])
    >>> jury[0].winner, jury[0].raw
    ('A', 'jury of 3/3 (majority): a=A, b=B, c=A')
    """
    judgments = list(judgments)
    _check(judges, name, rule, {j.judge for j in judgments})
    jurors = set(judges)
    ballots: dict[_GameId, dict[str, Judgment]] = {}
    for j in judgments:
        if j.judge not in jurors:
            continue
        game = ballots.setdefault((j.prompt_id, j.first, j.second), {})
        earlier = game.get(j.judge)
        if j.valid or earlier is None or not earlier.valid:
            game[j.judge] = j
    return [_combine(game, cast, judges, name, rule) for game, cast in ballots.items()]
