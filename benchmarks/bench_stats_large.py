"""Benchmark: ``summarize`` on a leaderboard-sized file (run on demand, not a test).

57 candidates x 805 prompts, each judged once (one order, random side) as a soft preference
with both answer lengths, like AlpacaEval 2's published annotations: about 46k judgments.
Times the joint length-controlled fit with its bootstrap alone, then the whole ``summarize``
(head-to-head, Holm, Bradley-Terry, paired comparisons, LC). The target is under 10 s.

    python benchmarks/bench_stats_large.py [--candidates 57] [--prompts 805] [--boot 1000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from evalharness.schema import Judgment
from evalharness.stats.games import pair_games
from evalharness.stats.length import length_controlled_all
from evalharness.stats.summary import summarize


def simulated_judgments(n_candidates: int, n_prompts: int, seed: int) -> list[Judgment]:
    """One-order soft games against "baseline" from a planted length-biased GLM."""
    rng = np.random.default_rng(seed)
    difficulty = rng.normal(0.0, 0.8, n_prompts)
    base_len = rng.integers(300, 2500, n_prompts)
    out: list[Judgment] = []
    for c in range(n_candidates):
        name = f"cand{c:02d}"
        d = rng.normal(rng.normal(0.0, 300.0), 400.0, n_prompts)
        cand_len = np.maximum(base_len + d, 1.0).astype(int)
        d = cand_len - base_len
        p = 1.0 / (1.0 + np.exp(-(rng.normal(0.0, 1.0) + rng.uniform(0.0, 2.0)
                                  * np.tanh(d / d.std()) + difficulty)))
        soft = rng.beta(4 * p, 4 * (1 - p))
        first = rng.random(n_prompts) < 0.5
        for q in range(n_prompts):
            weight_a = float(soft[q] if first[q] else 1.0 - soft[q])
            winner = "A" if weight_a > 0.5 else "B"
            a, b = (name, "baseline") if first[q] else ("baseline", name)
            la, lb = (cand_len[q], base_len[q]) if first[q] else (base_len[q], cand_len[q])
            out.append(Judgment(
                key=f"{c}-{q}", prompt_id=f"q{q:04d}", judge="sim", first=a, second=b,
                verdict=winner, winner=winner, weight_a=weight_a,
                first_length=int(la), second_length=int(lb),
            ))
    return out


def main() -> None:
    """Time the joint LC fit and the whole summary."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--candidates", type=int, default=57)
    parser.add_argument("--prompts", type=int, default=805)
    parser.add_argument("--boot", type=int, default=1000)
    args = parser.parse_args()
    judgments = simulated_judgments(args.candidates, args.prompts, seed=0)
    names = sorted({j.first for j in judgments} - {"baseline"})
    start = time.perf_counter()
    games = [pair_games(judgments, n, "baseline") for n in names]
    gathered = time.perf_counter()
    lc = length_controlled_all(games, n_boot=args.boot, seed=0)
    fitted = time.perf_counter()
    summarize(judgments, "baseline", n_boot=args.boot, seed=0)
    done = time.perf_counter()
    print(f"{args.candidates} candidates x {args.prompts} prompts ({len(judgments)} "
          f"one-order soft judgments), {args.boot} bootstrap rounds")
    print(f"  games per candidate:          {gathered - start:6.2f} s")
    print(f"  joint LC fit + bootstrap:     {fitted - gathered:6.2f} s")
    print(f"  summarize (whole `stats`):    {done - fitted:6.2f} s  (target < 10 s)")
    flagged = sum(r is not None and r.unreliable is not None for r in lc.values())
    print(f"  LC unreliable (separation):   {flagged} of {len(lc)}")


if __name__ == "__main__":
    main()
