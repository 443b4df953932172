"""Statistics that tell the truth: pure numpy/scipy functions over judgments.

Entry points (the rest of the package calls these):

- ``summarize(judgments, baseline)`` -> ``StatsSummary``: everything ``evalharness stats``
  shows (head to head per candidate with Holm, judge bias, length control, Bradley-Terry
  league, paired adapter comparisons, optional perplexity paradox and hyperparameter effects).
- ``head_to_head(judgments, candidate, baseline)`` -> ``HeadToHead``.
- ``league(judgments, baseline)`` -> ``League`` (Bradley-Terry with bootstrap intervals).
- ``perplexity_paradox(scores, perplexity)`` -> ``Paradox``.
- ``prompts_needed(win_rate)`` / ``detectable_win_rate(n)``: power planning.
- ``read_hyperparameters(folder)`` and ``hyperparameter_effects(...)``.

The unit of evidence is the prompt: a prompt's score is the mean of its valid games (win 1,
tie 0.5, loss 0), intervals resample prompts, tests count prompts. Invalid judgments are
counted and never scored as ties.
"""

from __future__ import annotations

from evalharness.stats.bias import JudgeBias, PositionBias, judge_bias, position_bias
from evalharness.stats.bradley_terry import (
    Battles,
    League,
    Standing,
    battles_from_judgments,
    fit_bradley_terry,
    league,
    league_from_battles,
)
from evalharness.stats.games import PairGames, PromptScores, pair_games, prompt_scores
from evalharness.stats.headtohead import HeadToHead, head_to_head, head_to_head_from_scores
from evalharness.stats.hyperparams import (
    HyperparameterRow,
    hyperparameter_effects,
    read_hyperparameters,
    spec_hyperparameters,
)
from evalharness.stats.intervals import Interval, wilson
from evalharness.stats.io import read_judgments
from evalharness.stats.length import LengthControlled, length_controlled, length_controlled_all
from evalharness.stats.multiple import holm
from evalharness.stats.paired import PairedComparison, paired_comparison
from evalharness.stats.paradox import Paradox, ParadoxPair, Perplexity, perplexity_paradox
from evalharness.stats.power import (
    DetectableWinRate,
    PromptsNeeded,
    detectable_win_rate,
    power_at,
    prompts_needed,
)
from evalharness.stats.summary import (
    AdjustedPair,
    CandidateStats,
    StatsSummary,
    infer_baseline,
    summarize,
    to_jsonable,
)

__all__ = [
    "AdjustedPair",
    "Battles",
    "CandidateStats",
    "DetectableWinRate",
    "HeadToHead",
    "HyperparameterRow",
    "Interval",
    "JudgeBias",
    "League",
    "LengthControlled",
    "PairGames",
    "PairedComparison",
    "Paradox",
    "ParadoxPair",
    "Perplexity",
    "PositionBias",
    "PromptScores",
    "PromptsNeeded",
    "Standing",
    "StatsSummary",
    "battles_from_judgments",
    "detectable_win_rate",
    "fit_bradley_terry",
    "head_to_head",
    "head_to_head_from_scores",
    "holm",
    "hyperparameter_effects",
    "infer_baseline",
    "judge_bias",
    "league",
    "league_from_battles",
    "length_controlled",
    "length_controlled_all",
    "pair_games",
    "paired_comparison",
    "perplexity_paradox",
    "position_bias",
    "power_at",
    "prompt_scores",
    "prompts_needed",
    "read_hyperparameters",
    "read_judgments",
    "spec_hyperparameters",
    "summarize",
    "to_jsonable",
    "wilson",
]
