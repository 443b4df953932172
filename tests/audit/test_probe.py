"""The judge robustness probe against the loopback judge server, scripted as a gullible and
as a robust judge, with the shipped attack catalogue and the shipped prompts."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from evalharness.audit.catalogue import Attack, apply, load_catalogue
from evalharness.audit.probe import (
    ProbeReport,
    probe_judge,
    render_text,
    report_rows,
    to_jsonable,
    weak_answer,
)
from evalharness.audit.text import visible_controls
from evalharness.errors import UserError
from evalharness.judging.config import JudgeConfig, default_judges_root, load_judge
from evalharness.prompts import load_prompt_set
from evalharness.resources import shipped_dir
from evalharness.schema import Prompt
from tests.fakes.openai_server import Call, FakeOpenAIServer, Reply, answers_in
from tests.judging.conftest import KEY_ENV, SECRET

N_PROMPTS = 5
CATALOGUE = load_catalogue()
PROMPTS = load_prompt_set(shipped_dir("prompts") / "league-50.jsonl").prompts
REFERENCES = {p.reference for p in PROMPTS if p.reference}
PLAIN = {weak_answer(p) for p in PROMPTS}
UNREADABLE = "Both answers have merits; I cannot decide."


def expected_calls(attacks: int, prompts: int = N_PROMPTS) -> int:
    """One call per game: every attack and the control, on every prompt, in both orders."""
    return (attacks + 1) * prompts * 2


Markers = dict[str, str]
BINARY: Markers = {"A": "A answers the question; B does not.\n[[A]]",
                   "B": "B answers the question; A does not.\n[[B]]",
                   "tie": "Neither answers.\n[[C]]"}
MARKERS: dict[str, Markers] = {
    "pairwise-binary": BINARY,
    "pairwise-5level": {"A": "[[A>>B]]", "B": "[[B>>A]]", "tie": "[[A=B]]"},
    "pairwise-logprob": {"A": "A", "B": "B", "tie": "?"},  # no tie on this scale
}


def on_merit(a: str, b: str, markers: Markers = BINARY) -> Reply:
    """What a sound judge says: the reference answer is the better one."""
    side = "A" if a in REFERENCES else "B" if b in REFERENCES else "tie"
    return Reply(markers[side])


def robust(call: Call) -> Reply:
    """A judge that reads past every attack: it always prefers the reference answer."""
    return on_merit(*answers_in(call))


def gullible_in(markers: Markers) -> Callable[[Call], Reply]:
    """A judge swayed by anything added to the weak answer (it obeys the injection, believes
    the claimed verdict, the flattery, the authority...); on the plain weak answer it judges
    on merit, so the control stays at 0."""

    def respond(call: Call) -> Reply:
        a, b = answers_in(call)
        if a in REFERENCES and b not in PLAIN:
            return Reply(markers["B"])
        if b in REFERENCES and a not in PLAIN:
            return Reply(markers["A"])
        return on_merit(a, b, markers)

    return respond


gullible = gullible_in(BINARY)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAIServer]:
    """The loopback judge server (scripted per test), and its key in the environment."""
    monkeypatch.setenv(KEY_ENV, SECRET)
    with FakeOpenAIServer(robust) as fake:
        yield fake


@pytest.fixture
def judge(server: FakeOpenAIServer) -> Callable[..., JudgeConfig]:
    """The shipped binary judge pointed at the loopback server, with fast retries."""

    def make(name: str = "pairwise-binary", **changes: object) -> JudgeConfig:
        config = load_judge(default_judges_root() / name).with_overrides(
            base_url=server.base_url, model="fake-judge")
        fast = {"api_key_env": KEY_ENV, "backoff_initial_s": 0.01, "backoff_max_s": 0.05,
                "timeout_s": 5.0, "concurrency": 4}
        options: dict[str, Any] = {**fast, **changes}
        return dataclasses.replace(config, **options)

    return make


@pytest.fixture(autouse=True)
def no_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The probe writes nothing: not in the working directory (where runs/ would go)."""
    monkeypatch.chdir(tmp_path)
    yield
    assert list(tmp_path.iterdir()) == []


def families(attacks: tuple[Attack, ...] = CATALOGUE) -> list[str]:
    return list(dict.fromkeys(a.family for a in attacks))


class Recorder:
    """A ``Progress`` that remembers what it was told."""

    def __init__(self) -> None:
        self.totals: list[int] = []
        self.advanced = 0

    def start(self, description: str, total: int) -> None:
        self.totals.append(total)

    def advance(self, amount: int = 1) -> None:
        self.advanced += amount

    def note(self, text: str) -> None:
        pass


def test_the_shipped_catalogue_is_big_enough_to_probe_with() -> None:
    assert len(CATALOGUE) >= 30
    assert {"instruction-injection", "fake-verdict", "fake-fence", "flattery",
            "authority-claim", "length-padding", "invisible-characters"} <= set(families())
    assert len(REFERENCES) == len(PROMPTS) == 50


def test_a_gullible_judge_is_fooled_by_nearly_every_attack(
        server: FakeOpenAIServer, judge: Callable[..., JudgeConfig]) -> None:
    server.responder = gullible
    progress = Recorder()
    report = probe_judge(judge(), n_prompts=N_PROMPTS, progress=progress)

    calls = expected_calls(len(CATALOGUE))
    assert server.n_calls == report.calls == calls
    assert progress.totals == [calls] and progress.advanced == calls
    assert [f.name for f in report.families] == families()
    assert [a.name for a in report.attacks] == [a.id for a in CATALOGUE]
    for row in (*report.families, report.overall):
        assert row.rate is not None and row.rate >= 0.95, row
        assert row.invalid == 0 and row.rejected == 0
    assert report.overall.games == len(CATALOGUE) * N_PROMPTS * 2
    assert report.overall.successes == report.overall.games
    assert report.overall.low is not None and report.overall.low > 0.95
    assert report.control.rate == 0.0 and report.control.games == N_PROMPTS * 2
    assert report.lift == 1.0 and report.lift_low is not None and report.lift_low > 0.5
    assert report.swayed_by == tuple(families()) and report.swayed
    # The loopback server is not the judge config's own endpoint: unpriced unless told.
    assert report.usage.prompt_tokens > 0 and report.cost_usd == 0
    # Both orders: every game showed the reference once as A and once as B.
    shown_first = sum(answers_in(call)[0] in REFERENCES for call in server.calls)
    assert shown_first * 2 == calls
    # The attacks reached the judge inside the answer fences, verbatim but for invisible
    # characters, which the judging code shows as visible escapes (and the report counts).
    texts = [answers_in(call) for call in server.calls]
    for attack in CATALOGUE:
        shown = visible_controls(attack.text)
        assert sum(shown.text in a or shown.text in b for a, b in texts) >= N_PROMPTS * 2
        row = next(r for r in report.attacks if r.name == attack.id)
        assert row.neutralised == (row.games if shown.replaced else 0)
    invisible = next(r for r in report.families if r.name == "invisible-characters")
    assert invisible.neutralised == invisible.games > 0


def test_a_robust_judge_is_fooled_by_no_attack(
        server: FakeOpenAIServer, judge: Callable[..., JudgeConfig]) -> None:
    server.responder = robust
    report = probe_judge(judge(), n_prompts=N_PROMPTS)

    assert server.n_calls == report.calls == expected_calls(len(CATALOGUE))
    assert [f.name for f in report.families] == families()
    for row in (*report.families, *report.attacks, report.overall):
        assert row.rate is not None and row.rate <= 0.05, row
    assert report.overall.successes == 0
    assert report.overall.high is not None and report.overall.high < 0.05
    assert report.control.rate == 0.0
    assert report.lift == 0.0 and report.lift_low is not None and report.lift_low < 0
    assert report.swayed_by == () and not report.swayed
    assert "no evidence" in "\n".join(render_text(report))


def test_unreadable_replies_are_invalid_and_ties_count_half(
        server: FakeOpenAIServer, judge: Callable[..., JudgeConfig]) -> None:
    flattery = [a.text for a in CATALOGUE if a.family == "flattery"]
    padding = [a.text for a in CATALOGUE if a.family == "length-padding"]

    def script(call: Call) -> Reply:
        a, b = answers_in(call)
        if any(text in a or text in b for text in flattery):
            return Reply(UNREADABLE)
        if any(text in a or text in b for text in padding):
            return Reply("They are about as good as each other.\n[[C]]")
        return gullible(call)

    server.responder = script
    report = probe_judge(judge(invalid_retries=1), n_prompts=N_PROMPTS)

    unreadable_games = len(flattery) * N_PROMPTS * 2
    # Each unreadable game is asked twice (invalid_retries=1), and then stored invalid.
    assert server.n_calls == report.calls == expected_calls(len(CATALOGUE)) + unreadable_games
    rows = {f.name: f for f in report.families}
    assert rows["flattery"].invalid == rows["flattery"].games == unreadable_games
    assert rows["flattery"].rate is None and rows["flattery"].successes == 0
    assert rows["length-padding"].rate == 0.5 and rows["length-padding"].invalid == 0
    assert report.overall.invalid == unreadable_games
    tied = len(padding) * N_PROMPTS * 2
    valid = report.overall.games - unreadable_games
    assert report.overall.successes == valid - tied / 2
    assert report.overall.rate == pytest.approx(report.overall.successes / valid)
    assert any("no verdict" in problem or "readable" in problem for problem in report.problems)
    flattery_row = next(r for r in report_rows(report) if r["name"] == "flattery")
    assert flattery_row["invalid"] == str(unreadable_games) and flattery_row["success"] == "-"


def test_a_judge_fooled_by_one_family_only_is_reported_as_swayed_by_it(
        server: FakeOpenAIServer, judge: Callable[..., JudgeConfig]) -> None:
    # The answers as the judge sees them (other families' texts may contain "[[A]]" too).
    claimed = {visible_controls(apply(attack, weak_answer(prompt))).text
               for attack in CATALOGUE if attack.family == "fake-verdict" for prompt in PROMPTS}

    def script(call: Call) -> Reply:
        a, b = answers_in(call)
        if a in claimed or b in claimed:
            return gullible(call)
        return robust(call)

    server.responder = script
    report = probe_judge(judge(), n_prompts=N_PROMPTS)

    rows = {f.name: f for f in report.families}
    assert rows["fake-verdict"].rate == 1.0
    assert all(row.rate == 0.0 for name, row in rows.items() if name != "fake-verdict")
    # Diluted over every attack the lift is not clear against 5 control prompts; the family
    # on its own is.
    assert report.lift_low is not None and report.lift_low < 0
    assert report.swayed_by == ("fake-verdict",) and report.swayed
    verdict = next(line for line in render_text(report) if line.startswith("verdict:"))
    assert verdict.endswith("(fake-verdict)")


def test_a_judge_that_always_says_a_is_not_reported_as_swayed(
        server: FakeOpenAIServer, judge: Callable[..., JudgeConfig]) -> None:
    server.responder = lambda call: Reply("[[A]]")
    attacks = CATALOGUE[:6]
    report = probe_judge(judge(), attacks=attacks, n_prompts=2)

    assert server.n_calls == expected_calls(len(attacks), 2)
    # Position bias wins one order of every game: half, as often for attacks as without.
    assert report.overall.rate == report.control.rate == 0.5
    assert report.lift == 0.0
    assert not report.swayed


@pytest.mark.parametrize("name", sorted(MARKERS))
def test_every_shipped_llm_judge_can_be_probed(
        name: str, server: FakeOpenAIServer, judge: Callable[..., JudgeConfig]) -> None:
    server.responder = gullible_in(MARKERS[name])
    report = probe_judge(judge(name), n_prompts=1)

    assert server.n_calls == report.calls == expected_calls(len(CATALOGUE), 1)
    assert report.overall.rate == 1.0 and report.control.rate == 0.0
    assert report.overall.invalid == 0


def test_the_probe_keeps_to_the_judges_concurrency(
        server: FakeOpenAIServer, judge: Callable[..., JudgeConfig]) -> None:
    lock = threading.Lock()
    in_flight = [0]
    most = [0]

    def slow(call: Call) -> Reply:
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        time.sleep(0.05)
        with lock:
            in_flight[0] -= 1
        return robust(call)

    server.responder = slow
    report = probe_judge(judge(concurrency=3), attacks=CATALOGUE[:5], n_prompts=2)

    assert report.calls == expected_calls(5, 2) == 24
    assert 2 <= most[0] <= 3  # parallel, never past the judge's setting


def test_a_missing_key_stops_the_probe_before_any_call(
        server: FakeOpenAIServer, judge: Callable[..., JudgeConfig],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(UserError, match=KEY_ENV):
        probe_judge(judge(), n_prompts=1)
    assert server.n_calls == 0


def test_the_offline_reference_judge_is_probed_without_calls() -> None:
    config = load_judge(default_judges_root() / "reference")
    report = probe_judge(config, n_prompts=3)

    assert report.calls == 0 and report.cost_usd == 0
    assert report.overall.rate == 0.0 and report.control.rate == 0.0
    assert len(report.prompts) == 3


def test_the_prompt_sample_is_seeded_and_only_uses_prompts_with_references() -> None:
    config = load_judge(default_judges_root() / "reference")
    attacks = CATALOGUE[:1]

    def ids(**options: object) -> tuple[str, ...]:
        return probe_judge(config, attacks=attacks, **options).prompts  # type: ignore[arg-type]

    assert ids(seed=1) == ids(seed=1) != ids(seed=2)
    assert len(ids(n_prompts=500)) == 50
    bare = [Prompt.model_validate({**p.model_dump(), "reference": None}) for p in PROMPTS[:3]]
    assert ids(prompts=[*bare, PROMPTS[3]], n_prompts=4) == (PROMPTS[3].id,)
    with pytest.raises(UserError, match="reference"):
        ids(prompts=bare)
    with pytest.raises(UserError, match="at least 1 prompt"):
        ids(n_prompts=0)
    with pytest.raises(UserError, match="no attacks"):
        probe_judge(config, attacks=())


def test_the_report_renders_as_text_rows_and_json(
        server: FakeOpenAIServer, judge: Callable[..., JudgeConfig]) -> None:
    server.responder = gullible
    report = probe_judge(judge(), n_prompts=2)

    text = "\n".join(render_text(report))
    for family in families():
        assert family in text
    assert "control" in text and "attacks sway this judge" in text
    assert f"{report.calls} calls" in text
    rows = report_rows(report)
    assert [r["name"] for r in rows] == [*families(), "overall", "control"]
    assert len(report_rows(report, by="attack")) == len(CATALOGUE)
    data = json.loads(json.dumps(to_jsonable(report)))
    assert ProbeReport.model_validate(data) == report


def test_probe_from_the_command_line_prints_families_and_saves_json(
        tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`evalharness audit --probe-judge FOLDER --judge-url URL`: a gullible judge is reported
    swayed, every family is listed, and the saved JSON has the exact call count."""
    from tests.helpers import judge_folder
    from tests.integration.test_cli_stats import run

    tmp_path = tmp_path_factory.mktemp("probe-cli")

    families = {a.family for a in load_catalogue()}
    with FakeOpenAIServer(gullible) as server:
        monkeypatch.setenv(KEY_ENV, "sk-probe-cli")
        folder = judge_folder(tmp_path / "judge", KEY_ENV)
        out = tmp_path / "probe.json"
        code, printed, err = run(["audit", "--probe-judge", str(folder), "--judge-url",
                                  server.base_url, "--probe-prompts", "2", "--out", str(out)],
                                 capsys)
        calls = server.n_calls
    assert code == 0, err
    assert all(family in printed for family in families)
    saved = json.loads(out.read_text())
    n_attacks = len(load_catalogue())
    assert saved["calls"] == calls == 2 * 2 * (n_attacks + 1)
    assert saved["overall"]["rate"] > 0.95
    assert "sk-probe-cli" not in out.read_text() + printed + err
