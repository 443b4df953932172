"""Benchmark: judging throughput against an OpenAI-compatible server with injected latency.

1,000 judgments (500 prompts x 2 orders) against the fake server of tests/fakes, every call
delayed 50 ms, at concurrency 32, through the real ``openai`` client and the real stage
(keys, JSONL appends, fsync). The ideal time is judgments x latency / concurrency; the
figure reported is ideal / achieved (aim >= 0.8).

    python benchmarks/bench_judge_throughput.py [--judgments 1000] [--latency 0.05]
        [--concurrency 32] [--server process|thread]

``--server process`` (default) runs the server in its own process, as a real endpoint is;
``thread`` runs it in this process, sharing the interpreter lock with the client.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # for tests.fakes

from evalharness.judging.config import default_judges_root, load_judge  # noqa: E402
from evalharness.judging.stage import judge_run  # noqa: E402
from evalharness.pipeline import answer_key  # noqa: E402
from evalharness.prompts import load_prompt_set  # noqa: E402
from evalharness.schema import Answer, DataRef, GenConfig, Manifest, ModelSpec  # noqa: E402
from evalharness.store import ANSWERS, RunDir, utc_now  # noqa: E402


def make_run(root: Path, n_prompts: int) -> RunDir:
    """A run directory holding a candidate's and a baseline's answers to ``n_prompts``."""
    prompt_file = root / "prompts.jsonl"
    prompt_file.write_text("".join(
        json.dumps({"id": f"p{i:05d}", "prompt": f"Question number {i}?"}) + "\n"
        for i in range(n_prompts)))
    prompts = load_prompt_set(prompt_file)
    gen = GenConfig()
    specs = [ModelSpec(name=n, kind="endpoint", base_model="bench", base_fingerprint=f"fp-{n}")
             for n in ("lora", "baseline")]
    run = RunDir(root / "runs" / "bench")
    now = utc_now()
    run.write_manifest(Manifest(
        run_id=run.run_id, command="generate", created=now, updated=now, versions={}, argv=(),
        engine="bench", candidates=tuple(specs), baseline="baseline", gen=gen,
        prompts=DataRef(name="prompts", source=str(prompt_file), sha256=prompts.sha256,
                        n=n_prompts)))
    log = run.log(ANSWERS, Answer)
    log.extend(Answer(key=answer_key(s, p, gen, "bench"), prompt_id=p.id, model=s.name,
                      model_key=s.key, text=f"{s.name} answers {p.id} at some length. " * 8,
                      n_tokens=40, finish_reason="stop", seconds=0.0)
               for s in specs for p in prompts.prompts)
    log.close()
    return run


def start_server(kind: str, latency: float) -> tuple[str, object]:
    """The server's base URL and a handle to stop it."""
    if kind == "thread":
        from tests.fakes.openai_server import FakeOpenAIServer

        server = FakeOpenAIServer(latency=latency).start()
        return server.base_url, server
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.openai_server", "--latency", str(latency)],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    return process.stdout.readline().strip(), process


def stop_server(handle: object) -> None:
    """Stop what ``start_server`` started."""
    if isinstance(handle, subprocess.Popen):
        handle.terminate()
        handle.wait(timeout=10)
    else:
        handle.stop()  # type: ignore[attr-defined]


def main() -> None:
    """Judge ``--judgments`` games and report throughput as a fraction of the ideal."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--judgments", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--server", choices=("process", "thread"), default="process")
    args = parser.parse_args()
    os.environ.setdefault("BENCH_JUDGE_KEY", "bench-key")
    url, handle = start_server(args.server, args.latency)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            run = make_run(Path(tmp), args.judgments // 2)
            judge = dataclasses.replace(
                load_judge(default_judges_root() / "pairwise-binary"),
                api_key_env="BENCH_JUDGE_KEY", base_url=url, model="fake-judge",
                concurrency=args.concurrency)
            import openai  # noqa: F401 - a one-off ~1 s import is start-up, not throughput

            start, cpu = time.perf_counter(), time.process_time()
            counts = judge_run(run, judge, "baseline", runs_root=Path(tmp) / "runs")
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    finally:
        stop_server(handle)
    ideal = counts.computed * args.latency / args.concurrency
    print(f"{counts.computed} judgments, {args.latency * 1000:.0f} ms latency, concurrency "
          f"{args.concurrency}, server in a {args.server}")
    print(f"  achieved: {seconds:6.2f} s  ({counts.computed / seconds:7.1f} judgments/s)")
    print(f"  ideal:    {ideal:6.2f} s  ({counts.computed / ideal:7.1f} judgments/s)")
    print(f"  client CPU: {1000 * cpu / counts.computed:.2f} ms per judgment (the ideal leaves "
          f"{1000 * args.latency / args.concurrency:.2f} ms; above that the client is the "
          "bottleneck, not the protocol)")
    print(f"  throughput / ideal: {ideal / seconds:.2f}  (aim >= 0.80)")


if __name__ == "__main__":
    main()
