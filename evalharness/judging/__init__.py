"""Pairwise judging: judge definitions as data, an OpenAI-compatible LLM judge, an offline
reference judge, and the stage that judges every game in both orders, resumably.

Public entry points: ``resolve_judge`` (load ``judges/<name>/``), ``judge_run`` /
``judge_existing_run`` (the stage), ``JudgeCounts`` (what it did).
"""

from evalharness.judging.config import JudgeConfig, load_judge, resolve_judge
from evalharness.judging.stage import JudgeCounts, Tally, baseline_pairs, judge_run

__all__ = ["JudgeConfig", "JudgeCounts", "Tally", "baseline_pairs", "judge_run", "load_judge",
           "resolve_judge"]
