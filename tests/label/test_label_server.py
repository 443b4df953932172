"""The labelling server over real HTTP on 127.0.0.1 (urllib), and the command around it."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from evalharness.errors import UserError
from evalharness.label.games import load_games, plan_games
from evalharness.label.server import LabelServer, serve
from evalharness.schema import Manifest
from evalharness.store import ANSWERS, JUDGMENTS, RunDir
from tests.label.conftest import MODELS, N_GAMES, LabelRun, build_label_run
from tests.report.conftest import BASELINE, INVALID_PROMPT, STRONG, WEAK

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def fetch(url: str, data: bytes | None = None, headers: dict[str, str] | None = None,
          method: str | None = None) -> Reply:
    request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return Reply(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as error:
        return Reply(error.code, dict(error.headers), error.read())


def token_of(server: LabelServer) -> str:
    html = fetch(server.url).body.decode()
    found = re.search(r'<meta name="label-token" content="([^"]+)">', html)
    assert found is not None
    return found.group(1)


def post(server: LabelServer, body: dict[str, Any], token: str | None = None,
         headers: dict[str, str] | None = None) -> Reply:
    sent = {"Content-Type": "application/json",
            "X-Label-Token": token if token is not None else token_of(server), **(headers or {})}
    return fetch(server.url + "api/label", json.dumps(body).encode(), sent)


def state(server: LabelServer, annotator: str | None = None) -> dict[str, Any]:
    query = f"?annotator={annotator}" if annotator else ""
    reply = fetch(server.url + "api/state" + query)
    assert reply.status == 200, reply.body
    return dict(reply.json())


@pytest.fixture
def run(tmp_path: Path) -> LabelRun:
    return build_label_run(tmp_path)


@pytest.fixture
def server(run: LabelRun) -> Iterator[LabelServer]:
    with serve(run.run_dir, ["alice", "bob"]) as running:
        yield running


def test_every_game_is_blind_and_each_label_lands_on_disk_as_shown(
    server: LabelServer, run: LabelRun
) -> None:
    token = token_of(server)
    choices = ["left", "right", "tie"]
    shown: list[tuple[str, str, str, str]] = []
    current = state(server, "alice")
    assert (current["labelled"], current["total"]) == (0, N_GAMES)
    while not current["done"]:
        game = current["game"]
        # No model name anywhere in what the page receives (the answers carry none).
        text = json.dumps(current)
        assert not any(name in text for name in MODELS), text
        choice = choices[len(shown) % 3]
        shown.append((game["prompt_id"], game["left"], game["right"], choice))
        reply = post(server, {"annotator": "alice", "game": game["id"], "choice": choice},
                     token)
        assert reply.status == 200 and reply.json()["stored"] is True
        current = reply.json()["state"]
        assert current["labelled"] == len(shown)
    labels = run.labels("alice")
    assert len(labels) == N_GAMES == len({j.key for j in labels})
    for label, (prompt_id, left, right, choice) in zip(labels, shown, strict=True):
        assert label.prompt_id == prompt_id
        assert label.first == run.model_shown(prompt_id, left)
        assert label.second == run.model_shown(prompt_id, right)
        assert BASELINE in (label.first, label.second)
        assert label.winner == label.verdict == {"left": "A", "right": "B", "tie": "tie"}[choice]
        assert (label.first_length, label.second_length) == (len(left), len(right))
        assert label.raw == "" and label.category in {"advice", "policy", "programme"}
    # Both sides are used: the candidate is not always on the same side.
    assert 10 < sum(j.first == BASELINE for j in labels) < N_GAMES - 10
    # The same game again (another tab, a double press) adds nothing.
    again = post(server, {"annotator": "alice", "game": "0", "choice": "right"}, token)
    assert again.status == 200 and again.json()["stored"] is False
    assert len(run.labels("alice")) == N_GAMES
    # The second annotator has labelled nothing and is offered every game.
    assert (state(server, "bob")["labelled"], state(server, "bob")["game"]["id"]) == (0, "0")


def test_skip_stores_nothing_and_the_game_comes_back_last(server: LabelServer,
                                                          run: LabelRun) -> None:
    token = token_of(server)
    first = state(server, "bob")["game"]
    reply = post(server, {"annotator": "bob", "game": first["id"], "choice": "skip"}, token)
    after = reply.json()["state"]
    assert after["game"]["id"] != first["id"]
    assert (after["labelled"], after["skipped"]) == (0, 1)
    assert run.labels("bob") == []
    while after["game"]["id"] != first["id"]:
        after = post(server, {"annotator": "bob", "game": after["game"]["id"],
                              "choice": "tie"}, token).json()["state"]
    assert after["game"]["again"] is True and after["labelled"] == N_GAMES - 1
    assert after["game"]["left"] == first["left"]  # the same sides as before
    done = post(server, {"annotator": "bob", "game": first["id"], "choice": "left"},
                token).json()["state"]
    assert done["done"] is True and done["game"] is None and done["skipped"] == 0


def test_headers_forbid_everything_but_the_page_itself(server: LabelServer) -> None:
    page = fetch(server.url)
    assert page.status == 200
    csp = page.headers["Content-Security-Policy"]
    for rule in ("default-src 'none'", "connect-src 'self'", "img-src 'none'",
                 "form-action 'none'", "frame-ancestors 'none'", "base-uri 'none'"):
        assert rule in csp
    assert "unsafe" not in csp
    # The policy names exactly the page's own inline script and style.
    html = page.body.decode()
    for tag in ("script", "style"):
        body = re.search(rf"<{tag}>(.*?)</{tag}>", html, re.DOTALL)
        assert body is not None
        digest = base64.b64encode(hashlib.sha256(body.group(1).encode()).digest()).decode()
        assert f"{tag}-src 'sha256-{digest}'" in csp
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    api = fetch(server.url + "api/state?annotator=alice")
    assert api.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert api.headers["X-Content-Type-Options"] == "nosniff"
    assert api.headers["Content-Type"] == "application/json"
    assert fetch(server.url + "favicon.ico").status == 204
    assert fetch(server.url + "etc/passwd").status == 404
    assert fetch(server.url + "api/state?annotator=mallory").status == 404
    assert state(server) == {"annotators": ["alice", "bob"]}  # two people: a chooser


def test_writes_from_other_origins_are_refused(server: LabelServer, run: LabelRun) -> None:
    token = token_of(server)
    label = {"annotator": "alice", "game": "0", "choice": "left"}
    port = server.url.rsplit(":", 1)[1].rstrip("/")
    refused = [
        post(server, label, token, {"Origin": "http://evil.example"}),
        post(server, label, token, {"Origin": "null"}),
        post(server, label, token, {"Sec-Fetch-Site": "cross-site"}),
        post(server, label, token, {"Host": f"evil.example:{port}"}),  # DNS rebinding
        post(server, label, "wrong-token"),
        post(server, label, ""),
        post(server, label, token, {"Content-Type": "text/plain"}),
        fetch(server.url + "api/label", b"annotator=alice&game=0&choice=left",
              {"Content-Type": "application/x-www-form-urlencoded"}),
        fetch(server.url + "api/label", method="OPTIONS"),  # no CORS preflight is granted
    ]
    assert [r.status for r in refused] == [403, 403, 403, 403, 403, 403, 415, 403, 501]
    assert fetch(server.url, headers={"Host": f"evil.example:{port}"}).status == 403
    assert run.labels("alice") == []
    same_origin = post(server, label, token, {"Origin": server.url.rstrip("/"),
                                              "Sec-Fetch-Site": "same-origin"})
    assert same_origin.status == 200 and len(run.labels("alice")) == 1


def test_bad_requests_are_refused_with_a_reason(server: LabelServer) -> None:
    token = token_of(server)
    for body, status in (({"annotator": "alice", "game": "0", "choice": "maybe"}, 400),
                         ({"annotator": "alice", "game": "999", "choice": "left"}, 400),
                         ({"annotator": "alice", "game": 0, "choice": "left"}, 400),
                         ({"annotator": "eve", "game": "0", "choice": "left"}, 404)):
        reply = post(server, body, token)
        assert reply.status == status and reply.json()["error"]
    big = fetch(server.url + "api/label", b"x" * 10_000,
                {"Content-Type": "application/json", "X-Label-Token": token})
    assert big.status == 413


def test_a_restarted_server_resumes_and_the_manifest_lists_each_session(run: LabelRun) -> None:
    with serve(run.run_dir, "alice", argv=["evalharness", "label", "RUN"]) as first:
        token = token_of(first)
        ids = []
        for _ in range(3):
            game = state(first)["game"]
            ids.append(game["id"])
            post(first, {"annotator": "alice", "game": game["id"], "choice": "left"}, token)
    with serve(run.run_dir, "alice") as second:
        resumed = state(second)
        assert (resumed["labelled"], resumed["game"]["id"]) == (3, "3")
        assert ids == ["0", "1", "2"]
    manifest = RunDir(run.run_dir).read_manifest()
    assert [i.command for i in manifest.invocations] == ["label", "label"]
    assert manifest.invocations[0].argv == ("evalharness", "label", "RUN")
    assert manifest.status == "complete" and manifest.command == "compare"  # still its run
    lines = (run.run_dir / JUDGMENTS).read_text().count("\n")
    assert manifest.counts[JUDGMENTS] == lines


def test_plans_order_the_games(run: LabelRun) -> None:
    games = load_games(RunDir(run.run_dir))
    assert games.judged and len(games.games) == N_GAMES
    disputed = plan_games(games.games, "disagreements", seed=0)
    # Planted: one invalid verdict and two games whose orders disagree (tests/report).
    assert {(g.prompt_id, g.candidate.model) for g in disputed[:3]} == {
        (INVALID_PROMPT, STRONG), ("vet-08", STRONG), ("vet-12", WEAK)}
    assert not any(g.disputed for g in disputed[3:])
    per_candidate = plan_games(games.games, "per-candidate", seed=0)
    assert [g.candidate.model for g in per_candidate[:4]] == [STRONG, WEAK, STRONG, WEAK]
    shuffled = plan_games(games.games, "random", seed=1)
    assert shuffled == plan_games(games.games, "random", seed=1)
    assert shuffled != plan_games(games.games, "random", seed=2)
    assert sorted(map(id, shuffled)) == sorted(map(id, games.games))
    assert len(plan_games(games.games, "random", seed=1, limit=7)) == 7
    with pytest.raises(UserError, match="Fix: use --plan"):
        plan_games(games.games, "worst-first", seed=0)


def test_the_limit_caps_the_games_offered(run: LabelRun) -> None:
    with serve(run.run_dir, "alice", plan="per-candidate", limit=4) as server:
        assert state(server)["total"] == 4


def test_an_unjudged_run_offers_every_candidate_against_the_baseline(run: LabelRun) -> None:
    (run.run_dir / JUDGMENTS).unlink()
    games = load_games(RunDir(run.run_dir))
    assert not games.judged and len(games.games) == N_GAMES
    assert {g.baseline.model for g in games.games} == {BASELINE}


def test_bad_annotator_names_are_refused_before_anything_is_written(run: LabelRun) -> None:
    before = (run.run_dir / "manifest.json").read_bytes()
    for name in ("Ana Lopez", "", "x" * 41, "ana/../..", "ana:b", "<b>"):
        with pytest.raises(UserError, match=r"Fix: pass e\.g\. --annotator ana"):
            serve(run.run_dir, name)
    assert (run.run_dir / "manifest.json").read_bytes() == before
    assert not (run.run_dir / ".lock").exists()


def test_a_run_without_answers_names_the_fix(run: LabelRun, tmp_path: Path) -> None:
    (run.run_dir / ANSWERS).unlink()
    with pytest.raises(UserError, match=r"no answers .*Fix: label a run made by"):
        serve(run.run_dir, "alice")
    with pytest.raises(UserError, match="not a run directory"):
        serve(tmp_path / "nowhere", "alice")


def test_a_run_without_a_baseline_names_the_fix(run: LabelRun) -> None:
    manifest: Manifest = RunDir(run.run_dir).read_manifest()
    RunDir(run.run_dir).write_manifest(manifest.model_copy(update={"baseline": None}))
    with pytest.raises(UserError, match=r"names no baseline.*Fix"):
        serve(run.run_dir, "alice")


_CLI = ("import sys\n"
        "from evalharness import cli\n"
        "from evalharness.label import cli as label_cli\n"
        "if not any(c.name == 'label' for c in cli.app.registered_commands):\n"
        "    label_cli.register(cli.app)\n"
        "cli.main(sys.argv[1:])\n")


def _cli(*args: str | Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    return subprocess.Popen([sys.executable, "-c", _CLI, *map(str, args)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_the_command_serves_until_ctrl_c_and_says_what_was_saved(run: LabelRun) -> None:
    process = _cli("label", run.run_dir, "--annotator", "ana", "--no-browser")
    try:
        assert process.stdout is not None
        lines: list[str] = []
        while not (lines and lines[-1].startswith("open ")):
            line = process.stdout.readline()
            assert line, process.stderr.read() if process.stderr else ""
            lines.append(line.strip())
        assert lines[0].endswith(f"{N_GAMES} games the judge played (plan random)")
        assert lines[1] == f"ana: 0 labelled, {N_GAMES} to go"
        url = lines[-1].removeprefix("open ")
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", url)
        html = fetch(url).body.decode()
        token = re.search(r'content="([^"]+)">', html.split("label-token")[1])
        assert token is not None
        reply = fetch(url + "api/label", json.dumps({"annotator": "ana", "game": "0",
                                                     "choice": "tie"}).encode(),
                      {"Content-Type": "application/json", "X-Label-Token": token.group(1)})
        assert reply.status == 200
        # A second writer is refused while the server holds the run's lock.
        other = _cli("label", run.run_dir, "--annotator", "bo", "--no-browser")
        out, err = other.communicate(timeout=60)
        assert other.returncode == 2
        assert "being written by another evalharness process" in err
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 130
    assert "saved 1 label (ana: 1 of 50 labelled)" in out
    assert f"next: evalharness agree {run.run_dir}" in out
    assert "interrupted" in err
    assert [j.winner for j in run.labels("ana")] == ["tie"]


def test_the_command_refuses_a_bad_name_with_exit_2(run: LabelRun) -> None:
    process = _cli("label", run.run_dir, "--annotator", "Ana Lopez", "--no-browser")
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "annotator name 'Ana Lopez' cannot be used" in err and "Fix:" in err


def test_labels_are_read_downstream_as_a_human_rater(server: LabelServer, run: LabelRun,
                                                     cli: Any) -> None:
    token = token_of(server)
    current = state(server, "alice")
    for n in range(12):
        current = post(server, {"annotator": "alice", "game": current["game"]["id"],
                                "choice": ["left", "right", "tie"][n % 3]},
                       token).json()["state"]
    result = cli("agree", run.run_dir)
    assert result.code == 0, result.text
    assert "pairwise-binary (judge) vs human:alice (human)" in result.out


def test_the_games_of_a_jury_run_are_its_jurors(run: LabelRun) -> None:
    from evalharness.label.games import machine_judgments
    from evalharness.schema import Judgment

    def game(judge: str) -> Judgment:
        return Judgment(key=judge, prompt_id="p", judge=judge, first="c", second=BASELINE,
                        verdict="A", winner="A")

    found = [game(name) for name in ("a", "b", "other", "human:ana")]
    manifest = RunDir(run.run_dir).read_manifest()
    jury = manifest.model_copy(update={"jury": {"a": "f1", "b": "f2"}, "judge": "a"})
    assert [j.judge for j in machine_judgments(found, jury)] == ["a", "b"]
    one = manifest.model_copy(update={"judge": "other"})
    assert [j.judge for j in machine_judgments(found, one)] == ["other"]
    unnamed = manifest.model_copy(update={"judge": None})
    assert [j.judge for j in machine_judgments(found, unnamed)] == ["a", "b", "other"]


def test_a_busy_port_is_refused_and_leaves_the_run_free(run: LabelRun) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UserError, match=r"cannot serve on 127\.0\.0\.1.*Fix: pass --port 0"):
            serve(run.run_dir, "alice", port=port)
    assert RunDir(run.run_dir).read_manifest().invocations == ()  # nothing recorded
    with serve(run.run_dir, "alice") as server:  # the lock was released
        assert state(server)["total"] == N_GAMES
