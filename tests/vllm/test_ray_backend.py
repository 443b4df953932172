"""``--backend ray`` on a local Ray instance with two CPU actors on the kit: the answers of
the engine run on one machine, the same keys (a Ray run and a local run share a run directory),
perplexity through the actors, and an actor killed mid-run losing nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import read_jsonl
from tests.process_table import TAG_VARIABLE, new_tag, tagged_processes, wait_until_gone
from tests.vllm.conftest import VLLM_ENV

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

MODELS = ("qv-r8", "all-r16")


def _only_run(root: Path) -> Path:
    (run_dir,) = [p for p in root.iterdir() if (p / "manifest.json").exists()]
    return run_dir


def _answers(root: Path) -> dict[tuple[str, str], tuple[str, int]]:
    records = read_jsonl(_only_run(root) / "answers.jsonl")
    assert len({r["key"] for r in records}) == len(records), "an answer was stored twice"
    return {(r["model"], r["prompt_id"]): (r["text"], r["n_tokens"]) for r in records}


def _actors(tag: dict[str, str]) -> list[int]:
    """Process ids of the engine actors among the processes a test's command started."""
    return [int(line.split(":")[0]) for line in tagged_processes(tag)
            if "ray::EngineActor" in line]


def test_vllm_actors_answer_as_the_local_engine_under_the_same_keys(  # type: ignore[no-untyped-def]
        kit, run_cli_subprocess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tag = new_tag()
    monkeypatch.setenv(TAG_VARIABLE, tag[TAG_VARIABLE])  # the Ray instance and its workers too
    args = ("generate", "baseline", *(kit.adapter(m) for m in MODELS), "--prompts",
            kit.prompts, "--max-new-tokens", "16")
    local = run_cli_subprocess(*args, "--backend", "vllm", "--runs-root", tmp_path / "local")
    assert local.returncode == 0, local.stderr[-3000:]
    on_ray = run_cli_subprocess(*args, "--backend", "ray", "--ray-actors", "2", "--verify",
                                "--runs-root", tmp_path / "ray")
    assert on_ray.returncode == 0, on_ray.stderr[-3000:]
    assert _answers(tmp_path / "ray") == _answers(tmp_path / "local")
    assert len(_answers(tmp_path / "ray")) == 3 * 32
    manifest = json.loads((_only_run(tmp_path / "ray") / "manifest.json").read_text())
    assert manifest["backend"] == "ray" and manifest["engine"] == "vllm:default"
    assert manifest["serving_check"].startswith("adapter effect"), "each actor was checked"
    assert wait_until_gone(tag, 60) == [], "an actor, engine or Ray process outlived the run"
    # Same keys: the Ray run finds the local run's answers and starts nothing.
    again = run_cli_subprocess(*args, "--backend", "ray", "--ray-actors", "2",
                               "--runs-root", tmp_path / "local")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "96 already in the run" in again.stdout and "0 computed now" in again.stdout
    assert "Ray" not in again.stderr, "a cluster was started for no work"


def test_a_killed_actor_has_its_work_moved_and_perplexity_matches(  # type: ignore[no-untyped-def]
        kit, run_cli_subprocess, tmp_path: Path) -> None:
    args = ("generate", "baseline", *(kit.adapter(m) for m in MODELS), "--prompts",
            kit.prompts, "--max-new-tokens", "24", "--batch-size", "2")
    local = run_cli_subprocess(*args, "--backend", "hf", "--runs-root", tmp_path / "local")
    assert local.returncode == 0, local.stderr[-3000:]
    root = tmp_path / "ray"
    command = [sys.executable, "-m", "evalharness", *map(str, args), "--backend", "ray",
               "--ray-engine", "hf", "--ray-actors", "2", "--runs-root", str(root)]
    tag = new_tag()
    process = subprocess.Popen(command, cwd=tmp_path, env={**os.environ, **VLLM_ENV, **tag},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = None
    deadline = time.monotonic() + 300
    while killed is None and process.poll() is None and time.monotonic() < deadline:
        answers = list(root.glob("*/answers.jsonl"))
        if answers and len(answers[0].read_text().splitlines()) >= 4:
            killed = _actors(tag)[0]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    _, err = process.communicate(timeout=600)
    assert killed is not None, "the run ended before an actor could be killed"
    assert process.returncode == 0, err[-3000:]
    assert "died (ActorDiedError" in " ".join(err.split())
    assert "its unfinished work moves to the 1 member(s) left" in " ".join(err.split())
    assert _answers(root) == _answers(tmp_path / "local")
    assert wait_until_gone(tag, 60) == [], "an actor or Ray process outlived the run"
    # Perplexity through the actors: the NLLs of the local engine.
    ppl = ("ppl", "baseline", kit.adapter("qv-r8"), "--data", kit.eval_data)
    local_ppl = run_cli_subprocess(*ppl, "--backend", "hf", "--runs-root", tmp_path / "p1")
    ray_ppl = run_cli_subprocess(*ppl, "--backend", "ray", "--ray-engine", "hf",
                                 "--ray-actors", "2", "--runs-root", tmp_path / "p2")
    assert local_ppl.returncode == 0 and ray_ppl.returncode == 0, ray_ppl.stderr[-3000:]

    def nlls(root: Path) -> dict[tuple[str, str], float]:
        return {(r["model"], r["example_id"]): r["nll_sum"]
                for r in read_jsonl(_only_run(root) / "perplexity.jsonl")}

    expected = nlls(tmp_path / "p1")
    assert nlls(tmp_path / "p2").keys() == expected.keys()
    assert all(abs(nlls(tmp_path / "p2")[k] - v) < 1e-4 for k, v in expected.items())


def test_more_actors_than_the_cluster_can_place_is_refused(kit, run_cli_subprocess) -> None:  # type: ignore[no-untyped-def]
    done = run_cli_subprocess("generate", "baseline", kit.adapter("qv-r8"), "--prompts",
                              kit.prompts, "--backend", "ray", "--ray-actors", "64")
    assert done.returncode == 2, done.stderr[-3000:]
    text = " ".join(done.stderr.split())
    assert "--ray-actors 64 needs 64 CPUs" in text and "Traceback" not in text


def test_an_unknown_ray_engine_is_refused_before_anything_starts(kit, cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("generate", "baseline", "--prompts", kit.prompts, "--backend", "ray",
                 "--ray-engine", "tgi", "--runs-root", tmp_path / "runs")
    assert result.code == 2, result.text
    assert "--ray-engine 'tgi' is not known" in " ".join(result.text.split())
    assert not (tmp_path / "runs").exists()
