"""A password in the judge URL and the judge's API key reach no file and no terminal.

`compare` runs for real (its own process, the fake generation backend, an LLM judge on the
loopback OpenAI server) with credentials planted in ``--judge-url`` and the key in the
environment; then every file under the working folder (run directory, runs root, reports,
logs, lock files) and everything printed by `compare`, `show`, `runs` and `report` is searched
for them, after a successful run and after failing ones.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fakes.openai_server import Call, FakeOpenAIServer, Reply
from tests.helpers import judge_folder

REPO = Path(__file__).resolve().parents[2]
USER = "planteduser"
PASSWORD = "PLANTED-PASSWORD-51c7"
KEY = "sk-PLANTED-KEY-9d2e4b7a"
QUERY_KEY = "PLANTED-QUERY-KEY-06af"
KEY_ENV = "EVALHARNESS_REDACTION_TEST_KEY"
# What would betray them in another shape: a Basic header built from the URL's userinfo.
BASIC = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
SECRETS = (PASSWORD, KEY, QUERY_KEY, BASIC)


@dataclass(frozen=True)
class Done:
    code: int
    out: str
    err: str


def secrets_in(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


def leaks(folder: Path) -> dict[str, list[str]]:
    """Every file under ``folder`` (binary ones too) that holds a planted secret."""
    found: dict[str, list[str]] = {}
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            hits = secrets_in(path.read_bytes().decode("utf-8", errors="replace"))
            if hits:
                found[str(path.relative_to(folder))] = hits
    return found


def url(port: int, query: str = "") -> str:
    return f"http://{USER}:{PASSWORD}@127.0.0.1:{port}/v1{query}"


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """The working folder every command runs in (its runs/ is the runs root)."""
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


@pytest.fixture
def judge_dir(work: Path) -> Path:
    """pairwise-binary with the key read from a test variable and quick retries."""
    return judge_folder(work / "judges" / "planted", KEY_ENV, replace=[
        ("retries: 6", "retries: 1"), ("timeout_s: 60", "timeout_s: 5"),
        ("backoff: {initial_s: 1.0, max_s: 60.0}", "backoff: {initial_s: 0.01, max_s: 0.05}")])


def first_wins(call: Call) -> Reply:
    return Reply("The first answer is better.\n[[A]]", prompt_tokens=50, completion_tokens=5)


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(first_wins) as fake:
        yield fake


def evalharness(work: Path, *args: str | Path) -> Done:
    env = {**os.environ, KEY_ENV: KEY, "COLUMNS": "200", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "evalharness", *map(str, args)], cwd=work,
                          env=env, capture_output=True, text=True, timeout=600, check=False)
    return Done(done.returncode, done.stdout, done.stderr)


def compare(work: Path, kit, judge_dir: Path, judge_url: str) -> Done:  # type: ignore[no-untyped-def]
    return evalharness(work, "compare", kit.adapter("qv-r8"), "--backend", "fake",
                       "--prompts", kit.prompts, "--judge", judge_dir, "--judge-url", judge_url,
                       "--judge-model", "fake-judge", "--max-new-tokens", "20",
                       "--runs-root", work / "runs")


def test_no_password_or_key_in_any_file_or_output(kit, work: Path, judge_dir: Path,  # type: ignore[no-untyped-def]
                                                  server: FakeOpenAIServer) -> None:
    port = int(server.base_url.rsplit(":", 1)[1].split("/")[0])
    done = compare(work, kit, judge_dir, url(port))
    assert done.code == 0, done.out + done.err
    assert server.n_calls > 0
    (run,) = (p for p in (work / "runs").iterdir() if (p / "manifest.json").is_file())
    printed = [done]
    printed.append(evalharness(work, "show", run))
    printed.append(evalharness(work, "runs"))
    printed.append(evalharness(work, "report", run, "--format", "html"))
    printed.append(evalharness(work, "report", run, "--format", "md"))
    assert all(p.code == 0 for p in printed), [p.err for p in printed]
    assert (run / "report.html").is_file() and (run / "report.md").is_file()
    for p in printed:
        assert not secrets_in(p.out + p.err), p.out + p.err
    assert leaks(work) == {}
    # The command line is still recorded, with the credentials masked.
    manifest = (run / "manifest.json").read_text()
    assert "http://***@127.0.0.1" in manifest
    assert "\\*\\*\\*@127.0.0.1" in (run / "report.md").read_text()  # Markdown-escaped


def test_the_key_is_sent_as_configured_and_the_url_password_never(  # type: ignore[no-untyped-def]
        kit, work: Path, judge_dir: Path, server: FakeOpenAIServer) -> None:
    port = int(server.base_url.rsplit(":", 1)[1].split("/")[0])
    done = compare(work, kit, judge_dir, url(port))
    assert done.code == 0, done.out + done.err
    headers = [c.headers for c in server.calls]
    assert headers and all(h.get("authorization") == f"Bearer {KEY}" for h in headers)
    assert not any(secrets_in(repr(h).replace(KEY, "")) for h in headers)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_nothing_leaks_when_the_endpoint_is_down(kit, work: Path,  # type: ignore[no-untyped-def]
                                                 judge_dir: Path) -> None:
    done = compare(work, kit, judge_dir, url(free_port(), f"?api_key={QUERY_KEY}"))
    assert done.code != 0
    assert "error" in done.err.lower()
    assert "Traceback" not in done.err
    assert not secrets_in(done.out + done.err), done.out + done.err
    assert leaks(work) == {}


def test_nothing_leaks_when_the_key_is_rejected(kit, work: Path, judge_dir: Path,  # type: ignore[no-untyped-def]
                                                server: FakeOpenAIServer) -> None:
    from tests.fakes.openai_server import Fault

    # An endpoint that echoes the key it was given in its error body, as some do.
    server.responder = lambda call: Fault.server_error(
        401, f"Incorrect API key provided: {call.headers.get('authorization', '')}")
    port = int(server.base_url.rsplit(":", 1)[1].split("/")[0])
    done = compare(work, kit, judge_dir, url(port))
    assert done.code != 0
    assert "Traceback" not in done.err
    assert not secrets_in(done.out + done.err), done.out + done.err
    assert leaks(work) == {}
