"""Many endpoints (``--endpoint`` repeated) against two loopback OpenAI-compatible servers that
load adapters at runtime as vLLM does: affinity, results identical to one endpoint, and a
server killed mid-run losing nothing. The same over two real vLLM servers is in
``tests/vllm/test_endpoint_pool_vllm.py``."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.openai_server import Call, FakeOpenAIServer, Reply
from tests.helpers import read_jsonl

BASE = "served-base"
ADAPTERS = ("qv-r8", "all-r16", "under-qv-r4", "over-all-r32")


def answer(call: Call) -> Reply:
    """What a deterministic server answers: the served model's name and the question."""
    return Reply(f"{call.body['model']} answers: {call.text[:40]}", completion_tokens=7)


@pytest.fixture
def servers() -> Iterator[list[FakeOpenAIServer]]:
    started = [FakeOpenAIServer(answer, models=[BASE], latency=0.01).start() for _ in range(2)]
    try:
        yield started
    finally:
        for server in started:
            server.stop()


def _generate(cli, kit, runs: Path, *urls: str):  # type: ignore[no-untyped-def]
    endpoints = [part for url in urls for part in ("--endpoint", url)]
    return cli("generate", "baseline", *(kit.adapter(a) for a in ADAPTERS), "--prompts",
               kit.prompts, "--backend", "openai", *endpoints, "--runs-root", runs)


def _answers(runs: Path) -> dict[tuple[str, str], str]:
    (run_dir,) = [p for p in runs.iterdir() if (p / "manifest.json").exists()]
    records = read_jsonl(run_dir / "answers.jsonl")
    keys = Counter(r["key"] for r in records)
    assert max(keys.values()) == 1, "an answer was stored twice"
    return {(r["model"], r["prompt_id"]): r["text"] for r in records}


def test_two_endpoints_give_one_endpoints_answers_with_each_adapter_on_one_server(  # type: ignore[no-untyped-def]
        kit, cli, servers, tmp_path: Path) -> None:
    one = FakeOpenAIServer(answer, models=[BASE]).start()
    try:
        alone = _generate(cli, kit, tmp_path / "one", one.base_url)
    finally:
        one.stop()
    assert alone.code == 0, alone.text
    spread = _generate(cli, kit, tmp_path / "two", *(s.base_url for s in servers))
    assert spread.code == 0, spread.text
    # Same answers: the server that computed an answer does not show in it.
    assert _answers(tmp_path / "two") == _answers(tmp_path / "one")
    assert len(_answers(tmp_path / "two")) == 5 * 32
    # Affinity: every adapter loaded on exactly one server and asked only there; two each.
    loads = [s.loads for s in servers]
    assert sorted(name for names in loads for name in names) == sorted(one.loads)
    assert [len(names) for names in loads] == [2, 2]
    for server, names in zip(servers, loads, strict=True):
        asked = {c.body["model"] for c in server.calls}
        assert asked - {BASE} == set(names)
    # The baseline's 32 requests fill the gaps: both servers answer some.
    assert all(sum(c.body["model"] == BASE for c in s.calls) > 0 for s in servers)
    assert sum(s.n_calls for s in servers) == 5 * 32
    # Adapters we loaded are unloaded at the end, on both servers.
    for server in servers:
        assert server._state.models == (BASE,)


def test_a_server_killed_mid_run_has_its_work_moved_and_nothing_is_lost(  # type: ignore[no-untyped-def]
        kit, cli, servers, tmp_path: Path) -> None:
    one = FakeOpenAIServer(answer, models=[BASE]).start()
    try:
        assert _generate(cli, kit, tmp_path / "one", one.base_url).code == 0
    finally:
        one.stop()
    doomed = servers[1]

    def answer_then_die(call: Call) -> Reply:
        if call.index == 20:  # 20 answered, the rest in flight or not sent yet
            threading.Thread(target=doomed.kill).start()
        return answer(call)

    doomed.responder = answer_then_die
    doomed_url = doomed.base_url
    spread = _generate(cli, kit, tmp_path / "two", *(s.base_url for s in servers))
    assert spread.code == 0, spread.text
    assert (f"lost the endpoint {doomed_url} mid-run; its unfinished work moves to the 1 "
            "member(s) left") in " ".join(spread.err.split())
    assert _answers(tmp_path / "two") == _answers(tmp_path / "one")
    # The survivor took over the dead server's adapters: it loaded all four.
    assert sorted(servers[0].loads) == sorted(one.loads)
    manifest = json.loads(next((tmp_path / "two").glob("*/manifest.json")).read_text())
    assert manifest["status"] == "complete"


def test_every_server_lost_stops_with_what_finished_saved_and_a_rerun_resumes(  # type: ignore[no-untyped-def]
        kit, cli, servers, tmp_path: Path) -> None:
    for server in servers:
        def answer_then_die(call: Call, server: FakeOpenAIServer = server) -> Reply:
            if call.index == 10:
                threading.Thread(target=server.kill).start()
            return answer(call)

        server.responder = answer_then_die
    stopped = _generate(cli, kit, tmp_path / "runs", *(s.base_url for s in servers))
    assert stopped.code == 2, stopped.text
    text = " ".join(stopped.err.split())
    (error,) = text.split("error: ")[1:]
    assert "what finished is saved" in error and "rerun to resume" in error
    assert "Traceback" not in text
    saved = _answers(tmp_path / "runs")
    assert 0 < len(saved) < 5 * 32
    fresh = [FakeOpenAIServer(answer, models=[BASE]).start() for _ in range(2)]
    try:
        resumed = _generate(cli, kit, tmp_path / "runs", *(s.base_url for s in fresh))
        asked = sum(s.n_calls for s in fresh)
    finally:
        for server in fresh:
            server.stop()
    assert resumed.code == 0, resumed.text
    assert asked == 5 * 32 - len(saved), "the rerun asked again for answers it had"
    assert len(_answers(tmp_path / "runs")) == 5 * 32


def test_the_same_endpoint_twice_is_refused(kit, cli, servers, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url = servers[0].base_url
    result = _generate(cli, kit, tmp_path / "runs", url, url)
    assert result.code == 2
    assert f"--endpoint {url} is given more than once" in " ".join(result.text.split())
    assert servers[0].n_calls == 0


def test_endpoint_with_a_backend_that_does_not_use_it_is_refused(kit, cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("generate", "baseline", "--prompts", kit.prompts, "--backend", "hf",
                 "--endpoint", "http://127.0.0.1:9/v1", "--runs-root", tmp_path / "runs")
    assert result.code == 2
    assert "--endpoint is a setting of --backend openai" in " ".join(result.text.split())
