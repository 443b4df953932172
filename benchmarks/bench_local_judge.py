"""Benchmark: the local judge (vLLM's offline engine in this process) against the same model
behind ``vllm serve`` judged over HTTP, judgments per second, as a ratio in one run.

Both judge the same games of one run (N prompts x 2 orders) through the real stage (keys,
JSONL appends) with the same judge definition: the kit's base model and the permissive scale
of tests/vllm/test_local_judge.py (the tiny model cannot judge; the protocol and its cost are
what is measured). Each side's start-up (engine load, server ready) is timed apart and left
out of the rate: it is paid once per run, the rate is paid per game; so are a warm-up run of
8 prompts on each side and the local engine's shutdown (the server's stop is not timed either).
The two sides' records are compared too (greedy, float32: the same verdicts are expected).

    python benchmarks/bench_local_judge.py [--prompts 96] [--http-concurrency 32]
        [--kit runs/.kit]

On this 2-core CPU machine and the 0.8M-parameter kit model the engine's work is small, so the
figure mostly measures the overhead each path adds per game (HTTP, JSON, the server's
scheduling of requests arriving one by one vs one batched call).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # for tests.vllm.test_local_judge's kit judge and run maker

from evalharness.backends.lora_plan import LoraPlan, is_cpu_build  # noqa: E402
from evalharness.backends.vllm_server import VLLMServer  # noqa: E402
from evalharness.judging.config import JudgeConfig, load_judge  # noqa: E402
from evalharness.judging.local import LocalJudge  # noqa: E402
from evalharness.judging.stage import JudgeCounts, judge_run  # noqa: E402
from evalharness.store import RunDir  # noqa: E402

WARM_UP = 8
"""Prompts judged before the clock on each side (first-call costs: kernels, caches)."""


def _answers(n: int, tag: str = "q") -> dict[str, dict[str, str]]:
    return {"lora": {f"{tag}{i}": f"yes {i}" for i in range(n)},
            "baseline": {f"{tag}{i}": f"no, {i * 7}" for i in range(n)}}


def _verdicts(run: RunDir) -> dict[tuple[str, str, str], tuple[str | None, str]]:
    from tests.vllm.test_local_judge import records

    return {(r.key, r.first, r.second): (r.verdict, r.raw) for r in records(run)}


def _timed(run: RunDir, config: JudgeConfig, runs_root: Path, make: object) -> tuple[
        JudgeCounts, float]:
    started = time.perf_counter()
    counts = judge_run(run, config, "baseline", make_judge=make,  # type: ignore[arg-type]
                       runs_root=runs_root)
    return counts, time.perf_counter() - started


class _KeptOpen(LocalJudge):
    """A local judge the stage cannot close: its engine serves the warm-up and the timed run,
    and its shutdown (vLLM waits for its EngineCore) stays out of the rate, as the server's
    stop does."""

    async def aclose(self) -> None:
        """Keep the engine (``LocalJudge.aclose`` ends it after the timed run)."""


def _local(config: JudgeConfig, work: Path, prompts: int) -> tuple[RunDir, dict[str, object]]:
    """Warm-up run, then the timed run, on one engine started before the clock."""
    from tests.vllm.test_local_judge import make_run

    games = 2 * prompts
    judge = _KeptOpen(dataclasses.replace(config, concurrency=max(games, 1)))
    out: dict[str, object] = {}
    started = time.perf_counter()
    judge.engine.start()
    out["local_start_s"] = round(time.perf_counter() - started, 1)
    root = work / "local"
    try:
        _timed(make_run(root, _answers(WARM_UP, "w"), "warm"), judge.config, root,
               lambda c: judge)
        judge.batches.clear()
        run = make_run(root, _answers(prompts), "run")
        counts, seconds = _timed(run, judge.config, root, lambda c: judge)
        assert counts.computed == games, counts
    finally:
        asyncio.run(LocalJudge.aclose(judge))
    out["local_s"] = round(seconds, 2)
    out["local_batches"] = judge.batches
    out["local_judgments_per_s"] = round(games / seconds, 1)
    return run, out


def _served(config: JudgeConfig, work: Path, prompts: int, base: Path, concurrency: int
            ) -> tuple[RunDir, dict[str, object]]:
    """The same judge over HTTP against ``vllm serve`` of the same model: warm-up, timed run."""
    from tests.vllm.test_local_judge import make_run

    games = 2 * prompts
    out: dict[str, object] = {}
    server = VLLMServer(LoraPlan(str(base), (), 0, 0, 0, None), dtype="float32",
                        cpu_build=is_cpu_build(), log_path=work / "vllm-server.log")
    started = time.perf_counter()
    server.start()
    out["server_start_s"] = round(time.perf_counter() - started, 1)
    root = work / "http"  # its own root: nothing is copied from the local runs
    try:
        http = dataclasses.replace(config, backend="http", base_url=server.url,
                                   concurrency=concurrency, backoff_initial_s=0.1)
        _timed(make_run(root, _answers(WARM_UP, "w"), "warm"), http, root, None)
        run = make_run(root, _answers(prompts), "run")
        counts, seconds = _timed(run, http, root, None)
        assert counts.computed == games, counts
    finally:
        server.stop()
    out["http_s"] = round(seconds, 2)
    out["http_concurrency"] = concurrency
    out["http_judgments_per_s"] = round(games / seconds, 1)
    return run, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=96)
    parser.add_argument("--http-concurrency", type=int, default=32)
    parser.add_argument("--kit", type=Path, default=REPO / "runs" / ".kit")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from evalharness.demo.kit import build_kit
    from tests.vllm.test_local_judge import kit_judge_folder

    kit = build_kit(args.kit)
    games = 2 * args.prompts
    result: dict[str, object] = {"judgments": games, "model": "kit base (0.8M params)",
                                 "cpu_build": is_cpu_build()}
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        config = load_judge(kit_judge_folder(kit.base, work / "kit-judge"))
        local_run, local = _local(config, work, args.prompts)
        http_run, served = _served(config, work, args.prompts, kit.base,
                                   args.http_concurrency)
        result.update(local)
        result.update(served)
        mine, theirs = _verdicts(local_run), _verdicts(http_run)
        result["same_keys"] = set(mine) == set(theirs)
        result["same_verdict_and_text"] = sum(mine[k] == theirs.get(k) for k in mine)
    result["ratio_local_over_http"] = round(
        float(str(result["local_judgments_per_s"])) / float(str(result["http_judgments_per_s"])),
        2)
    print(f"local judge: {result['local_judgments_per_s']} judgments/s "
          f"({games} in {result['local_s']} s, batches {result['local_batches']}; engine "
          f"start {result['local_start_s']} s)")
    print(f"vllm serve + HTTP judge: {result['http_judgments_per_s']} judgments/s "
          f"({games} in {result['http_s']} s at concurrency {args.http_concurrency}; server "
          f"start {result['server_start_s']} s)")
    print(f"ratio local / HTTP: {result['ratio_local_over_http']}x; same keys: "
          f"{result['same_keys']}; same verdict and text: "
          f"{result['same_verdict_and_text']}/{games}")
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":  # vLLM spawns its EngineCore: the guard is required
    main()
