"""The local judge (``--judge-backend vllm``): the HTTP judge's protocol through vLLM's offline
engine in this process.

Fast tests use a scripted engine: the batching gate (concurrent games share one engine call,
retries of unreadable replies ride in the next one), record-for-record parity with the HTTP
judge on the same replies, laziness (nothing to judge: no engine), an engine failure.

The slow test runs this module as a script in a fresh process (vLLM spawns its EngineCore;
a fresh process is what users run) with the kit's base model as the judge. The tiny model
cannot judge, so the judge's scale reads any reply: its first character decides A (a-m, A-M,
0-4) or B (anything else), and the log-prob tokens split the whole vocabulary the same way,
so every reply has a verdict and every first token a soft preference. That tests the
protocol (keys, records, resume, invalid and refused games, the engine's end), not quality.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import multiprocessing
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from evalharness.errors import JudgeError
from evalharness.judging.config import JudgeConfig, default_judges_root, load_judge
from evalharness.judging.local import (
    ChatRequest,
    Completion,
    LocalJudge,
    Position,
    Reply,
    VLLMChatEngine,
    as_local,
)
from evalharness.judging.stage import judge_run, plan_run
from evalharness.judging.verdicts import rules
from evalharness.pipeline import answer_key
from evalharness.prompts import load_prompt_set
from evalharness.schema import Answer, DataRef, GenConfig, Judgment, Manifest, ModelSpec
from evalharness.schema import TokenUsage as Usage
from evalharness.store import ANSWERS, JUDGMENTS, JsonlLog, RunDir, utc_now

pytestmark = [pytest.mark.vllm]
REPO = Path(__file__).resolve().parents[2]


# -- shared helpers -----------------------------------------------------------------------------

def make_run(root: Path, answers: Mapping[str, Mapping[str, str]], name: str) -> RunDir:
    """A run directory with a prompt set, a manifest and answers (no model needed); prompts
    are the answers' prompt ids, each asked as ``<id>?``."""
    ids = sorted({pid for by_prompt in answers.values() for pid in by_prompt})
    root.mkdir(parents=True, exist_ok=True)
    prompt_file = root / f"{name}-prompts.jsonl"
    prompt_file.write_text("".join(json.dumps({"id": pid, "prompt": f"{pid}?"}) + "\n"
                                   for pid in ids))
    prompt_set = load_prompt_set(prompt_file)
    gen = GenConfig()
    specs = [ModelSpec(name=model, kind="endpoint", base_model="fake",
                       base_fingerprint=f"fp-{model}") for model in answers]
    run = RunDir(root / name)
    now = utc_now()
    run.write_manifest(Manifest(
        run_id=run.run_id, command="generate", created=now, updated=now, versions={}, argv=(),
        backend="fake", candidates=tuple(specs), baseline="baseline", gen=gen,
        prompts=DataRef(name=prompt_set.name, source=str(prompt_file),
                        sha256=prompt_set.sha256, n=len(prompt_set.prompts))))
    log = run.log(ANSWERS, Answer)
    by_id = {p.id: p for p in prompt_set.prompts}
    log.extend(Answer(key=answer_key(spec, by_id[pid], gen, "fake"), prompt_id=pid,
                      model=spec.name, model_key=spec.key, text=text,
                      n_tokens=len(text.split()), finish_reason="stop", seconds=0.0)
               for spec in specs for pid, text in answers[spec.name].items())
    log.close()
    return run


def records(run: RunDir) -> list[Judgment]:
    return JsonlLog(run.path / JUDGMENTS, Judgment).read()


def never(config: JudgeConfig) -> LocalJudge:
    raise AssertionError(f"a judge was made for {config.name}: something was judged again")


# -- fast: a scripted engine ------------------------------------------------------------------

Script = Callable[[list[dict[str, str]]], tuple[str, str, list[Position]]]


def answers_of(messages: list[dict[str, str]]) -> tuple[str, str]:
    from tests.fakes.openai_server import Call, answers_in

    return answers_in(Call(index=0, body={"messages": messages}, headers={}, received=0.0,
                           seen=0))


def by_quality(messages: list[dict[str, str]]) -> tuple[str, str, list[Position]]:
    """``A``/``B`` by the answers' ``q=`` (log-probs 0.8/0.2); unreadable for ``garbled``."""
    a, b = answers_of(messages)
    if "garbled" in a + b:
        return "I cannot tell", "length", [("I", [("I", -0.1), ("A", -3.0)])]
    side = "A" if a.split("q=")[1] > b.split("q=")[1] else "B"
    other = "B" if side == "A" else "A"
    return side, "stop", [(side, [(side, math.log(0.8)), (other, math.log(0.2))])]


class ScriptedEngine:
    """A ``ChatEngine`` answering from a script; records each call's batch size."""

    def __init__(self, script: Script, fail_on_call: int | None = None) -> None:
        self.script = script
        self.calls: list[int] = []
        self.temperatures: list[list[float]] = []
        self.closed = False
        self.fail_on_call = fail_on_call
        self._started = False

    @property
    def started(self) -> bool:
        return self._started

    def start(self) -> None:
        self._started = True

    def run(self, requests: Sequence[ChatRequest]) -> list[Reply]:
        self.calls.append(len(requests))
        self.temperatures.append([r.temperature for r in requests])
        if self.fail_on_call is not None and len(self.calls) == self.fail_on_call:
            raise RuntimeError("EngineDeadError: the engine core died")
        out: list[Reply] = []
        for request in requests:
            text, finish, positions = self.script(request.messages)
            out.append(Completion(text, finish, Usage(prompt_tokens=50, completion_tokens=1),
                                  positions))
        return out

    def cancel(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def logprob_judge(**changes: Any) -> JudgeConfig:
    base = load_judge(default_judges_root() / "pairwise-logprob").with_overrides(
        model="kit-judge", base_url="http://127.0.0.1:9/v1")
    return dataclasses.replace(base, **{"api_key_env": None, **changes})


def quality_answers(n: int, garbled: Sequence[int] = ()) -> dict[str, dict[str, str]]:
    return {"lora": {f"p{i}": ("garbled " if i in garbled else "") + f"lora {i} q=2"
                     for i in range(n)},
            "baseline": {f"p{i}": f"base {i} q=1" for i in range(n)}}


def test_concurrent_games_share_one_engine_call(tmp_path: Path) -> None:
    """12 games at concurrency 64: one engine call of 12; the two unreadable games are asked
    again together, twice (invalid_retries 2), sampled at the retry temperature."""
    engine = ScriptedEngine(by_quality)
    made: list[LocalJudge] = []

    def factory(config: JudgeConfig) -> LocalJudge:
        made.append(LocalJudge(config, engine=engine))
        return made[-1]

    run = make_run(tmp_path / "runs", quality_answers(6, garbled=[3]), "r")
    counts = judge_run(run, as_local(logprob_judge(), concurrency=64), "baseline",
                       make_judge=factory, runs_root=tmp_path / "runs")
    assert engine.calls == [12, 2, 2] and made[0].batches == [12, 2, 2]
    assert engine.temperatures[1] == [0.7, 0.7]
    assert counts.computed == 12 and counts.invalid == 2 and counts.calls == 16
    assert engine.closed
    assert counts.cost_usd == 0.0 and counts.price_source == "local vLLM engine: 0"


def test_batch_size_is_bounded_by_max_batch(tmp_path: Path) -> None:
    engine = ScriptedEngine(by_quality)
    run = make_run(tmp_path / "runs", quality_answers(5), "r")
    judge_run(run, as_local(logprob_judge(), concurrency=4), "baseline",
              make_judge=lambda c: LocalJudge(c, engine=engine), runs_root=tmp_path / "runs")
    assert sum(engine.calls) == 10 and max(engine.calls) == 4


def test_records_match_the_http_judge_given_the_same_replies(tmp_path: Path) -> None:
    """The same replies through ``LLMJudge`` (a fake OpenAI server) and ``LocalJudge`` (a
    scripted engine) give the same records: keys, verdicts, soft preferences, raw text,
    attempts, invalid errors (retries included), token counts."""
    from tests.fakes.openai_server import Call, FakeOpenAIServer
    from tests.fakes.openai_server import Reply as ServerReply

    def served(call: Call) -> ServerReply:
        text, finish, positions = by_quality(call.body["messages"])
        return ServerReply(text, top_logprobs=[alts for _, alts in positions],
                           tokens=[token for token, _ in positions], prompt_tokens=50,
                           completion_tokens=1, finish_reason=finish)

    answers = quality_answers(4, garbled=[1])
    http_run = make_run(tmp_path / "http", answers, "r")
    local_run = make_run(tmp_path / "local", answers, "r")
    with FakeOpenAIServer(served) as server:
        http = logprob_judge(base_url=server.base_url, backoff_initial_s=0.01)
        judge_run(http_run, http, "baseline", runs_root=tmp_path / "http")
    engine = ScriptedEngine(by_quality)
    judge_run(local_run, as_local(http), "baseline",
              make_judge=lambda c: LocalJudge(c, engine=engine), runs_root=tmp_path / "local")

    def shown(run: RunDir) -> list[dict[str, Any]]:
        return sorted((r.model_dump(mode="json") for r in records(run)),
                      key=lambda r: (r["key"], r["first"]))

    assert shown(local_run) == shown(http_run)
    invalid = [r for r in records(local_run) if r.winner is None]
    assert len(invalid) == 2 and all(r.attempts == 3 for r in invalid)
    assert invalid[0].error is not None and "cut at max_tokens" in invalid[0].error
    assert all(r.weight_a == pytest.approx(0.8 if r.winner == "A" else 0.2)
               for r in records(local_run) if r.winner is not None)


def test_nothing_to_judge_starts_no_engine(tmp_path: Path) -> None:
    engine = ScriptedEngine(by_quality)
    run = make_run(tmp_path / "runs", quality_answers(2), "r")
    config = as_local(logprob_judge())
    judge_run(run, config, "baseline", make_judge=lambda c: LocalJudge(c, engine=engine),
              runs_root=tmp_path / "runs")
    again = judge_run(run, config, "baseline", make_judge=never, runs_root=tmp_path / "runs")
    assert again.computed == 0 and again.on_disk == 4
    # The real engine object is lazy: made and closed without a game, it loads nothing.
    judge = LocalJudge(config)
    asyncio.run(judge.aclose())
    assert isinstance(judge.engine, VLLMChatEngine) and not judge.engine.started
    assert judge.batches == []


def test_engine_failure_stops_the_run_and_keeps_what_was_judged(tmp_path: Path) -> None:
    engine = ScriptedEngine(by_quality, fail_on_call=2)
    run = make_run(tmp_path / "runs", quality_answers(4), "r")
    with pytest.raises(JudgeError, match=r"local vLLM engine failed .*EngineDeadError"):
        judge_run(run, as_local(logprob_judge(), concurrency=4), "baseline",
                  make_judge=lambda c: LocalJudge(c, engine=engine),
                  runs_root=tmp_path / "runs")
    assert len(records(run)) == 4 and engine.closed


# -- slow: the real engine, in a fresh process -------------------------------------------------

A_FIRST = "abcdefghijklmABCDEFGHIJKLM01234"
SYSTEM = "Which answer is better? Reply A or B."
USER = "{question}\n{answer_a}\n{answer_b}\n"


def kit_judge_folder(base: Path, target: Path) -> Path:
    """A judge of the kit's base model whose scale reads any reply (see the module docstring).

    The templates are short: the kit's context is 256 tokens and the answer fences take
    about 200 of them with its byte-level tokenizer."""
    import yaml
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    vocabulary = {tokenizer.decode([i]).strip() for i in range(len(tokenizer))}
    vocabulary.discard("")
    sides = {"A": sorted(t for t in vocabulary if t[0] in A_FIRST),
             "B": sorted(t for t in vocabulary if t[0] not in A_FIRST)}
    target.mkdir(parents=True)
    (target / "system.txt").write_text(SYSTEM)
    (target / "user.txt").write_text(USER)
    chars = "a-mA-M0-4"
    config = {
        "kind": "llm", "backend": "vllm", "model": str(base), "api_key_env": None,
        "temperature": 0.0, "max_tokens": 4, "concurrency": 64, "invalid_retries": 1,
        "templates": {"system": "system.txt", "user": "user.txt"},
        "verdicts": [{"label": "A", "winner": "A", "pattern": rf"\A\s*[{chars}]"},
                     {"label": "B", "winner": "B", "pattern": rf"\A\s*[^{chars}\s]"}],
        "logprobs": {"top_logprobs": 5, "tokens": sides, "position": 0},
    }
    (target / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))
    return target


def engine_state() -> dict[str, list[str]]:
    threads = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    return {"threads": [t for t in threads if "EngineCore" in t or "MPClient" in t],
            "children": [p.name for p in multiprocessing.active_children()]}


def scenarios(base: Path, work: Path) -> dict[str, Any]:
    """Everything the slow test checks, with two engine starts (each ``judge_run`` that
    judges starts its own and ends it)."""
    import time

    out: dict[str, Any] = {}
    config = load_judge(kit_judge_folder(base, work / "kit-judge"))
    assert config.backend == "vllm"
    runs = work / "runs"
    answers = {"lora": {f"q{i}": f"yes {i}" for i in range(6)},
               "baseline": {f"q{i}": f"no, {i * 7}" for i in range(6)}}
    run = make_run(runs, answers, "run-1")
    made: list[LocalJudge] = []

    def factory(c: JudgeConfig) -> LocalJudge:
        made.append(LocalJudge(c))
        return made[-1]

    # 1. Judge a run: 12 games in one engine call; keys those of the same model over HTTP.
    started = time.perf_counter()
    counts = judge_run(run, config, "baseline", make_judge=factory, runs_root=runs)
    out["judge_seconds"] = round(time.perf_counter() - started, 1)
    out["counts"] = {"computed": counts.computed, "invalid": counts.invalid,
                     "calls": counts.calls}
    out["batches"] = made[0].batches
    out["engine_started_after_close"] = made[0].engine.started
    out["after_first_run"] = engine_state()
    held = records(run)
    out["records"] = [{"verdict": r.verdict, "winner": r.winner, "weight_a": r.weight_a,
                       "raw": r.raw, "attempts": r.attempts,
                       "prompt_tokens": r.usage.prompt_tokens,
                       "completion_tokens": r.usage.completion_tokens} for r in held]
    http = dataclasses.replace(config, backend="http", base_url="http://127.0.0.1:9/v1")
    out["same_keys_as_http"] = (
        {g.identity for g in plan_run(run, http, "baseline").games}
        == {(r.key, r.first, r.second) for r in held})

    # 2. Resume: nothing left, so no judge (and no engine) is made, by either backend.
    again = judge_run(run, config, "baseline", make_judge=never, runs_root=runs)
    over_http = judge_run(run, http, "baseline", make_judge=never, runs_root=runs)
    out["resume_computed"] = [again.computed, over_http.computed]

    # 3. A scale the model never writes: stored invalid after the retry, as over HTTP; a
    # game too long for the context is refused (not stored) and the run stops.
    strict = dataclasses.replace(
        config, name="strict", logprob_tokens=None,
        verdicts=rules([("A", "A", r"\[\[A\]\]"), ("B", "B", r"\[\[B\]\]")]))
    long = {"lora": {"q0": "yes", "q1": "yes", "q2": "word " * 300},
            "baseline": {"q0": "no", "q1": "no", "q2": "no"}}
    run2 = make_run(runs, long, "run-2")
    made.clear()
    try:
        judge_run(run2, strict, "baseline", make_judge=factory, runs_root=runs)
        out["refused_error"] = None
    except JudgeError as exc:
        out["refused_error"] = str(exc)
    out["strict_batches"] = made[0].batches
    out["invalid_records"] = [{"verdict": r.verdict, "winner": r.winner, "raw": r.raw,
                               "attempts": r.attempts, "error": r.error,
                               "prompt_id": r.prompt_id} for r in records(run2)]
    out["at_end"] = engine_state()
    return out


@pytest.mark.slow
def test_local_judge_on_the_kit(kit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from tests.process_table import new_tag, wait_until_gone
    from tests.vllm.conftest import VLLM_ENV

    tag = new_tag()
    done = subprocess.run(
        [sys.executable, "-m", "tests.vllm.test_local_judge", str(kit.base), str(tmp_path)],
        cwd=REPO, env={**os.environ, **VLLM_ENV, **tag}, capture_output=True, text=True,
        timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "terminate called" not in done.stderr
    result = json.loads(next(line for line in done.stdout.splitlines()
                             if line.startswith("RESULT ")).removeprefix("RESULT "))
    print("local judge on the kit:", json.dumps({k: result[k] for k in (
        "judge_seconds", "counts", "batches", "strict_batches", "refused_error")}))

    # 1. Every game judged in one engine call, with a verdict and a soft preference read
    # from the first token's top-5 log-probs; keys those of the HTTP judge.
    assert result["counts"] == {"computed": 12, "invalid": 0, "calls": 12}
    assert result["batches"] == [12]
    assert result["same_keys_as_http"]
    for record in result["records"]:
        assert record["winner"] in ("A", "B") and record["verdict"] == record["winner"]
        assert 0.0 <= record["weight_a"] <= 1.0
        assert record["attempts"] == 1 and 1 <= record["completion_tokens"] <= 4
        assert record["prompt_tokens"] > 100

    # 2. Resume judged nothing, locally or over HTTP (the keys are shared).
    assert result["resume_computed"] == [0, 0]

    # 3. Invalid: stored with the replies' text after 2 attempts, the HTTP judge's error.
    invalid = result["invalid_records"]
    assert sorted(r["prompt_id"] for r in invalid) == ["q0", "q0", "q1", "q1"]
    for record in invalid:
        assert record["winner"] is None and record["verdict"] is None
        assert record["attempts"] == 2
        assert "no verdict found" in record["error"]
        assert "gave up after 2 replies without a readable verdict" in record["error"]
        assert "each retry showed new fence ids and was sampled at temperature 0.7" \
            in record["error"]
    # The over-long game (both orders) was refused by the engine: not stored, run stopped.
    assert result["refused_error"] is not None
    assert "rejected 2 request(s)" in result["refused_error"]
    assert "local engine refused the request" in result["refused_error"]
    assert "maximum context length" in result["refused_error"]  # vLLM's own message
    assert result["strict_batches"] == [6, 4]

    # 4. The engines were ended: no EngineCore thread or process, before or at exit.
    assert result["engine_started_after_close"] is False
    assert result["after_first_run"] == {"threads": [], "children": []}
    assert result["at_end"] == {"threads": [], "children": []}
    assert wait_until_gone(tag) == []


if __name__ == "__main__":  # the slow test's subprocess (vLLM spawns: guard required)
    found = scenarios(Path(sys.argv[1]), Path(sys.argv[2]))
    print("RESULT " + json.dumps(found), flush=True)
