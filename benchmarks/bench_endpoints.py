"""Benchmark: generation spread over several OpenAI-compatible endpoints (``--endpoint``
repeated), in one run so the ratios hold on a noisy machine.

The baseline and the kit's four adapters answer ``--prompts`` questions each through loopback
servers of tests/fakes that answer after ``--latency`` seconds and load adapters at runtime, at
``--concurrency`` requests in flight per server, through the real pipeline (keys, JSONL
appends). Reported: answers per second with 1, 2 and 4 endpoints, as ratios to one endpoint
(ideal: the number of endpoints), and a run over 2 endpoints in which one is killed a third of
the way through, against the same run undisturbed.

    python benchmarks/bench_endpoints.py [--prompts 100] [--latency 0.05] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # for tests.fakes

from evalharness.backends.registry import BackendChoice, BackendOptions  # noqa: E402
from evalharness.demo.kit import build_kit  # noqa: E402
from evalharness.pipeline import run_models  # noqa: E402
from tests.fakes.openai_server import Call, FakeOpenAIServer, Reply  # noqa: E402

BASE = "served-base"


def answer(call: Call) -> Reply:
    return Reply(f"{call.body['model']}: {call.text[:30]}", completion_tokens=8)


def timed_run(root: Path, models: list[str], prompts: Path, servers: list[FakeOpenAIServer],
              concurrency: int, kill_after: int | None = None) -> tuple[float, int]:
    """Seconds for one run over ``servers``, and the answers it stored; with ``kill_after``,
    the last server dies once it has received that many calls."""
    if kill_after is not None:
        doomed = servers[-1]

        def answer_then_die(call: Call) -> Reply:
            if call.index == kill_after:
                threading.Thread(target=doomed.kill).start()
            return answer(call)

        doomed.responder = answer_then_die
    choice = BackendChoice("openai", BackendOptions(
        endpoints=tuple(s.base_url for s in servers), concurrency=concurrency), verify=False)
    start = time.perf_counter()
    result = run_models(models, command="generate", backend=choice.spec(), prompts=prompts,
                        runs_root=root, argv=["bench"])
    seconds = time.perf_counter() - start
    answers = result.run_dir / "answers.jsonl"
    return seconds, len(answers.read_text().splitlines())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=100)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    kit = build_kit(REPO / "runs" / ".kit")
    models = ["baseline", *(str(kit.adapter(name)) for name in
                            ("qv-r8", "all-r16", "under-qv-r4", "over-all-r32"))]
    total = len(models) * args.prompts
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        prompts = root / "prompts.jsonl"
        prompts.write_text("".join(json.dumps({"id": f"p{i:04d}", "prompt": f"Question {i}?"})
                                   + "\n" for i in range(args.prompts)))
        rates: dict[int, float] = {}
        for count in (1, 1, 2, 4):  # the first run pays the imports and adapter hashing
            servers = [FakeOpenAIServer(answer, models=[BASE], latency=args.latency).start()
                       for _ in range(count)]
            try:
                seconds, stored = timed_run(root / f"n{count}-{len(rates)}", models, prompts,
                                            servers, args.concurrency)
            finally:
                for server in servers:
                    server.stop()
            assert stored == total, (stored, total)
            rates[count] = stored / seconds
            print(f"{count} endpoint(s): {stored} answers in {seconds:.2f} s, "
                  f"{rates[count]:.0f}/s, {rates[count] / rates[1]:.2f}x one endpoint "
                  f"(ideal {count}x)")
        servers = [FakeOpenAIServer(answer, models=[BASE], latency=args.latency).start()
                   for _ in range(2)]
        try:
            seconds, stored = timed_run(root / "killed", models, prompts, servers,
                                        args.concurrency, kill_after=total // 6)
        finally:
            for server in servers:
                server.stop()
        assert stored == total, (stored, total)
        undisturbed = total / rates[2]
        print(f"2 endpoints, one killed after a third of its share: {stored}/{total} answers "
              f"in {seconds:.2f} s, {seconds / undisturbed:.2f}x the undisturbed run "
              f"(the rest on one endpoint, with the client's retries before giving up on it)")


if __name__ == "__main__":
    main()
