"""The vLLM backends for real (CPU build): agreement with transformers, the serving self-check,
retrained adapters, server mode, attach mode, and bad input."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import read_jsonl, write_jsonl
from tests.vllm.conftest import VLLM_ENV, vllm_server_processes

pytestmark = [pytest.mark.vllm, pytest.mark.slow]
AGREEMENT = Path(__file__).with_name("agreement.py")


def _answers(run_dir: Path) -> dict[tuple[str, str], str]:
    return {(str(r["model"]), str(r["prompt_id"])): str(r["text"])
            for r in read_jsonl(run_dir / "answers.jsonl")}


def _only_run(root: Path) -> Path:
    (run_dir,) = [p for p in root.iterdir() if (p / "manifest.json").exists()]
    return run_dir


def test_vllm_agrees_with_transformers_on_answers_and_token_nlls(kit) -> None:  # type: ignore[no-untyped-def]
    done = subprocess.run([sys.executable, str(AGREEMENT), str(kit.root)], capture_output=True,
                          text=True, timeout=600, env={**os.environ, **VLLM_ENV}, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
                        .removeprefix("RESULT "))
    print("vLLM vs HF greedy answers identical:", result["same"], "of", result["per_model"],
          "per model; max per-token NLL difference", result["max_nll_diff"])
    for model, same in result["same"].items():
        assert same >= 0.9 * result["per_model"], (model, same)
    assert result["lengths_equal"]
    assert result["max_nll_diff"] <= 1e-3
    for adapter, differing in result["adapter_differs_from_baseline"].items():
        assert differing >= 0.8 * result["per_model"], adapter


def test_self_check_reports_a_no_op_adapter(kit, run_cli_subprocess, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from evalharness.demo.kit import AdapterRecipe, train_adapter

    noop = train_adapter(kit.base, tmp_path / "untrained", AdapterRecipe("untrained", epochs=0))
    done = run_cli_subprocess("generate", "baseline", kit.adapter("qv-r8"), noop, "--prompts",
                              kit.prompts, "--max-new-tokens", "16", "--backend", "vllm",
                              "--verify")
    assert done.returncode == 2, done.stderr[-2000:]
    flat = " ".join(done.stderr.split())
    assert "adapter untrained changes nothing" in flat and "lora_B weights are zero" in flat
    assert "adapter qv-r8 changes nothing" not in flat
    assert "Traceback" not in done.stderr
    run_dir = _only_run(tmp_path / "runs")
    assert not (run_dir / "answers.jsonl").exists(), "answers were generated despite the check"
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "failed"


def test_self_check_catches_base_contamination_with_unsafe_max_loras(  # type: ignore[no-untyped-def]
        kit, run_cli_subprocess) -> None:
    done = run_cli_subprocess("generate", "baseline", kit.adapter("qv-r8"), "--prompts",
                              kit.prompts, "--max-new-tokens", "16", "--backend", "vllm",
                              "--verify", "--max-loras", "1")
    assert done.returncode == 2, done.stderr[-2000:]
    flat = " ".join(done.stderr.split())
    assert "the baseline's log-probs change" in flat and "--max-loras" in flat


def test_retrained_adapter_in_place_gets_new_answers(kit, run_cli_subprocess,  # type: ignore[no-untyped-def]
                                                    tmp_path: Path) -> None:
    from evalharness.demo.kit import AdapterRecipe, train_adapter

    adapter = tmp_path / "my-adapter"
    shutil.copytree(kit.adapter("qv-r8"), adapter)
    prompts = write_jsonl(tmp_path / "p.jsonl", [
        {"id": f"q{i}", "prompt": q} for i, q in enumerate([
            "Where is Harbourview Polytechnic?", "When was Redmoor Community College founded?",
            "What is special about Glenview Institute of Technology?"])])
    command = ("generate", adapter, "--prompts", prompts, "--max-new-tokens", "24",
               "--backend", "vllm")
    first = run_cli_subprocess(*command)
    assert first.returncode == 0, first.stderr[-2000:]
    first_run = _only_run(tmp_path / "runs")
    train_adapter(kit.base, adapter, AdapterRecipe("my-adapter", learning_rate=3e-3, r=8,
                                                   alpha=16, epochs=6, seed=7))
    second = run_cli_subprocess(*command)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "3 computed now" in " ".join(second.stdout.split())
    (second_run,) = [p for p in (tmp_path / "runs").iterdir() if p != first_run]
    assert _answers(second_run) != _answers(first_run)


def test_server_mode_hot_loads_adapters_and_leaves_no_process(kit, run_cli_subprocess,  # type: ignore[no-untyped-def]
                                                             tmp_path: Path) -> None:
    assert vllm_server_processes() == [], "a vLLM server was already running"
    done = run_cli_subprocess("generate", "baseline", kit.adapter("qv-r8"),
                              kit.adapter("all-r16"), "--prompts", kit.prompts,
                              "--max-new-tokens", "24", "--backend", "vllm-server", "--verify")
    assert done.returncode == 0, done.stderr[-2000:]
    run_dir = _only_run(tmp_path / "runs")
    answers = _answers(run_dir)
    assert len(answers) == 96
    differing = sum(answers[("qv-r8", p)] != answers[("baseline", p)]
                    for _, p in answers if _ == "baseline")
    assert differing >= 28
    log = (run_dir / "vllm-server.log").read_text()
    assert "load_lora_adapter" in log and "unload_lora_adapter" in log
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["serving_check"].startswith("adapter effect")
    assert vllm_server_processes() == [], "the server outlived the run"

    # Same models through HF: greedy answers agree with the server's.
    hf = run_cli_subprocess("generate", "baseline", kit.adapter("all-r16"), "--prompts",
                            kit.prompts, "--max-new-tokens", "24", "--runs-root", "hf-runs")
    assert hf.returncode == 0, hf.stderr[-2000:]
    from_hf = _answers(_only_run(tmp_path / "hf-runs"))
    agree = sum(from_hf[key] == answers[key] for key in from_hf)
    assert agree >= 0.9 * len(from_hf)


def test_perplexity_through_the_server_matches_offline(kit, run_cli_subprocess,  # type: ignore[no-untyped-def]
                                                      tmp_path: Path) -> None:
    served = run_cli_subprocess("ppl", "baseline", kit.adapter("qv-r8"), "--data",
                                kit.eval_data, "--backend", "vllm-server", "--ppl-backend",
                                "engine", "--runs-root", "s")
    assert served.returncode == 0, served.stderr[-2000:]
    local = run_cli_subprocess("ppl", "baseline", kit.adapter("qv-r8"), "--data",
                               kit.eval_data, "--runs-root", "h")
    assert local.returncode == 0, local.stderr[-2000:]
    by_server = {(r["model"], r["example_id"]): r for r in
                 read_jsonl(_only_run(tmp_path / "s") / "perplexity.jsonl")}
    by_hf = {(r["model"], r["example_id"]): r for r in
             read_jsonl(_only_run(tmp_path / "h") / "perplexity.jsonl")}
    assert by_server.keys() == by_hf.keys() and len(by_hf) == 64
    for key, record in by_hf.items():
        assert by_server[key]["n_tokens"] == record["n_tokens"]
        assert abs(float(by_server[key]["nll_sum"]) - float(record["nll_sum"])) \
            <= 1e-3 * int(record["n_tokens"]), key


def test_rank_above_the_allowed_limit_is_refused_before_any_engine(kit, cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("generate", kit.adapter("all-r16"), "--prompts", kit.prompts, "--backend",
                 "vllm", "--max-lora-rank", "8")
    assert result.code == 2, result.text
    flat = " ".join(result.text.split())
    assert "adapter all-r16 has rank 16" in flat
    assert "--max-lora-rank is 8. Fix: pass --max-lora-rank 16 or omit it" in flat
    assert not (Path.cwd() / "runs").exists() or not any((Path.cwd() / "runs").iterdir())


def test_port_in_use_is_a_clear_error(kit, cli) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("generate", kit.adapter("qv-r8"), "--prompts", kit.prompts, "--backend",
                     "vllm-server", "--port", str(port))
    assert result.code == 2, result.text
    assert f"port {port} on 127.0.0.1 is already in use" in " ".join(result.text.split())


def test_server_that_never_becomes_ready_is_stopped_and_reported(kit, run_cli_subprocess,  # type: ignore[no-untyped-def]
                                                                tmp_path: Path) -> None:
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"id": "q", "prompt": "Where is Redmoor?"}])
    earlier = run_cli_subprocess("generate", "baseline", kit.adapter("qv-r8"), "--prompts",
                                 prompts, "--max-new-tokens", "8")
    assert earlier.returncode == 0
    run_dir = _only_run(tmp_path / "runs")
    kept = (run_dir / "answers.jsonl").read_bytes()
    done = run_cli_subprocess("generate", "baseline", kit.adapter("qv-r8"), "--prompts",
                              prompts, "--max-new-tokens", "8", "--backend", "vllm-server",
                              "--ready-timeout", "3")
    assert done.returncode == 2, done.stderr[-2000:]
    assert "did not become ready within 3 s" in " ".join(done.stderr.split())
    assert (run_dir / "answers.jsonl").read_bytes() == kept, "earlier answers were touched"
    (failed,) = [p for p in (tmp_path / "runs").iterdir() if p != run_dir]
    assert json.loads((failed / "manifest.json").read_text())["status"] == "failed"
    assert (failed / "vllm-server.log").exists()  # where to read why it was slow
    assert vllm_server_processes() == []


def test_attach_to_a_running_server_with_the_openai_backend(kit, run_cli_subprocess,  # type: ignore[no-untyped-def]
                                                           tmp_path: Path) -> None:
    from evalharness.backends.lora_plan import plan_lora
    from evalharness.backends.vllm_server import VLLMServer
    from evalharness.candidates import resolve_models

    models = resolve_models(["baseline", str(kit.adapter("qv-r8"))])
    server = VLLMServer(plan_lora(models, cpu_build=True), dtype="float32", cpu_build=True,
                        log_path=tmp_path / "server.log")
    server.start()
    try:
        done = run_cli_subprocess("generate", "baseline", kit.adapter("qv-r8"), "--prompts",
                                  kit.prompts, "--max-new-tokens", "16", "--backend", "openai",
                                  "--endpoint", server.url, "--verify")
        assert done.returncode == 0, done.stderr[-2000:]
        import httpx

        served = [m["id"] for m in httpx.get(f"{server.url}/models").json()["data"]]
        assert served == [str(kit.base)], "adapters we loaded were left on the server"
    finally:
        server.stop()
    answers = _answers(_only_run(tmp_path / "runs"))
    assert len(answers) == 64
    assert sum(answers[("qv-r8", p)] != answers[("baseline", p)] for m, p in answers
               if m == "baseline") >= 28
    assert vllm_server_processes() == []


def test_endpoint_down_is_a_clear_error(kit, cli) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    result = cli("generate", "baseline", kit.adapter("qv-r8"), "--prompts", kit.prompts,
                 "--backend", "openai", "--endpoint", f"http://127.0.0.1:{port}/v1")
    assert result.code == 2, result.text
    assert "cannot reach the endpoint" in " ".join(result.text.split())


def test_compare_through_vllm_end_to_end(kit, run_cli_subprocess, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    done = run_cli_subprocess("compare", kit.adapter("all-r16"), "--prompts", kit.prompts,
                              "--ppl-data", kit.eval_data, "--max-new-tokens", "32",
                              "--backend", "vllm")
    assert done.returncode == 0, done.stderr[-2000:]
    run_dir = _only_run(tmp_path / "runs")
    from evalharness.schema import Judgment
    from evalharness.stats import head_to_head

    judgments = [Judgment.model_validate(r) for r in read_jsonl(run_dir / "judgments.jsonl")]
    assert len(judgments) == 64
    expected = head_to_head(judgments, "all-r16", "baseline")
    assert f"{expected.wins}/{expected.ties}/{expected.losses}" in done.stdout
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["backend"] == "vllm" and manifest["status"] == "complete"
    assert manifest["serving_check"].startswith("adapter effect")
    assert (run_dir / "report.html").is_file()
