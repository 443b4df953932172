"""How far two raters (judges or people) agree on the games both of them rated.

A *rater* is whatever wrote a judgment's ``judge`` field: an LLM judge (``gpt-4o``), a
person (``human:ana``, see ``rater_kind``) or a judge's repeated pass (``gpt-4o#2``). Two
raters are compared on the same question, asked from one side: every verdict is turned into
``win``, ``tie`` or ``loss`` of the *candidate*, the model of the pair that is not the
``baseline`` (of a pair without the baseline, the alphabetically first model). So a rater
who saw (candidate, baseline) and one who saw (baseline, candidate) are compared on "did the
candidate win?", whatever position it held. Verdicts are hard labels (``games.hard_label``:
a soft-only game counts as what its preference rounds to).

Two units, each reported by every ``PairAgreement`` (and each of its breakdowns):

- **game** (``PairAgreement.games``): one game = one prompt, one pair, one *order*. Items
  are the games both raters judged in the same order. A person usually labels one random
  order per game; an evalharness judge has both, so every labelled game has a match.
- **prompt** (``PairAgreement.prompts``): one prompt of one pair, each rater's verdict being
  its combined outcome over the orders it judged: the mean score of its valid games (win 1,
  tie 0.5, loss 0), above 0.5 a win, below a loss, exactly 0.5 a tie (a tie, or one win and
  one loss across the two orders). This is the outcome the win rate counts.

Figures of each unit (``Agreement``): ``n`` items rated validly by both; agreement *with
ties* (three classes, share of items with equal verdicts); agreement *without ties* (the
MT-Bench convention: only items where neither rater said tie); Cohen's kappa (three classes,
unweighted, ``cohen_kappa``) with a percentile bootstrap interval that resamples *prompts*
(the games of a prompt share its answers, so they are not independent); and the 3x3
confusion matrix (rows rater x, columns rater y, in ``LABELS`` order).

A rater's repeated verdicts on one game: the last valid one in input order counts (the
records are append-only, so a later verdict corrects an earlier one, and a re-judged invalid
game counts once). A game with no valid verdict from a rater is left out and counted in
``x_invalid`` / ``y_invalid``. **Both-order consistency** (``Consistency``) is a rater's own
figure: the share of its prompts judged validly in both orders whose two verdicts agree from
the candidate's side, over every such prompt it rated, not only the common ones.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np
import numpy.typing as npt

from evalharness.errors import UserError
from evalharness.rater_names import RaterKind, rater_kind
from evalharness.schema import Judgment
from evalharness.stats.games import FloatArray, IntArray, group_index, hard_label
from evalharness.stats.intervals import (
    NAN_INTERVAL,
    Interval,
    bootstrap_weights,
    percentile_interval,
)

Label = Literal["win", "tie", "loss"]
Unit = Literal["game", "prompt"]

LABELS: tuple[Label, Label, Label] = ("win", "tie", "loss")
"""The candidate's outcome classes, in the order of the confusion matrix's rows and columns."""
_SCORE = {"A": 1.0, "tie": 0.5, "B": 0.0}
"""Position A's score for each hard label."""

Confusion = tuple[tuple[int, ...], ...]
"""A 3x3 matrix of counts, rows rater x, columns rater y, both in ``LABELS`` order."""
Pair = tuple[str, str, str]
"""(prompt id, candidate, opponent): one prompt of one pair of models."""
Game = tuple[str, str, str, bool]
"""(prompt id, candidate, opponent, candidate shown first): one game."""
Item = TypeVar("Item", Pair, Game)


def present_raters(judgments: Iterable[Judgment]) -> list[str]:
    """Every rater present: judges sorted by name, then people sorted by name (so a pair of
    ``agreement_table`` reads judge vs human).

    >>> from evalharness.schema import Judgment
    >>> js = [Judgment(key=k, prompt_id="p", judge=k, first="a", second="b", verdict=None)
    ...       for k in ("human:bo", "zz", "aa")]
    >>> present_raters(js)
    ['aa', 'zz', 'human:bo']
    """
    return sorted({j.judge for j in judgments}, key=lambda r: (rater_kind(r) == "human", r))


def cohen_kappa(confusion: npt.ArrayLike) -> float:
    """Cohen's kappa of a square confusion matrix; NaN when it is undefined.

    ``p_o`` is the share on the diagonal (observed agreement), ``p_e = sum_k row_k * col_k /
    N²`` the agreement two raters with these label shares would reach by chance, and
    ``kappa = (p_o - p_e) / (1 - p_e)``: 1 is perfect agreement, 0 no better than chance.
    When both raters gave every item the same one label, ``p_e = 1`` and kappa is 0/0.

    Worked example (rows rater x, columns rater y: win, tie, loss; N = 10):
    ``p_o = (4 + 1 + 2) / 10 = 0.7``; row sums 6, 1, 3 and column sums 5, 2, 3 give
    ``p_e = (6·5 + 1·2 + 3·3) / 100 = 0.41``; ``kappa = 0.29 / 0.59 = 0.4915...``

    >>> round(cohen_kappa([[4, 1, 1], [0, 1, 0], [1, 0, 2]]), 6)
    0.491525
    >>> cohen_kappa([[5, 0, 0], [0, 0, 0], [0, 0, 0]])
    nan
    """
    return float(_kappas(np.asarray(confusion, dtype=np.float64)[None])[0])


def _kappas(confusions: FloatArray) -> FloatArray:
    """Kappa of each matrix of a (rounds x k x k) stack (the bootstrap's every round at once)."""
    n = confusions.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        p_o = np.trace(confusions, axis1=1, axis2=2) / n
        p_e = (confusions.sum(axis=2) * confusions.sum(axis=1)).sum(axis=1) / (n * n)
        kappa: FloatArray = np.where(1.0 - p_e > 1e-12, (p_o - p_e) / (1.0 - p_e), np.nan)
    return kappa


@dataclass(frozen=True)
class Agreement:
    """Two raters' agreement on one unit (``game`` or ``prompt``) of their common items."""

    unit: Unit
    """What an item is: a game in one order, or a prompt's combined outcome."""
    n: int
    """Items both raters rated validly."""
    n_x: int
    """Items rater x rated validly (common or not)."""
    n_y: int
    """Items rater y rated validly (common or not)."""
    n_agree: int
    """Common items with the same verdict (win, tie or loss)."""
    agreement: float
    """``n_agree / n``: agreement with ties, three classes (NaN when ``n`` is 0)."""
    n_without_ties: int
    """Common items where neither rater said tie."""
    agreement_without_ties: float
    """Share of those where both named the same winner (MT-Bench's figure; NaN if none)."""
    kappa: float
    """Cohen's kappa, three classes, unweighted (NaN when undefined, see ``kappa_note``)."""
    kappa_interval: Interval
    """Percentile bootstrap interval of kappa, resampling prompts (NaN rounds ignored)."""
    kappa_note: str | None
    """Why kappa is NaN, when it is."""
    confusion: Confusion
    """Counts of (x's verdict, y's verdict); rows x, columns y, both in ``LABELS`` order."""


@dataclass(frozen=True)
class GroupAgreement:
    """Agreement on one candidate's (or one category's) items only."""

    group: str
    """The candidate (``"a vs b"`` for a pair without the baseline) or the category."""
    games: Agreement
    """Per game, matched orders."""
    prompts: Agreement
    """Per prompt, combined outcomes."""


@dataclass(frozen=True)
class Consistency:
    """How often a rater gave the same verdict on a prompt in both orders."""

    rater: str
    """The rater."""
    n_both_orders: int
    """Prompts (of one pair) it judged validly in both orders."""
    n_consistent: int
    """Of those, prompts whose two verdicts agree from the candidate's side."""
    share: float
    """``n_consistent / n_both_orders`` (NaN when it judged no prompt in both orders)."""


@dataclass(frozen=True)
class PairAgreement:
    """Everything known of how two raters agree."""

    x: str
    """Rater x: the confusion matrices' rows."""
    y: str
    """Rater y: the columns."""
    x_kind: RaterKind
    """``judge`` or ``human``."""
    y_kind: RaterKind
    """``judge`` or ``human``."""
    games: Agreement
    """Per game: games both judged in the same order."""
    prompts: Agreement
    """Per prompt: each rater's combined outcome over the orders it judged."""
    by_candidate: tuple[GroupAgreement, ...]
    """The same figures per candidate (sorted)."""
    by_category: tuple[GroupAgreement, ...]
    """The same figures per prompt category (sorted)."""
    x_consistency: Consistency
    """Rater x's both-order consistency."""
    y_consistency: Consistency
    """Rater y's both-order consistency."""
    x_invalid: int
    """Games rater x judged with no valid verdict: left out of every figure."""
    y_invalid: int
    """Games rater y judged with no valid verdict."""
    confidence: float
    """Level of ``kappa_interval``."""


@dataclass(frozen=True)
class _Rated:
    """One rater's valid verdicts, from the candidate's side (0 win, 1 tie, 2 loss)."""

    games: dict[Game, int]
    prompts: dict[Pair, int]
    categories: dict[Pair, str]
    n_invalid: int
    consistency: Consistency


def _orient(j: Judgment, baseline: str) -> tuple[str, str, bool]:
    """(candidate, opponent, candidate shown first) of a judgment's game."""
    if j.second == baseline or (j.first != baseline and j.first < j.second):
        return j.first, j.second, True
    return j.second, j.first, False


def _label(score: float) -> int:
    return 0 if score > 0.5 else 2 if score < 0.5 else 1


def _rate(rater: str, judgments: Sequence[Judgment], baseline: str) -> _Rated:
    latest: dict[Game, Judgment] = {}
    for j in judgments:
        candidate, opponent, first = _orient(j, baseline)
        game = (j.prompt_id, candidate, opponent, first)
        if j.valid or game not in latest or not latest[game].valid:
            latest[game] = j
    games: dict[Game, int] = {}
    scores: dict[Pair, list[float]] = {}
    categories: dict[Pair, str] = {}
    for game, j in latest.items():
        label = hard_label(j)
        if label is None:
            continue
        score = _SCORE[label] if game[3] else 1.0 - _SCORE[label]
        games[game] = _label(score)
        scores.setdefault(game[:3], []).append(score)
        categories[game[:3]] = j.category
    both = [s for s in scores.values() if len(s) == 2]
    n_consistent = sum(_label(s[0]) == _label(s[1]) for s in both)
    return _Rated(
        games=games,
        prompts={pair: _label(sum(s) / len(s)) for pair, s in scores.items()},
        categories=categories,
        n_invalid=len(latest) - len(games),
        consistency=Consistency(rater, len(both), n_consistent,
                                n_consistent / len(both) if both else float("nan")),
    )


def _by_rater(judgments: Iterable[Judgment]) -> dict[str, list[Judgment]]:
    grouped: dict[str, list[Judgment]] = {}
    for j in judgments:
        grouped.setdefault(j.judge, []).append(j)
    return grouped


def rater_consistency(judgments: Iterable[Judgment], rater: str, baseline: str) -> Consistency:
    """Both-order consistency of ``rater`` over every prompt it judged in both orders.

    >>> from evalharness.schema import Judgment
    >>> def game(pid, first, second, winner):
    ...     return Judgment(key=pid + first, prompt_id=pid, judge="j", first=first,
    ...                     second=second, verdict=winner, winner=winner)
    >>> rater_consistency([game("p1", "ft", "base", "A"), game("p1", "base", "ft", "B"),
    ...                    game("p2", "ft", "base", "A"), game("p2", "base", "ft", "A"),
    ...                    game("p3", "ft", "base", "A")], "j", "base")
    Consistency(rater='j', n_both_orders=2, n_consistent=1, share=0.5)
    """
    return _rate(rater, _by_rater(judgments).get(rater, []), baseline).consistency


def _figures(unit: Unit, x: Mapping[Item, int], y: Mapping[Item, int], n_boot: int,
             confidence: float, seed: int) -> Agreement:
    common = sorted(x.keys() & y.keys())
    xs = np.array([x[item] for item in common], dtype=np.int64)
    ys = np.array([y[item] for item in common], dtype=np.int64)
    confusion = np.bincount(xs * 3 + ys, minlength=9).reshape(3, 3)
    n = len(common)
    n_agree = int(np.trace(confusion))
    decided = (xs != 1) & (ys != 1)
    n_decided = int(decided.sum())
    kappa, note, interval = float("nan"), None, NAN_INTERVAL
    if n == 0:
        note = "no item was rated validly by both raters"
    else:
        kappa = cohen_kappa(confusion)
        if np.isnan(kappa):
            note = (f"both raters gave every item the same verdict ({LABELS[int(xs[0])]}): "
                    "chance agreement is 1, so kappa is 0/0")
        else:
            prompts = [item[0] for item in common]
            interval = _kappa_interval(prompts, xs, ys, n_boot, confidence, seed)
    return Agreement(
        unit=unit, n=n, n_x=len(x), n_y=len(y), n_agree=n_agree,
        agreement=n_agree / n if n else float("nan"),
        n_without_ties=n_decided,
        agreement_without_ties=(float((xs[decided] == ys[decided]).mean()) if n_decided
                                else float("nan")),
        kappa=kappa, kappa_interval=interval, kappa_note=note,
        confusion=tuple(tuple(int(c) for c in row) for row in confusion),
    )


def _kappa_interval(prompt_ids: Sequence[str], xs: IntArray, ys: IntArray, n_boot: int,
                    confidence: float, seed: int) -> Interval:
    """Bootstrap over prompts: each round's confusion matrix is the weighted sum of the
    prompts' own confusion counts, so all rounds are one matrix product."""
    prompts, index = group_index(prompt_ids)
    per_prompt = np.bincount(index * 9 + xs * 3 + ys, minlength=len(prompts) * 9)
    weights = bootstrap_weights(len(prompts), n_boot, seed).astype(np.float64)
    rounds = weights @ per_prompt.reshape(len(prompts), 9).astype(np.float64)
    return percentile_interval(_kappas(rounds.reshape(n_boot, 3, 3)), confidence)


def _group_of(pair: Pair, baseline: str) -> str:
    return pair[1] if pair[2] == baseline else f"{pair[1]} vs {pair[2]}"


def _compare(x: _Rated, y: _Rated, keep: set[Pair] | None, n_boot: int, confidence: float,
             seed: int) -> tuple[Agreement, Agreement]:
    """Per-game and per-prompt figures on the prompts ``keep`` (``None``: all)."""
    games = [{g: v for g, v in r.games.items() if keep is None or g[:3] in keep}
             for r in (x, y)]
    prompts = [{p: v for p, v in r.prompts.items() if keep is None or p in keep}
               for r in (x, y)]
    return (_figures("game", games[0], games[1], n_boot, confidence, seed),
            _figures("prompt", prompts[0], prompts[1], n_boot, confidence, seed))


def _pair(x_name: str, y_name: str, x: _Rated, y: _Rated, baseline: str, n_boot: int,
          confidence: float, seed: int) -> PairAgreement:
    by_candidate: dict[str, set[Pair]] = {}
    by_category: dict[str, set[Pair]] = {}
    for pair in x.prompts.keys() | y.prompts.keys():
        by_candidate.setdefault(_group_of(pair, baseline), set()).add(pair)
        # A person's label may lack the category a judge copied from the prompt set.
        found = [c for c in (x.categories.get(pair), y.categories.get(pair)) if c]
        category = next((c for c in found if c != "default"), "default")
        by_category.setdefault(category, set()).add(pair)

    def breakdown(groups: dict[str, set[Pair]]) -> tuple[GroupAgreement, ...]:
        return tuple(GroupAgreement(g, *_compare(x, y, groups[g], n_boot, confidence, seed))
                     for g in sorted(groups))

    games, prompts = _compare(x, y, None, n_boot, confidence, seed)
    return PairAgreement(
        x=x_name, y=y_name, x_kind=rater_kind(x_name), y_kind=rater_kind(y_name),
        games=games, prompts=prompts,
        by_candidate=breakdown(by_candidate), by_category=breakdown(by_category),
        x_consistency=x.consistency, y_consistency=y.consistency,
        x_invalid=x.n_invalid, y_invalid=y.n_invalid, confidence=confidence,
    )


def pair_agreement(
    judgments: Iterable[Judgment],
    x: str,
    y: str,
    baseline: str,
    *,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairAgreement:
    """Agreement of rater ``x`` with rater ``y`` on the games both rated.

    Args:
        judgments: judgments of any raters (others are ignored).
        x: the rater of the confusion matrices' rows.
        y: the rater of the columns.
        baseline: the model every verdict is read against (the candidate is the other one).
        n_boot: bootstrap rounds of the kappa interval.
        confidence: level of the kappa interval.
        seed: bootstrap seed (the same seed gives the same intervals).

    >>> from evalharness.schema import Judgment
    >>> def vote(judge, pid, first, second, winner):
    ...     return Judgment(key=judge + pid + first, prompt_id=pid, judge=judge, first=first,
    ...                     second=second, verdict=winner, winner=winner)
    >>> js = [vote("j", "p1", "ft", "base", "A"), vote("j", "p1", "base", "ft", "B"),
    ...       vote("j", "p2", "ft", "base", "tie"), vote("j", "p2", "base", "ft", "A"),
    ...       vote("human:ana", "p1", "base", "ft", "B"),
    ...       vote("human:ana", "p2", "ft", "base", "B")]
    >>> a = pair_agreement(js, "j", "human:ana", "base", n_boot=50)
    >>> a.games.n, a.games.agreement, a.games.confusion
    (2, 0.5, ((1, 0, 0), (0, 0, 1), (0, 0, 0)))
    >>> a.prompts.agreement, a.x_consistency.share
    (1.0, 0.5)
    """
    grouped = _by_rater(judgments)
    rx, ry = (_rate(r, grouped.get(r, []), baseline) for r in (x, y))
    return _pair(x, y, rx, ry, baseline, n_boot, confidence, seed)


def agreement_table(
    judgments: Iterable[Judgment],
    baseline: str,
    raters: Sequence[str] | None = None,
    *,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> list[PairAgreement]:
    """``pair_agreement`` for every pair of ``raters`` (default: all present, judges first
    then people, each sorted by name): judge vs human, judge vs judge, human vs human.

    A pair with nothing in common is kept, with ``n = 0`` and NaN figures, so a table shows
    that it could not be compared.

    Raises:
        UserError: a rater named in ``raters`` has no judgment (a typo would otherwise
            show as a row of NaN).
    """
    judgments = list(judgments)
    grouped = _by_rater(judgments)
    present = present_raters(judgments)
    names = list(dict.fromkeys(raters)) if raters is not None else present
    unknown = [r for r in names if r not in grouped]
    if unknown:
        raise UserError(
            f"no judgments by {', '.join(map(repr, unknown))}; the raters present are "
            f"{', '.join(map(repr, present)) or 'none'}. Fix: name raters from that list."
        )
    rated = {r: _rate(r, grouped.get(r, []), baseline) for r in names}
    return [_pair(a, b, rated[a], rated[b], baseline, n_boot, confidence, seed)
            for a, b in itertools.combinations(names, 2)]

