"""summarize(): everything `stats FILE` shows, from one list of judgments."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evalharness.errors import UserError
from evalharness.schema import Judgment
from evalharness.stats import head_to_head, infer_baseline, summarize, to_jsonable
from tests.helpers import game


def league_judgments(seed: int = 0, n: int = 40) -> list[Judgment]:
    rng = np.random.default_rng(seed)
    out = []
    for name, p in (("good", 0.75), ("meh", 0.5), ("bad", 0.3)):
        for i in range(n):
            for order in (0, 1):
                cand_wins = rng.random() < p
                first, second = (name, "base") if order == 0 else ("base", name)
                winner = "A" if cand_wins == (order == 0) else "B"
                out.append(game(f"{name}{i}{order}", f"p{i}", first, second, winner,
                                first_length=int(rng.integers(50, 500)),
                                second_length=int(rng.integers(50, 500))))
    return out


def test_summary_agrees_with_head_to_head_and_adjusts_for_multiplicity() -> None:
    js = league_judgments()
    summary = summarize(js + js[:3], "base", n_boot=300)  # three duplicate keys
    assert summary.n_duplicates == 3
    assert [c.head_to_head.candidate for c in summary.candidates] == ["good", "meh", "bad"]
    good = summary.candidates[0]
    assert good.head_to_head == head_to_head(js, "good", "base", n_boot=300)
    assert all(c.p_holm >= c.head_to_head.p_value for c in summary.candidates)
    assert good.length_controlled is not None  # 40 prompts with lengths
    assert len(summary.paired) == 3
    assert summary.league.standings[0].model == "good"
    assert summary.detectable is not None and summary.detectable.n == 40
    assert summary.paradox is None


def test_json_form_is_plain_json_with_no_nan() -> None:
    js = league_judgments(n=10)
    js.append(
        Judgment(
            key="x",
            prompt_id="p0",
            judge="j",
            first="good",
            second="base",
            verdict=None,
            winner=None,
            error="unparseable",
        )
    )
    summary = summarize(
        js,
        "base",
        n_boot=100,
        perplexity={"good": (5.0, 0.8), "meh": (6.0, 0.9), "bad": (7.0, 1.0)},
    )
    text = json.dumps(to_jsonable(summary), allow_nan=False)
    data = json.loads(text)
    assert data["n_invalid"] == 1
    assert data["candidates"][0]["head_to_head"]["wilson"].keys() == {"low", "high"}
    assert data["paradox"]["sentence"]


def test_baseline_inference() -> None:
    js = league_judgments(n=2)
    assert infer_baseline(js) == "base"
    two = [j for j in js if "good" in (j.first, j.second)]
    with pytest.raises(UserError, match="--baseline"):
        infer_baseline(two)
    with pytest.raises(UserError, match="not in the judgments"):
        summarize(js, "nobody", n_boot=100)
