"""Benchmark: judging against a server enforcing a tokens-per-minute limit (issue 13, item 3).

The fake server of tests/fakes, wrapped in ``TokenRateLimit``, admits at most
``--tokens`` tokens over any rolling ``--window`` seconds (a minute scaled down, so that
the run takes seconds) and answers 429 with Retry-After and OpenAI's ``x-ratelimit-*``
headers beyond that. The real stage judges through the real ``openai`` client with the
judge's ``Pacer`` on the same scaled window. Two modes:

* ``budget``: the judge config's ``rate_limits.tokens_per_minute`` is the server's limit;
* ``headers``: no budget configured; the client learns the limit from the headers.

Reported: tokens the server admitted per window over the whole judging time, as a share of
the limit (aim >= 0.90), the 429s, and games that failed for good (must be 0).

    python benchmarks/bench_rate_limit.py [--tokens 20000] [--window 2] [--seconds 20]
        [--latency 0.05] [--concurrency 8] [--mode budget|headers|both]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # for tests.fakes and benchmarks

from benchmarks.bench_judge_throughput import make_run  # noqa: E402
from evalharness.judging.config import JudgeConfig, default_judges_root, load_judge  # noqa: E402
from evalharness.judging.llm import LLMJudge  # noqa: E402
from evalharness.judging.pacing import Pacer  # noqa: E402
from evalharness.judging.stage import judge_run  # noqa: E402
from evalharness.schema import Judgment  # noqa: E402
from evalharness.store import JUDGMENTS, JsonlLog  # noqa: E402
from tests.fakes.openai_server import Reply  # noqa: E402
from tests.fakes.rate_limited import HeaderServer, TokenRateLimit  # noqa: E402


def bench(mode: str, args: argparse.Namespace) -> float:
    """One judging run in ``mode``; prints its figures and returns the achieved ratio."""
    limit = TokenRateLimit(lambda call: Reply("Short reason.\n[[A]]"),
                           tokens_per_window=args.tokens, window_s=args.window)
    with HeaderServer(limit, latency=args.latency) as server, \
            tempfile.TemporaryDirectory() as tmp:
        judge = dataclasses.replace(
            load_judge(default_judges_root() / "pairwise-binary"),
            api_key_env="BENCH_JUDGE_KEY", base_url=server.base_url, model="fake-judge",
            concurrency=args.concurrency, max_tokens=256, backoff_initial_s=0.05,
            backoff_max_s=args.window,
            tokens_per_minute=args.tokens if mode == "budget" else None)
        per_call = _tokens_per_call(Path(tmp) / "probe", judge, limit, args.window)
        games = max(2, int(args.seconds * args.tokens / args.window / per_call))
        run = make_run(Path(tmp), games // 2)
        pacers: list[Pacer] = []

        def make_judge(config: JudgeConfig) -> LLMJudge:
            pacers.append(Pacer.for_config(config, window_s=args.window))
            return LLMJudge(config, pacer=pacers[-1])

        import openai  # noqa: F401 - a one-off import is start-up, not judging

        admitted_before, refused_before = limit.admitted_tokens, limit.refused
        start = time.perf_counter()
        counts = judge_run(run, judge, "baseline", runs_root=Path(tmp) / "runs",
                           make_judge=make_judge)
        seconds = time.perf_counter() - start
        records = JsonlLog(run.path / JUDGMENTS, Judgment).read()
    admitted, refused = limit.admitted_tokens - admitted_before, limit.refused - refused_before
    ratio = float(admitted / seconds * args.window / args.tokens)
    failed = games // 2 * 2 - sum(1 for r in records if r.winner is not None)
    stats = pacers[0].stats
    print(f"mode {mode}: {counts.computed} games of ~{per_call} tokens, limit {args.tokens} "
          f"tokens per {args.window:g} s window, {args.latency * 1000:.0f} ms latency, "
          f"concurrency {args.concurrency}")
    print(f"  {seconds:.1f} s, {admitted} tokens admitted, {counts.calls} calls, "
          f"{refused} answered 429, peak window {limit.peak_window_tokens} tokens")
    print(f"  pacer: waited {stats.waited_s:.1f} s in total, concurrency lowest "
          f"{stats.lowest_allowed}, peak in flight {stats.peak_in_flight}")
    print(f"  games failed for good: {failed}")
    print(f"  achieved tokens per window / limit: {ratio:.3f}  (aim >= 0.90)")
    return ratio


def _tokens_per_call(root: Path, judge: JudgeConfig, limit: TokenRateLimit,
                     window_s: float) -> int:
    """Tokens one game of the benchmark costs: one game judged before the timing, then a
    window's wait so that its tokens are out of the server's window."""
    root.mkdir()
    before = limit.admitted_tokens
    judge_run(make_run(root, 1), judge, "baseline", runs_root=root / "runs")
    time.sleep(window_s)
    return max(1, (limit.admitted_tokens - before) // 2)


def main() -> None:
    """Run the benchmark in the chosen modes and print the achieved ratio of each."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=20_000,
                        help="Tokens the server admits per window.")
    parser.add_argument("--window", type=float, default=2.0,
                        help="The scaled minute, in seconds.")
    parser.add_argument("--seconds", type=float, default=20.0,
                        help="About how long each mode judges at the limit.")
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--mode", choices=("budget", "headers", "both"), default="both")
    args = parser.parse_args()
    os.environ.setdefault("BENCH_JUDGE_KEY", "bench-key")
    modes = ("budget", "headers") if args.mode == "both" else (args.mode,)
    ratios = [bench(mode, args) for mode in modes]
    print("achieved / limit: " + ", ".join(f"{m} {r:.3f}" for m, r in zip(modes, ratios,
                                                                         strict=True)))


if __name__ == "__main__":
    main()
