"""Benchmark: the integrity audit's cost on a league (run on demand, not a test).

A 50-prompt x 16-adapter league built from the shipped ``league-50`` references: each
adapter answers with a reworded reference (sentences shuffled, a sentence of its own added),
the baseline with the first two sentences; both orders judged by a simulated judge. Times
``audit_records`` (every answer check and judge health) against ``summarize`` (every
statistic the leaderboard shows, 1,000 bootstrap rounds) on the same records, in one run:
the ratio is what the audit adds to a ``stats``/``report`` call.

    python benchmarks/bench_audit.py [--adapters 16]
"""

from __future__ import annotations

import argparse
import random
import time

from evalharness.audit.config import AuditConfig
from evalharness.audit.run import audit_records
from evalharness.prompts import load_prompt_set
from evalharness.resources import shipped_dir
from evalharness.schema import Answer, Judgment
from evalharness.stats.summary import summarize


def league_records(n_adapters: int, seed: int = 0) -> tuple[list[Answer], list[Judgment]]:
    rng = random.Random(seed)
    prompts = load_prompt_set(shipped_dir("prompts") / "league-50.jsonl").prompts
    answers: list[Answer] = []
    judgments: list[Judgment] = []
    models = ["baseline"] + [f"adapter-{i:02d}" for i in range(n_adapters)]
    for model in models:
        for p in prompts:
            sentences = (p.reference or "").split(". ")
            if model == "baseline":
                text = ". ".join(sentences[:2])
            else:
                rng.shuffle(sentences)
                text = ". ".join(sentences) + f" In short, this is {model}'s view."
            answers.append(Answer(key=f"{model}-{p.id}", prompt_id=p.id, model=model,
                                  model_key=model, text=text, n_tokens=len(text) // 4,
                                  finish_reason="stop", seconds=0.0))
    lengths = {(a.model, a.prompt_id): len(a.text) for a in answers}
    for model in models[1:]:
        strength = rng.uniform(0.3, 0.8)
        for p in prompts:
            for first, second in ((model, "baseline"), ("baseline", model)):
                won = rng.random() < strength
                winner = ("A" if first == model else "B") if won else \
                    ("B" if first == model else "A")
                judgments.append(Judgment(
                    key=f"{first}-{second}-{p.id}", prompt_id=p.id, judge="sim",
                    first=first, second=second, verdict=winner, winner=winner,  # type: ignore[arg-type]
                    first_length=lengths[(first, p.id)], second_length=lengths[(second, p.id)]))
    return answers, judgments


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--adapters", type=int, default=16)
    args = parser.parse_args()
    answers, judgments = league_records(args.adapters)
    prompts = load_prompt_set(shipped_dir("prompts") / "league-50.jsonl").prompts
    config = AuditConfig()
    start = time.perf_counter()
    findings = audit_records(answers, prompts, judgments, "baseline", config)
    audit_s = time.perf_counter() - start
    start = time.perf_counter()
    summarize(judgments, "baseline", n_boot=1000)
    stats_s = time.perf_counter() - start
    print(f"{args.adapters} adapters x 50 prompts: {len(answers)} answers, "
          f"{len(judgments)} judgments, {len(findings)} findings")
    print(f"audit {audit_s:.2f} s, statistics {stats_s:.2f} s: the audit costs "
          f"{audit_s / stats_s:.2f}x the statistics")


if __name__ == "__main__":
    main()
