"""The offline reference judge: deterministic, closer-to-reference wins, no reference no game."""

from __future__ import annotations

import pytest

from evalharness.errors import UserError
from evalharness.judging.config import default_judges_root, load_judge
from evalharness.judging.stage import judge_run
from evalharness.schema import Judgment
from evalharness.store import JUDGMENTS, JsonlLog
from tests.judging.conftest import MakeRun

PROMPTS = [
    {"id": "cap", "prompt": "Capital of France?", "reference": "The capital of France is Paris."},
    {"id": "sum", "prompt": "2+2?", "reference": "Two plus two is four."},
    {"id": "open", "prompt": "Write a poem."},  # no reference: the judge cannot play it
]


def test_reference_judge_prefers_the_closer_answer_in_both_orders(make_run: MakeRun) -> None:
    run = make_run({
        "lora": {"cap": "The capital of France is Paris.", "sum": "Four.", "open": "Roses."},
        "baseline": {"cap": "I think it is Lyon.", "sum": "Four!", "open": "Violets."},
    }, prompts=PROMPTS)
    judge = load_judge(default_judges_root() / "reference")
    counts = judge_run(run, judge, "baseline")

    records = JsonlLog(run.path / JUDGMENTS, Judgment).read()
    assert (counts.total, counts.skipped, len(records)) == (4, 2, 4)
    by_game = {(r.prompt_id, r.first): r for r in records}
    assert by_game["cap", "lora"].winner == "A" and by_game["cap", "baseline"].winner == "B"
    assert by_game["sum", "lora"].winner == by_game["sum", "baseline"].winner == "tie"
    assert all(r.attempts == 0 and r.usage.prompt_tokens == 0 for r in records)
    assert "token_f1: A=1.0000" in by_game["cap", "lora"].raw
    tally = counts.tallies["lora", "baseline"]
    assert (tally.wins, tally.ties, tally.losses) == (2, 2, 0)
    # Deterministic: judging again from scratch gives the same records.
    again = make_run({"lora": {"cap": "The capital of France is Paris."},
                      "baseline": {"cap": "I think it is Lyon."}}, prompts=PROMPTS[:1])
    judge_run(again, judge, "baseline", runs_root=again.path.parent / "elsewhere")
    fresh = JsonlLog(again.path / JUDGMENTS, Judgment).read()
    assert [r.raw for r in fresh] == [by_game["cap", "lora"].raw, by_game["cap", "baseline"].raw]


def test_reference_judge_without_any_reference_is_a_user_error(make_run: MakeRun) -> None:
    run = make_run({"lora": {"open": "Roses."}, "baseline": {"open": "Violets."}},
                   prompts=PROMPTS[2:])
    with pytest.raises(UserError, match="needs prompts with a 'reference'"):
        judge_run(run, load_judge(default_judges_root() / "reference"), "baseline")
