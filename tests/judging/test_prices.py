"""Prices: a judge on another endpoint than its config's costs 0 unless priced with
`--judge-price IN,OUT`, and the cost line says where the prices came from."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from evalharness.errors import UserError
from evalharness.judging.config import default_judges_root, load_judge
from evalharness.judging.prices import Price, parse_price
from evalharness.judging.stage import judge_run
from evalharness.schema import Judgment
from evalharness.store import JUDGMENTS, JsonlLog
from tests.fakes.openai_server import FakeOpenAIServer, Reply
from tests.judging.conftest import JudgeCli, JudgeFactory, MakeRun

HOSTED = (0.00015, 0.0006)
"""The shipped judges' prices (USD per 1k input, output tokens)."""


def _games(n: int) -> dict[str, dict[str, str]]:
    return {"lora": {f"p{i}": f"lora answer {i} q=2" for i in range(n)},
            "baseline": {f"p{i}": f"base answer {i} q=1" for i in range(n)}}


def test_the_config_prices_its_own_endpoint_and_nothing_else() -> None:
    judge = load_judge(default_judges_root() / "pairwise-binary")
    assert (judge.price_input_per_1k, judge.price_output_per_1k) == HOSTED
    assert judge.price_source == "config pairwise-binary"
    assert judge.cost(1000, 1000) == pytest.approx(sum(HOSTED))

    # The same endpoint spelled differently keeps the config's prices.
    same = judge.with_overrides(base_url="https://API.openai.com:443/v1/", model="gpt-4o")
    assert same.cost(1000, 1000) == judge.cost(1000, 1000)
    assert same.price_source == "config pairwise-binary"

    for url in ("http://127.0.0.1:8000/v1", "http://localhost:8000/v1",
                "http://10.0.0.7:8000/v1", "https://api.together.xyz/v1",
                "http://user:secret@192.168.1.20/v1"):
        moved = judge.with_overrides(base_url=url)
        assert moved.cost(10_000, 10_000) == 0.0, url
        assert moved.price_source.startswith("unpriced endpoint http") and \
            moved.price_source.endswith(": 0 (--judge-price IN,OUT prices it)"), url
        assert "secret" not in moved.price_source

    priced = judge.with_overrides(base_url="http://127.0.0.1:8000/v1",
                                  price=parse_price("0.01,0.02"))
    assert priced.cost(1000, 2000) == pytest.approx(0.01 + 0.04)
    assert priced.price_source == "--judge-price"
    # --judge-price also overrides the config's prices on its own endpoint.
    assert judge.with_overrides(price=Price(1.0, 0.0)).cost(1000, 5000) == 1.0


def test_a_config_without_prices_and_an_offline_judge_say_so(tmp_path: Path) -> None:
    folder = tmp_path / "local-judge"
    shutil.copytree(default_judges_root() / "pairwise-binary", folder)
    config = folder / "config.yaml"
    config.write_text("".join(line for line in config.read_text().splitlines(keepends=True)
                              if not line.startswith("price_per_1k")))
    unpriced = load_judge(folder)
    assert unpriced.cost(1000, 1000) == 0.0
    assert unpriced.price_source == "config local-judge: no price_per_1k (0)"
    moved = unpriced.with_overrides(base_url="http://127.0.0.1:9/v1")
    assert moved.price_source == unpriced.price_source  # nothing to unprice
    assert load_judge(default_judges_root() / "reference").price_source == "offline judge: 0"


@pytest.mark.parametrize("text", ["", "0.1", "0.1,0.2,0.3", "a,b", "-1,0", "0,-0.5",
                                  "nan,1", "1,inf", "0.1;0.2"])
def test_parse_price_refuses_anything_but_two_prices(text: str) -> None:
    with pytest.raises(UserError) as caught:
        parse_price(text)
    message = str(caught.value)
    assert message.startswith(f"--judge-price {text!r} is not a price")
    assert "Fix: e.g. --judge-price 0.00015,0.0006" in message


def test_parse_price_reads_in_and_out_and_names_the_flag_it_was_given() -> None:
    assert parse_price(" 0.5 , 2 ") == Price(0.5, 2.0) == (0.5, 2.0)
    with pytest.raises(UserError, match=r"^--price 'x' is not a price"):
        parse_price("x", flag="--price")


def test_prices_and_run_time_settings_keep_the_fingerprint() -> None:
    judge = load_judge(default_judges_root() / "pairwise-binary")
    changed = dataclasses.replace(
        judge, price_input_per_1k=9.0, price_output_per_1k=9.0, price_source="--judge-price",
        retry_temperature=None, fence_salt="repeat-3", seed=3)
    assert changed.fingerprint == judge.fingerprint
    assert judge.with_overrides(base_url="http://127.0.0.1:1/v1",
                                price=Price(1.0, 1.0)).fingerprint == judge.fingerprint


def test_judgments_on_a_local_endpoint_cost_what_it_was_priced(
        server: FakeOpenAIServer, judge_for: JudgeFactory, make_run: MakeRun) -> None:
    server.responder = lambda call: Reply("[[A]]", prompt_tokens=1000, completion_tokens=500)
    run = make_run(_games(2))
    counts = judge_run(run, judge_for(), "baseline")
    assert counts.cost_usd == 0.0 and counts.price_source.startswith("unpriced endpoint")
    assert all(r.cost_usd == 0.0 for r in JsonlLog(run.path / JUDGMENTS, Judgment).read())

    priced = judge_for().with_overrides(price=Price(0.002, 0.004))
    other = make_run(_games(2))
    counts = judge_run(other, priced, "baseline", runs_root=other.path / "none")
    assert counts.calls == 4 and counts.price_source == "--judge-price"
    assert counts.cost_usd == pytest.approx(4 * (0.002 + 0.5 * 0.004))
    records = JsonlLog(other.path / JUDGMENTS, Judgment).read()
    assert [r.cost_usd for r in records] == pytest.approx([0.004] * 4)


def test_judge_command_prices_and_says_where_prices_came_from(
        server: FakeOpenAIServer, make_run: MakeRun, judge_cli: JudgeCli) -> None:
    server.responder = lambda call: Reply("[[A]]", prompt_tokens=1000, completion_tokens=1000)
    run = make_run(_games(1))

    bad = judge_cli(run, "--judge-price", "0.1")
    assert isinstance(bad.exception, UserError) and server.n_calls == 0
    assert "Fix: e.g. --judge-price 0.00015,0.0006" in str(bad.exception)

    result = judge_cli(run, "--judge-price", "0.5,1.5")
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "estimated cost now: $4.0000 (prices: --judge-price)" in out  # 2 x (0.5 + 1.5)

    unpriced = make_run(_games(1))
    again = judge_cli(unpriced, runs_root=unpriced.path / "none")
    assert again.exit_code == 0, again.output
    out = " ".join(again.output.split())
    assert f"estimated cost now: $0.0000 (prices: unpriced endpoint {server.base_url}: 0 " \
           "(--judge-price IN,OUT prices it))" in out
