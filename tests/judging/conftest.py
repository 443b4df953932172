"""Fixtures for judging tests: a fake OpenAI server, run directories with answers, judges."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
import typer
from click.testing import Result
from typer.testing import CliRunner

from evalharness.judging.cli import register
from evalharness.judging.config import JudgeConfig, default_judges_root, load_judge
from evalharness.pipeline import answer_key
from evalharness.prompts import load_prompt_set
from evalharness.schema import Answer, DataRef, GenConfig, Manifest, ModelSpec
from evalharness.store import ANSWERS, RunDir, utc_now
from tests.fakes.openai_server import Call, FakeOpenAIServer, Reply, answers_in
from tests.helpers import write_jsonl

KEY_ENV = "EVALHARNESS_TEST_JUDGE_KEY"
SECRET = "sk-test-9f8e7d6c5b4a-DO-NOT-LEAK"
FIVE_LEVELS = {2: "A>>B", 1: "A>B", 0: "A=B", -1: "B>A", -2: "B>>A"}


def quality(text: str) -> int:
    """The quality a test answer declares with ``q=<n>``."""
    match = re.search(r"q=(-?\d+)", text)
    return int(match.group(1)) if match else 0


def five_level(call: Call) -> Reply:
    """The 5-level verdict the answers' qualities call for (difference clipped to +-2)."""
    a, b = answers_in(call)
    diff = max(-2, min(2, quality(a) - quality(b)))
    return Reply(f"Reasoning: compared qualities.\n[[{FIVE_LEVELS[diff]}]]")


def binary(call: Call) -> Reply:
    """The binary verdict the answers' qualities call for."""
    a, b = answers_in(call)
    marker = "A" if quality(a) > quality(b) else "B" if quality(b) > quality(a) else "C"
    return Reply(f"Short reason.\n[[{marker}]]")


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    """A fake OpenAI server on 127.0.0.1 answering binary verdicts by answer quality."""
    with FakeOpenAIServer(binary) as fake:
        yield fake


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    """The judge's API key, set in the environment variable the test judges name."""
    monkeypatch.setenv(KEY_ENV, SECRET)
    return SECRET


JudgeFactory = Callable[..., JudgeConfig]


@pytest.fixture
def judge_for(server: FakeOpenAIServer, api_key: str) -> JudgeFactory:
    """A shipped judge pointed at the fake server, with fast retries."""

    def make(name: str = "pairwise-binary", **changes: object) -> JudgeConfig:
        config = load_judge(default_judges_root() / name).with_overrides(
            base_url=server.base_url, model="fake-judge")
        fast = {"api_key_env": KEY_ENV, "backoff_initial_s": 0.01, "backoff_max_s": 0.05,
                "timeout_s": 5.0, "concurrency": 4}
        return dataclasses.replace(config, **{**fast, **changes})

    return make


MakeRun = Callable[..., RunDir]
JudgeCli = Callable[..., Result]


@pytest.fixture
def judge_cli(server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> JudgeCli:
    """``evalharness judge RUN`` in-process against the fake server: ``judge_cli(run,
    *options, runs_root=None)`` (URL, model and runs root filled in; the key is a dummy)."""
    monkeypatch.setenv("OPENAI_API_KEY", "unused")
    monkeypatch.setenv("COLUMNS", "250")
    app = typer.Typer(pretty_exceptions_enable=False, add_completion=False)
    register(app)

    def invoke(run: RunDir, *options: str, runs_root: Path | None = None) -> Result:
        return CliRunner().invoke(app, [
            "judge", str(run.path), "--judge-url", server.base_url, "--judge-model",
            "fake-judge", "--runs-root", str(runs_root or run.path.parent), *options])

    return invoke


@pytest.fixture
def make_run(tmp_path: Path) -> MakeRun:
    """Write a run directory with a prompt set, a manifest and answers (no model needed).

    ``answers`` maps model name -> prompt id -> text; prompts are ``p0..`` with references.
    """
    counter = iter(range(1000))

    def make(answers: Mapping[str, Mapping[str, str]], *, baseline: str | None = "baseline",
             prompts: list[dict[str, object]] | None = None, root: Path | None = None,
             name: str | None = None) -> RunDir:
        index = next(counter)
        root = root or tmp_path / "runs"
        ids = sorted({pid for by_prompt in answers.values() for pid in by_prompt})
        rows = prompts or [{"id": pid, "prompt": f"Question {pid}?",
                            "reference": f"the reference answer to {pid}",
                            "category": "even" if n % 2 == 0 else "odd"}
                           for n, pid in enumerate(ids)]
        prompt_file = write_jsonl(tmp_path / f"prompts-{index}.jsonl", rows)
        prompt_set = load_prompt_set(prompt_file)
        gen = GenConfig()
        specs = [ModelSpec(name=model, kind="endpoint", base_model="fake",
                           base_fingerprint=f"fp-{model}") for model in answers]
        run = RunDir(root / (name or f"run-{index}"))
        now = utc_now()
        run.write_manifest(Manifest(
            run_id=run.run_id, command="generate", created=now, updated=now, versions={},
            argv=(), backend="fake", candidates=tuple(specs), baseline=baseline, gen=gen,
            prompts=DataRef(name=prompt_set.name, source=str(prompt_file),
                            sha256=prompt_set.sha256, n=len(prompt_set.prompts))))
        log = run.log(ANSWERS, Answer)
        by_id = {p.id: p for p in prompt_set.prompts}
        log.extend(
            Answer(key=answer_key(spec, by_id[pid], gen, "fake"), prompt_id=pid, model=spec.name,
                   model_key=spec.key, text=text, n_tokens=len(text.split()),
                   finish_reason="stop", seconds=0.0)
            for spec in specs for pid, text in answers[spec.name].items())
        log.close()
        return run

    return make
