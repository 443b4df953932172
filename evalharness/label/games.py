"""The games a person labels, and the order they are offered in.

A game is one prompt with one candidate's answer and the baseline's: the unit the run's judge
scored (twice, once in each order). People label the games the judge played, so the two can be
compared game by game (``evalharness agree``); a run that was never judged offers every
candidate against the baseline on every prompt both answered.

The plan (the order games are offered) depends on the seed only, never on the annotator: every
annotator of a run sees the same games, so human-vs-human agreement has games in common.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, cast, get_args

from evalharness.errors import UserError
from evalharness.prompts import load_run_prompts
from evalharness.rater_names import is_primary
from evalharness.schema import Answer, Judgment, Manifest, Prompt
from evalharness.store import ANSWERS, JUDGMENTS, RunDir

Plan = Literal["random", "per-candidate", "disagreements"]
PLANS: tuple[str, ...] = get_args(Plan)


@dataclass(frozen=True)
class Game:
    """One game to label: a prompt, a candidate's answer and the baseline's answer."""

    prompt: Prompt
    candidate: Answer
    baseline: Answer
    disputed: bool = False
    """The run's judge contradicted itself across the two orders (or jurors each other), or
    gave an invalid verdict."""

    @property
    def prompt_id(self) -> str:
        """The prompt's id."""
        return self.candidate.prompt_id


@dataclass(frozen=True)
class RunGames:
    """Everything a labelling session needs from a run directory, read once."""

    run: RunDir
    manifest: Manifest
    baseline: str
    games: tuple[Game, ...]
    """Every game, in prompt order then candidate order."""
    judged: bool
    """Whether the games are the pairs the run's judge played (else: all answered pairs)."""
    prompt_note: str | None
    """Why prompt texts are missing, when they are (the prompt set moved)."""


def load_games(run: RunDir) -> RunGames:
    """Read a run directory's games.

    Raises:
        UserError: not a run directory, no answers, no baseline, or no game with both answers.
    """
    manifest = run.read_manifest()
    answers = run.log(ANSWERS, Answer).read()
    if not answers:
        raise UserError(f"{run.path}: the run has no answers ({ANSWERS} is missing or empty), "
                        "so there is nothing to label. Fix: label a run made by `evalharness "
                        "compare` or `league` (or finish this one: rerun its command).")
    baseline = _baseline(run, manifest, answers)
    judgments = run.log(JUDGMENTS, Judgment).read()
    machine = machine_judgments(judgments, manifest)
    prompts, note = load_run_prompts(manifest, answers, judgments)
    by_answer = {(a.prompt_id, a.model): a for a in reversed(answers)}  # first one wins
    judged = _judged_pairs(machine, baseline)
    pairs = judged or _answered_pairs(manifest, answers, baseline)
    disputed = disputed_pairs(machine, baseline)
    prompt_of = {p.id: p for p in prompts}
    games = tuple(
        Game(prompt_of.get(pid) or _stand_in(pid), by_answer[(pid, cand)],
             by_answer[(pid, baseline)], (pid, cand) in disputed)
        for pid, cand in _in_order(pairs, prompts, manifest)
        if (pid, cand) in by_answer and (pid, baseline) in by_answer
    )
    if not games:
        raise UserError(f"{run.path}: no prompt has answers from both the baseline "
                        f"{baseline!r} and a candidate, so there is no game to label. Fix: "
                        "finish the run (rerun its command) so every model answers.")
    return RunGames(run, manifest, baseline, games, bool(judged), note)


def _baseline(run: RunDir, manifest: Manifest, answers: Sequence[Answer]) -> str:
    if manifest.baseline is None:
        raise UserError(f"{run.manifest_path}: the run names no baseline, and a game is a "
                        "candidate against the baseline. Fix: label a run made by `evalharness "
                        "compare` or `league`, or import with --baseline NAME.")
    if not any(a.model == manifest.baseline for a in answers):
        raise UserError(f"{run.path}: the baseline {manifest.baseline!r} has no answers in "
                        f"{ANSWERS}. Fix: finish the run (rerun its command) first.")
    return manifest.baseline


def machine_judgments(judgments: Iterable[Judgment], manifest: Manifest) -> list[Judgment]:
    """The verdicts people are compared with: the run's jury's jurors, else its judge; when
    the run names neither (or they judged nothing here), every judge's but people's."""
    named = set(manifest.jury) or ({manifest.judge} if manifest.judge else set())
    machine = [j for j in judgments if is_primary(j.judge)]
    return [j for j in machine if j.judge in named] or machine


def _judged_pairs(judgments: Iterable[Judgment], baseline: str) -> set[tuple[str, str]]:
    # Candidate-vs-candidate games (a league's round robin) are not offered: a person's
    # label is compared with the judge on the games every win rate rests on.
    return {(j.prompt_id, j.second if j.first == baseline else j.first)
            for j in judgments if baseline in (j.first, j.second)}


def _answered_pairs(manifest: Manifest, answers: Iterable[Answer],
                    baseline: str) -> set[tuple[str, str]]:
    answered = {(a.prompt_id, a.model) for a in answers}
    models = [c.name for c in manifest.candidates] or sorted({m for _, m in answered})
    return {(pid, m) for pid, m in answered if m != baseline and m in models}


def _in_order(pairs: set[tuple[str, str]], prompts: Sequence[Prompt],
              manifest: Manifest) -> list[tuple[str, str]]:
    prompt_rank = {p.id: i for i, p in enumerate(prompts)}
    model_rank = {c.name: i for i, c in enumerate(manifest.candidates)}
    return sorted(pairs, key=lambda p: (prompt_rank.get(p[0], len(prompt_rank)), p[0],
                                        model_rank.get(p[1], len(model_rank)), p[1]))


def _stand_in(prompt_id: str) -> Prompt:
    return Prompt.model_construct(id=prompt_id, messages=(), reference=None, category="default")


def _winner_model(j: Judgment) -> str | None:
    """The model a judgment prefers, ``"tie"``, or ``None`` when it is invalid."""
    winner = j.winner
    if winner is None and j.weight_a is not None:
        winner = "A" if j.weight_a > 0.5 else "B" if j.weight_a < 0.5 else "tie"
    return {"A": j.first, "B": j.second, "tie": "tie", None: None}[winner]


def disputed_pairs(judgments: Iterable[Judgment], baseline: str) -> set[tuple[str, str]]:
    """(prompt, candidate) pairs whose verdicts disagree (the two orders, or two jurors) or
    are invalid. A game judged again (``--retry-invalid``) counts its last valid verdict.

    >>> def j(first, second, winner):
    ...     return Judgment(key=first + second, prompt_id="p", judge="j", first=first,
    ...                     second=second, verdict=winner, winner=winner)
    >>> sorted(disputed_pairs([j("c", "b", "A"), j("b", "c", "B")], "b"))  # agree: c wins
    []
    >>> sorted(disputed_pairs([j("c", "b", "A"), j("b", "c", "A")], "b"))  # position bias
    [('p', 'c')]
    >>> sorted(disputed_pairs([j("c", "b", None)], "b"))  # invalid
    [('p', 'c')]
    >>> sorted(disputed_pairs([j("c", "b", None), j("c", "b", "A")], "b"))  # re-judged
    []
    """
    verdicts: dict[tuple[str, str, str, str], str | None] = {}
    for j in judgments:
        if baseline not in (j.first, j.second):
            continue
        game = (j.judge, j.prompt_id, j.first, j.second)
        if j.valid or game not in verdicts:
            verdicts[game] = _winner_model(j)
    outcomes: dict[tuple[str, str], set[str | None]] = {}
    for (_, pid, first, second), outcome in verdicts.items():
        pair = (pid, second if first == baseline else first)
        outcomes.setdefault(pair, set()).add(outcome)
    return {pair for pair, seen in outcomes.items() if None in seen or len(seen) > 1}


def check_plan(name: str) -> Plan:
    """``name`` as a sampling plan.

    Raises:
        UserError: not one of ``PLANS``.
    """
    if name not in PLANS:
        raise UserError(f"unknown sampling plan {name!r}. Fix: use --plan "
                        f"{', '.join(PLANS[:-1])} or {PLANS[-1]}.")
    return cast(Plan, name)


def plan_games(games: Sequence[Game], plan: str, seed: int,
               limit: int | None = None) -> tuple[Game, ...]:
    """The order games are offered in, cut to ``limit``.

    ``random``: shuffled. ``per-candidate``: round robin over the candidates (each shuffled),
    so every candidate has labels early. ``disagreements``: the games the run's judge
    disputed first (see ``disputed_pairs``), then the rest, each part shuffled.

    Raises:
        UserError: an unknown plan or a limit below 1.
    """
    chosen = check_plan(plan)
    if limit is not None and limit < 1:
        raise UserError(f"--limit {limit}: at least one game must be offered. Fix: pass "
                        "--limit 1 or more, or leave it out to offer every game.")
    rng = random.Random(seed)
    if chosen == "per-candidate":
        ordered = _round_robin(games, rng)
    elif chosen == "disagreements":
        first = _shuffled([g for g in games if g.disputed], rng)
        ordered = first + _shuffled([g for g in games if not g.disputed], rng)
    else:
        ordered = _shuffled(list(games), rng)
    return tuple(ordered[:limit])


def _shuffled(games: list[Game], rng: random.Random) -> list[Game]:
    rng.shuffle(games)
    return games


def _round_robin(games: Sequence[Game], rng: random.Random) -> list[Game]:
    queues: dict[str, list[Game]] = {}
    for game in games:
        queues.setdefault(game.candidate.model, []).append(game)
    lanes = [_shuffled(queue, rng) for queue in queues.values()]
    return [lane[i] for i in range(max(map(len, lanes), default=0))
            for lane in lanes if i < len(lane)]
