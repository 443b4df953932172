"""Agreement between raters, checked against hand counts and scikit-learn's kappa."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from evalharness.errors import UserError
from evalharness.schema import Judgment
from evalharness.stats.agreement import (
    LABELS,
    agreement_table,
    cohen_kappa,
    pair_agreement,
    present_raters,
    rater_consistency,
    rater_kind,
)
from evalharness.stats.intervals import bootstrap_weights, percentile_interval
from evalharness.stats.summary import to_jsonable

metrics = pytest.importorskip("sklearn.metrics")


def vote(judge: str, pid: str, first: str, second: str, winner: str | None,
         **extra: object) -> Judgment:
    return Judgment(key=f"{judge}|{pid}|{first}", prompt_id=pid, judge=judge, first=first,
                    second=second, verdict=winner, winner=winner, **extra)


def side(winner: str, candidate_first: bool) -> str:
    """The candidate's outcome, written out independently of the module."""
    if winner == "tie":
        return "tie"
    return "win" if (winner == "A") == candidate_first else "loss"


# Ten games, each (judge's verdict, human's verdict) from the candidate's side, shown to both
# in the same order; the judge also judged the other order of each prompt.
CANDIDATE_SIDE = [("win", "win")] * 4 + [("win", "tie"), ("win", "loss"), ("tie", "tie"),
                                         ("loss", "win"), ("loss", "loss"), ("loss", "loss")]


def as_winner(outcome: str, candidate_first: bool) -> str:
    if outcome == "tie":
        return "tie"
    return "A" if (outcome == "win") == candidate_first else "B"


def ten_games() -> list[Judgment]:
    out = []
    for i, (judge, human) in enumerate(CANDIDATE_SIDE):
        first = i % 2 == 0  # the human saw the candidate first on even prompts
        order = ("ft", "base") if first else ("base", "ft")
        out.append(vote("j", f"p{i}", *order, as_winner(judge, first)))
        out.append(vote("j", f"p{i}", *order[::-1], as_winner(judge, not first)))
        out.append(vote("human:ana", f"p{i}", *order, as_winner(human, first)))
    return out


def test_figures_equal_the_hand_counts_and_sklearn() -> None:
    a = pair_agreement(ten_games(), "j", "human:ana", "base", n_boot=200)
    # Rows judge, columns human: win (4 win, 1 tie, 1 loss), tie (0, 1, 0), loss (1, 0, 2).
    assert a.games.confusion == ((4, 1, 1), (0, 1, 0), (1, 0, 2))
    assert (a.games.n, a.games.n_agree, a.games.agreement) == (10, 7, 0.7)
    # Without ties: 8 items where neither said tie, 6 of them equal.
    assert (a.games.n_without_ties, a.games.agreement_without_ties) == (8, 0.75)
    # p_o = 0.7, p_e = (6·5 + 1·2 + 3·3) / 100 = 0.41.
    assert a.games.kappa == pytest.approx((0.7 - 0.41) / (1 - 0.41))
    x, y = zip(*CANDIDATE_SIDE, strict=True)
    assert a.games.kappa == pytest.approx(metrics.cohen_kappa_score(x, y, labels=list(LABELS)))
    assert a.games.kappa_interval.contains(a.games.kappa)
    assert a.games.kappa_note is None
    assert (a.games.n_x, a.games.n_y) == (20, 10)  # the judge has both orders of each prompt
    # Per prompt the judge's two orders agree with each other, so it is the same table.
    assert a.prompts.confusion == a.games.confusion
    assert (a.x_kind, a.y_kind, a.x_invalid, a.y_invalid) == ("judge", "human", 0, 0)
    assert (a.x_consistency.share, a.x_consistency.n_both_orders) == (1.0, 10)
    assert (a.y_consistency.n_both_orders, math.isnan(a.y_consistency.share)) == (0, True)


def test_raters_who_saw_opposite_orders_compare_per_prompt_only() -> None:
    js = [vote("j", "p1", "ft", "base", "A"),  # judge: candidate wins, shown first
          vote("human:ana", "p1", "base", "ft", "B")]  # human: candidate wins, shown second
    a = pair_agreement(js, "j", "human:ana", "base", n_boot=10)
    assert (a.games.n, a.games.n_x, a.games.n_y) == (0, 1, 1)
    assert math.isnan(a.games.agreement) and math.isnan(a.games.kappa)
    assert a.games.kappa_note == "no item was rated validly by both raters"
    assert (a.prompts.n, a.prompts.agreement) == (1, 1.0)
    assert a.prompts.confusion[0][0] == 1


def test_prompt_outcome_is_the_mean_over_orders() -> None:
    # The judge split p1 (a win and a loss: a tie per prompt) and won p2 once, tied once.
    js = [vote("j", "p1", "ft", "base", "A"), vote("j", "p1", "base", "ft", "A"),
          vote("j", "p2", "ft", "base", "A"), vote("j", "p2", "base", "ft", "tie"),
          vote("human:ana", "p1", "ft", "base", "tie"),
          vote("human:ana", "p2", "base", "ft", "tie")]
    a = pair_agreement(js, "j", "human:ana", "base", n_boot=10)
    assert a.prompts.confusion == ((0, 1, 0), (0, 1, 0), (0, 0, 0))
    # Per game: p1 judge win vs human tie; p2 (baseline first) judge tie vs human tie.
    assert a.games.confusion == ((0, 1, 0), (0, 1, 0), (0, 0, 0))
    assert (a.x_consistency.n_both_orders, a.x_consistency.n_consistent) == (2, 0)


def random_run(seed: int, n_prompts: int = 60) -> list[Judgment]:
    """Judges j and k on both orders, two people on one random order each, some invalid,
    two candidates, three categories."""
    rng = random.Random(seed)
    out = []
    for i in range(n_prompts):
        category = ("code", "math", "chat")[i % 3]
        for cand in ("ft1", "ft2"):
            truth = rng.choice(["win", "win", "tie", "loss"])
            for rater in ("j", "k", "human:ana", "human:bo"):
                firsts = [True, False] if rater in ("j", "k") else [rng.random() < 0.5]
                for first in firsts:
                    outcome = truth if rng.random() < 0.7 else rng.choice(LABELS)
                    winner = None if rng.random() < 0.05 else as_winner(outcome, first)
                    order = (cand, "base") if first else ("base", cand)
                    extra = {} if rater.startswith("human:") else {"category": category}
                    out.append(vote(rater, f"p{i}", *order, winner, **extra))
    return out


def expected(js: list[Judgment], x: str, y: str, keep: object = None
             ) -> tuple[list[str], list[str], list[str], list[str]]:
    """Per-game and per-prompt label lists, computed by brute force."""
    gx, gy, px, py, _ = expected_games(js, x, y, keep)
    return gx, gy, px, py


def expected_games(js: list[Judgment], x: str, y: str, keep: object = None
                   ) -> tuple[list[str], list[str], list[str], list[str], list[str]]:
    """``expected`` and the prompt id of each common game."""
    def outcomes(rater: str) -> dict[tuple[str, str, bool], str]:
        out = {}
        for j in js:
            if j.judge == rater and j.winner is not None:
                first = j.first != "base"
                cand = j.first if first else j.second
                if keep is None or cand == keep:
                    out[(j.prompt_id, cand, first)] = side(j.winner, first)
        return out

    def per_prompt(games: dict[tuple[str, str, bool], str]) -> dict[tuple[str, str], str]:
        score = {"win": 1.0, "tie": 0.5, "loss": 0.0}
        sums: dict[tuple[str, str], list[float]] = {}
        for (pid, cand, _), label in games.items():
            sums.setdefault((pid, cand), []).append(score[label])
        return {k: "win" if np.mean(v) > 0.5 else "loss" if np.mean(v) < 0.5 else "tie"
                for k, v in sums.items()}

    gx, gy = outcomes(x), outcomes(y)
    px, py = per_prompt(gx), per_prompt(gy)
    games = sorted(gx.keys() & gy.keys())
    prompts = sorted(px.keys() & py.keys())
    return ([gx[g] for g in games], [gy[g] for g in games],
            [px[p] for p in prompts], [py[p] for p in prompts], [g[0] for g in games])


@pytest.mark.parametrize(("x", "y"), [("j", "human:ana"), ("j", "k"), ("human:ana", "human:bo")])
def test_kappa_and_agreement_equal_sklearn_on_a_random_run(x: str, y: str) -> None:
    js = random_run(seed=3)
    a = pair_agreement(js, x, y, "base", n_boot=100)
    gx, gy, px, py = expected(js, x, y)
    for figures, lx, ly in ((a.games, gx, gy), (a.prompts, px, py)):
        assert figures.n == len(lx) > 30
        assert figures.kappa == pytest.approx(
            metrics.cohen_kappa_score(lx, ly, labels=list(LABELS)))
        assert np.array(figures.confusion).tolist() == metrics.confusion_matrix(
            lx, ly, labels=list(LABELS)).tolist()
        assert figures.agreement == pytest.approx(np.mean(np.array(lx) == np.array(ly)))
        decided = [(u, v) for u, v in zip(lx, ly, strict=True) if "tie" not in (u, v)]
        assert figures.n_without_ties == len(decided)
        assert figures.agreement_without_ties == pytest.approx(
            np.mean([u == v for u, v in decided]))
    # The breakdown per candidate is the same computation on each candidate's items.
    assert [g.group for g in a.by_candidate] == ["ft1", "ft2"]
    for group in a.by_candidate:
        gx, gy, px, py = expected(js, x, y, keep=group.group)
        assert group.games.n == len(gx)
        assert group.games.kappa == pytest.approx(metrics.cohen_kappa_score(gx, gy))
        assert group.prompts.kappa == pytest.approx(metrics.cohen_kappa_score(px, py))
    assert sum(g.games.n for g in a.by_candidate) == a.games.n


def test_categories_come_from_whichever_rater_has_one() -> None:
    js = random_run(seed=5, n_prompts=30)
    a = pair_agreement(js, "j", "human:ana", "base", n_boot=50)
    assert [g.group for g in a.by_category] == ["chat", "code", "math"]
    assert sum(g.prompts.n for g in a.by_category) == a.prompts.n
    # People's labels carry no category here: human vs human has only "default".
    h = pair_agreement(js, "human:ana", "human:bo", "base", n_boot=50)
    assert [g.group for g in h.by_category] == ["default"]


def test_bootstrap_interval_resamples_prompts() -> None:
    js = random_run(seed=7, n_prompts=40)
    a = pair_agreement(js, "j", "human:ana", "base", n_boot=300, seed=11)
    gx, gy, _, _, game_prompts = expected_games(js, "j", "human:ana")
    # The same bootstrap, written as an explicit loop: each round repeats every prompt's
    # games as often as the round drew the prompt.
    prompts = sorted(set(game_prompts))
    assert len(prompts) < len(gx)  # some prompts hold two common games (two candidates)
    weights = bootstrap_weights(len(prompts), 300, 11)
    rounds = []
    for row in weights:
        xs: list[str] = []
        ys: list[str] = []
        for pid, u, v in zip(game_prompts, gx, gy, strict=True):
            xs += [u] * int(row[prompts.index(pid)])
            ys += [v] * int(row[prompts.index(pid)])
        with np.errstate(invalid="ignore", divide="ignore"):
            rounds.append(metrics.cohen_kappa_score(xs, ys, labels=list(LABELS)))
    low, high = percentile_interval(np.array(rounds, dtype=np.float64))
    assert a.games.kappa_interval.low == pytest.approx(low)
    assert a.games.kappa_interval.high == pytest.approx(high)
    assert a.games.kappa_interval.low < a.games.kappa < a.games.kappa_interval.high
    again = pair_agreement(js, "j", "human:ana", "base", n_boot=300, seed=11)
    other = pair_agreement(js, "j", "human:ana", "base", n_boot=300, seed=12)
    assert again.games.kappa_interval == a.games.kappa_interval
    assert other.games.kappa_interval != a.games.kappa_interval


def test_one_class_only_gives_nan_kappa_with_a_reason() -> None:
    js = [vote(r, f"p{i}", "ft", "base", "A") for r in ("j", "human:ana") for i in range(5)]
    a = pair_agreement(js, "j", "human:ana", "base", n_boot=50)
    assert (a.games.n, a.games.agreement, a.games.agreement_without_ties) == (5, 1.0, 1.0)
    assert math.isnan(a.games.kappa) and math.isnan(a.games.kappa_interval.low)
    assert a.games.kappa_note is not None and "same verdict (win)" in a.games.kappa_note
    assert math.isnan(cohen_kappa([[0, 0, 0], [0, 0, 0], [0, 0, 0]]))
    # One rater with one class but the other with several: defined, and 0 here (sklearn).
    mixed = [*js[:5], *(vote("human:ana", f"p{i}", "ft", "base", w)
                        for i, w in enumerate("AABBA"))]
    k = pair_agreement(mixed, "j", "human:ana", "base", n_boot=50).games.kappa
    assert k == pytest.approx(metrics.cohen_kappa_score(["win"] * 5, list("wwllw"))) == 0.0


def test_all_ties_leave_agreement_without_ties_undefined() -> None:
    js = [vote(r, "p1", "ft", "base", w) for r, w in (("j", "tie"), ("human:ana", "A"))]
    a = pair_agreement(js, "j", "human:ana", "base", n_boot=10)
    assert (a.games.n, a.games.agreement, a.games.n_without_ties) == (1, 0.0, 0)
    assert math.isnan(a.games.agreement_without_ties)


def test_invalid_verdicts_are_excluded_and_counted() -> None:
    js = ten_games()
    js += [vote("human:ana", "p10", "ft", "base", None, error="skipped"),
           vote("j", "p10", "ft", "base", "A"),
           vote("j", "p11", "ft", "base", None, error="HTTP 400")]
    a = pair_agreement(js, "j", "human:ana", "base", n_boot=10)
    assert (a.games.n, a.x_invalid, a.y_invalid) == (10, 1, 1)
    # A game re-judged after an invalid verdict counts once, with its valid verdict.
    rejudged = [*js, vote("j", "p11", "ft", "base", "B"),
                vote("human:ana", "p11", "ft", "base", "B")]
    b = pair_agreement(rejudged, "j", "human:ana", "base", n_boot=10)
    assert (b.games.n, b.games.n_agree, b.x_invalid) == (11, 8, 0)
    # A later valid verdict on a game replaces an earlier one; a later invalid one does not.
    relabelled = [*rejudged, vote("human:ana", "p11", "ft", "base", "A"),
                  vote("human:ana", "p11", "ft", "base", None)]
    c = pair_agreement(relabelled, "j", "human:ana", "base", n_boot=10)
    assert (c.games.n, c.games.n_agree, c.y_invalid) == (11, 7, 1)


def test_soft_only_verdicts_count_as_what_they_round_to() -> None:
    js = [Judgment(key="s", prompt_id="p1", judge="j", first="base", second="ft",
                   verdict=None, weight_a=0.2),  # P(base better) 0.2: the candidate wins
          vote("human:ana", "p1", "base", "ft", "B")]
    assert pair_agreement(js, "j", "human:ana", "base", n_boot=10).games.n_agree == 1


def test_pairs_without_the_baseline_are_read_from_the_alphabetically_first_model() -> None:
    js = [vote("j", "p1", "zeta", "alpha", "B"), vote("human:ana", "p1", "alpha", "zeta", "A")]
    a = pair_agreement(js, "j", "human:ana", "base", n_boot=10)
    assert a.prompts.confusion[0][0] == 1
    assert [g.group for g in a.by_candidate] == ["alpha vs zeta"]


def test_table_covers_every_pair_judges_first() -> None:
    js = random_run(seed=1, n_prompts=12)
    assert present_raters(js) == ["j", "k", "human:ana", "human:bo"]
    table = agreement_table(js, "base", n_boot=20)
    assert [(p.x, p.y) for p in table] == [
        ("j", "k"), ("j", "human:ana"), ("j", "human:bo"), ("k", "human:ana"),
        ("k", "human:bo"), ("human:ana", "human:bo")]
    assert [(p.x_kind, p.y_kind) for p in table][1] == ("judge", "human")
    one = pair_agreement(js, "j", "human:bo", "base", n_boot=20)
    assert to_jsonable(table[2]) == to_jsonable(one)
    chosen = agreement_table(js, "base", ["human:bo", "j", "j"], n_boot=20)
    assert [(p.x, p.y) for p in chosen] == [("human:bo", "j")]
    with pytest.raises(UserError, match="no judgments by 'jj'"):
        agreement_table(js, "base", ["j", "jj"])
    assert rater_kind("human:ana") == "human" and rater_kind("j#2") == "judge"


def test_no_judgments_give_an_empty_comparison() -> None:
    a = pair_agreement([], "j", "human:ana", "base", n_boot=10)
    assert (a.games.n, a.prompts.n, a.by_candidate, a.by_category) == (0, 0, (), ())
    assert math.isnan(a.prompts.kappa) and math.isnan(a.x_consistency.share)
    assert to_jsonable(a)["games"]["kappa"] is None  # NaN is written as null


def test_consistency_counts_only_prompts_judged_in_both_orders() -> None:
    js = [*ten_games(), vote("j", "p99", "ft", "base", "B")]
    c = rater_consistency(js, "j", "base")
    assert (c.n_both_orders, c.n_consistent, c.share) == (10, 10, 1.0)
