"""The noise floor's repeats: which games are asked again, under which key, by which judge.

``judge RUN --repeats K --repeat-sample N`` asks N (candidate, prompt) pairs again, both
orders, K times: K x 2N calls. Repeat k is its own judge, ``<judge>#k``
(``stats.noise.repeat_judge``), whose configuration differs only in what should not matter:
its fences carry other ids (``fence_salt``), and a judge that samples gets the seed k. A
repeat's key is the game's key and k, so a rerun resumes the repeats like any game, and
raising K later asks only the new repeats.

The sample is the N eligible pairs (both orders valid) with the smallest hash of their
prompt and models: the same run gives the same sample on every rerun, and judging more games
later only adds pairs to the ranking, so the repeats already on disk stay in the sample.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from evalharness.errors import UserError
from evalharness.judging.config import JudgeConfig
from evalharness.keys import content_key
from evalharness.schema import Judgment
from evalharness.stats.noise import repeat_judge

if TYPE_CHECKING:
    from evalharness.judging.stage import PlannedGame

DEFAULT_SAMPLE = 25
"""(candidate, prompt) pairs re-asked when ``--repeat-sample`` is not given."""

Identity = tuple[str, str, str]
"""(key, first, second): what makes a record one game's."""


def repeat_key(key: str, number: int) -> str:
    """The key of repeat ``number`` of the game keyed ``key``.

    >>> repeat_key("k", 1) != repeat_key("k", 2) != "k"
    True
    """
    return content_key({"game": key, "repeat": number})


def repeat_config(judge: JudgeConfig, number: int) -> JudgeConfig:
    """Repeat ``number`` of ``judge``: its own name and fence ids, and a seed when it samples
    (a greedy judge's only source of variation is the prompt's wording)."""
    return dataclasses.replace(judge, name=repeat_judge(judge.name, number),
                               fence_salt=f"repeat-{number}",
                               seed=number if judge.temperature > 0 else None)


def check_repeats(judge: JudgeConfig, repeats: int, sample: int) -> None:
    """Refuse repeats that cannot measure anything.

    Raises:
        UserError: a negative count, an empty sample, or an offline judge (deterministic:
            its repeats would agree by construction).
    """
    if repeats < 0 or sample < 1:
        raise UserError(f"--repeats must be >= 0 and --repeat-sample >= 1, not {repeats} and "
                        f"{sample}. Fix: e.g. --repeats 3 --repeat-sample {DEFAULT_SAMPLE}.")
    if repeats and judge.kind != "llm":
        raise UserError(f"judge '{judge.name}' is offline and deterministic: its repeats would "
                        "agree with it by construction, so they measure nothing. Fix: use "
                        "--repeats with an LLM judge.")


def sample_games(games: Sequence[PlannedGame], current: Mapping[Identity, Judgment],
                 size: int) -> list[PlannedGame]:
    """Both orders of the ``size`` (pair, prompt) units whose games are all valid on disk
    (``current``: each game's counting record), chosen by hash (module docstring)."""
    units: dict[tuple[str, str, str], list[PlannedGame]] = {}
    for game in games:
        units.setdefault((*game.pair, game.prompt.id), []).append(game)
    eligible = [unit for unit, members in units.items() if len(members) == 2 and all(
        (record := current.get(g.identity)) is not None and record.valid for g in members)]
    eligible.sort(key=lambda unit: content_key(["repeat-sample", *unit]))
    return [game for unit in eligible[:size] for game in units[unit]]


def repeat_games(games: Sequence[PlannedGame], number: int) -> list[PlannedGame]:
    """``games`` as repeat ``number`` asks them: the same texts under the repeat's key."""
    return [dataclasses.replace(g, key=repeat_key(g.key, number)) for g in games]
