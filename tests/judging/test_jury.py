"""A jury of two LLM judges on one run (`judge RUN --judge a --judge b`), end to end.

Two copies of the shipped binary judge, named ``judge-a`` and ``judge-b`` and asking for the
models ``model-a`` and ``model-b``, are served by one loopback server scripted per model:
``judge-a`` judges on merit (the higher ``q=`` wins), ``judge-b`` agrees except on prompts
``p0`` and ``p1``, where it names the other answer. A jury of two by majority is a tie on
those prompts' games and the shared verdict elsewhere (docs/judging.md, "Juries").
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evalharness.cli import main
from evalharness.schema import Judgment
from evalharness.store import JUDGMENTS, JsonlLog
from tests.fakes.openai_server import Call, FakeOpenAIServer, Reply, answers_in
from tests.helpers import judge_folder
from tests.judging.conftest import KEY_ENV, MakeRun, quality

DISPUTED = ("p0", "p1")


def _scripted(call: Call) -> Reply:
    a, b = answers_in(call)
    merit = "A" if quality(a) > quality(b) else "B"
    if call.body.get("model") == "model-b" and any(f"answer {p} " in a for p in DISPUTED):
        merit = "B" if merit == "A" else "A"
    return Reply(f"Because.\n[[{merit}]]")


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out, err = capsys.readouterr()
    code = exit_info.value.code
    return (code if isinstance(code, int) else 0), out, err


def test_a_jury_of_two_disagreeing_judges(make_run: MakeRun, tmp_path: Path, api_key: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    answers = {"lora": {f"p{i}": f"lora answer p{i} q=2" for i in range(6)},
               "baseline": {f"p{i}": f"base answer p{i} q=1" for i in range(6)}}
    run = make_run(answers)
    folders = [judge_folder(tmp_path / f"judge-{x}", KEY_ENV,
                            replace=[("model: gpt-4o-mini", f"model: model-{x}")])
               for x in "ab"]
    third = judge_folder(tmp_path / "judge-c", KEY_ENV,
                         replace=[("model: gpt-4o-mini", "model: model-c")])
    with FakeOpenAIServer(_scripted) as server:
        code, out, err = _cli(["judge", str(run.path), "--judge", str(folders[0]), "--judge",
                               str(folders[1]), "--judge-url", server.base_url], capsys)
        calls = server.n_calls
        # A juror alone resumes its own games (nothing left: only the endpoint check)...
        again = _cli(["judge", str(run.path), "--judge", str(folders[0]), "--judge-url",
                      server.base_url], capsys)
        resumed = server.n_calls - calls
        # ... while a new judge alone would pool its verdicts with the jury's: refused.
        refused = _cli(["judge", str(run.path), "--judge", str(third), "--judge-url",
                        server.base_url], capsys)
        refused_calls = server.n_calls - calls - resumed
    assert code == 0, err
    # Two jurors x six prompts x both orders, plus each juror's one-token endpoint check.
    assert calls == 2 * 6 * 2 + 2
    assert again[0] == 0 and resumed == 1
    assert refused[0] == 2 and "form a jury" in refused[2] and refused_calls == 0
    records = JsonlLog(run.path / JUDGMENTS, Judgment).read()
    assert sorted({j.judge for j in records}) == ["judge-a", "judge-b"]
    manifest = json.loads((run.path / "manifest.json").read_text())
    assert set(manifest["jury"]) == {"judge-a", "judge-b"}
    assert "jury: judge-a, judge-b" in " ".join(out.split())

    code, out, _ = _cli(["stats", str(run.path / JUDGMENTS), "--format", "json"], capsys)
    assert code == 0
    stats = json.loads(out)
    assert stats["judges"] == ["jury"]
    (lora,) = stats["candidates"]
    h2h = lora["head_to_head"]
    # 4 agreed prompts won in both orders; the 2 disputed ones tied in both orders.
    assert (h2h["wins"], h2h["ties"], h2h["losses"]) == (8, 4, 0)
    assert h2h["win_rate"] == pytest.approx((4 * 1.0 + 2 * 0.5) / 6)

    code, out, _ = _cli(["agree", str(run.path), "--format", "json", "--bootstrap", "200"],
                        capsys)
    (pair,) = json.loads(out)
    assert (pair["x"], pair["y"]) == ("judge-a", "judge-b")
    assert pair["prompts"]["n"] == 6 and pair["prompts"]["n_agree"] == 4

