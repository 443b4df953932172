"""Benchmark: Bradley-Terry league with bootstrap intervals (run on demand, not a test).

100 candidates x 500 prompts, every candidate judged against the baseline in both orders,
1,000 bootstrap rounds over prompts. The target is under 10 s.

    python benchmarks/bench_bradley_terry.py [--candidates 100] [--prompts 500] [--boot 1000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from evalharness.schema import Judgment
from evalharness.stats.bradley_terry import battles_from_judgments, league_from_battles


def simulated_judgments(n_candidates: int, n_prompts: int, seed: int) -> list[Judgment]:
    """Both-order games of every candidate against the baseline, with a known strength."""
    rng = np.random.default_rng(seed)
    strength = rng.normal(0.0, 0.5, n_candidates)
    out: list[Judgment] = []
    for c in range(n_candidates):
        name = f"cand{c:03d}"
        p_win = 1.0 / (1.0 + np.exp(-strength[c]))
        draws = rng.random((n_prompts, 2))
        for p in range(n_prompts):
            for order in (0, 1):
                u = draws[p, order]
                outcome = "tie" if abs(u - p_win) < 0.05 else ("cand" if u < p_win else "base")
                first, second = (name, "baseline") if order == 0 else ("baseline", name)
                winner = (
                    "tie"
                    if outcome == "tie"
                    else ("A" if (outcome == "cand") == (order == 0) else "B")
                )
                out.append(
                    Judgment(
                        key=f"{c}-{p}-{order}",
                        prompt_id=f"p{p:04d}",
                        judge="sim",
                        first=first,
                        second=second,
                        verdict=winner,
                        winner=winner,
                    )
                )
    return out


def main() -> None:
    """Time building the battles and fitting the league with its bootstrap."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--prompts", type=int, default=500)
    parser.add_argument("--boot", type=int, default=1000)
    args = parser.parse_args()
    judgments = simulated_judgments(args.candidates, args.prompts, seed=0)
    start = time.perf_counter()
    battles = battles_from_judgments(judgments)
    built = time.perf_counter()
    result = league_from_battles(battles, "baseline", n_boot=args.boot, seed=0)
    done = time.perf_counter()
    print(
        f"{args.candidates} candidates x {args.prompts} prompts ({len(judgments)} judgments),"
        f" {args.boot} bootstrap rounds"
    )
    print(f"  battles from judgments: {built - start:6.2f} s")
    print(f"  fit + bootstrap:        {done - built:6.2f} s")
    print(f"  total:                  {done - start:6.2f} s  (target < 10 s)")
    print(f"  strongest: {result.standings[0].model} theta={result.standings[0].strength:.3f}")


if __name__ == "__main__":
    main()
