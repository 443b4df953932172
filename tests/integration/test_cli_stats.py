"""`evalharness stats FILE` and `evalharness power` through the real CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evalharness.cli import main


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out, err = capsys.readouterr()
    code = exit_info.value.code
    return (code if isinstance(code, int) else 0), out, err


def write_judgments(path: Path, wins: int, losses: int) -> None:
    """Both orders per prompt, written in the external form (no key/judge/verdict fields)."""
    lines = []
    for i in range(wins + losses):
        won = i < wins
        lines.append(
            {
                "prompt_id": f"p{i}",
                "first": "tuned",
                "second": "base",
                "winner": "A" if won else "B",
                "first_length": 300,
                "second_length": 200,
            }
        )
        lines.append(
            {
                "prompt_id": f"p{i}",
                "first": "base",
                "second": "tuned",
                "winner": "B" if won else "A",
                "first_length": 200,
                "second_length": 300,
            }
        )
    path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")


def test_stats_table_shows_the_worked_example(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "judgments.jsonl"
    write_judgments(path, 31, 19)
    code, out, _ = run(["stats", str(path), "--bootstrap", "500", "--baseline", "base"], capsys)
    assert code == 0
    assert "62.0%" in out
    assert "[48.2, 74.1]" in out
    assert "0.119" in out
    assert "tuned" in out and "base" in out


def test_stats_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "judgments.jsonl"
    write_judgments(path, 31, 19)
    code, out, _ = run(
        [
            "stats",
            str(path),
            "--format",
            "json",
            "--bootstrap",
            "200",
            "--seed",
            "3",
            "--baseline",
            "base",
        ],
        capsys,
    )
    assert code == 0
    data = json.loads(out)
    h2h = data["candidates"][0]["head_to_head"]
    assert data["baseline"] == "base"
    assert h2h["win_rate"] == pytest.approx(0.62)
    assert h2h["wilson"]["low"] == pytest.approx(0.4815, abs=1e-4)
    assert data["candidates"][0]["length_controlled"] is not None


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        ("missing", [], "not found"),
        ("malformed", [], "judgments.jsonl:2"),
        ("bad-field", [], "judgments.jsonl:1: field 'winner'"),
        ("ok", ["--baseline", "nobody"], "baseline 'nobody'"),
        ("ok", ["--format", "xml"], "--format"),
    ],
)
def test_bad_input_exits_2_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setup: str, args: list[str], message: str
) -> None:
    path = tmp_path / "judgments.jsonl"
    if setup == "ok":
        write_judgments(path, 3, 2)
    elif setup == "malformed":
        write_judgments(path, 3, 2)
        lines = path.read_text().splitlines()
        lines[1] = "{not json"
        path.write_text("\n".join(lines) + "\n")
    elif setup == "bad-field":
        path.write_text('{"prompt_id": "p", "first": "a", "second": "b", "winner": "C"}\n')
    code, out, err = run(["stats", str(path), *args], capsys)
    assert code == 2
    assert message in err
    assert "Traceback" not in err + out


GAME = '{"prompt_id": "p0", "first": "tuned", "second": "base", "winner": "A"'


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (GAME + ', "weight_a": NaN}\n', "judgments.jsonl:1: field 'weight_a'"),
        (GAME + ', "weight_a": -Infinity}\n', "finite number"),
        (GAME + ', "weight_a": 7.5}\n', "less than or equal to 1 (got 7.5)"),
        (GAME + ', "weight_a": -0.1}\n', "greater than or equal to 0"),
        (GAME + ', "weight_a": true}\n', "field 'weight_a' is true, not a number"),
        (GAME + ', "first_length": -5}\n', "field 'first_length'"),
        (GAME.replace('"base"', '"tuned"') + "}\n", "'tuned' is judged against itself"),
        (GAME.replace('"tuned"', '" "') + "}\n", "'first' is empty"),
        (GAME + ', "winnr": "A"}\n', "unknown field 'winnr'"),
        ("", "judgments.jsonl: the judgments file holds no judgments"),
        ("\n\n", "holds no judgments"),
        (GAME.replace("{", '{"key": "k", ') + "}\n"
         + GAME.replace("{", '{"key": "k", ').replace('"p0"', '"p1"') + "}\n",
         "judgments.jsonl:2: key 'k' (tuned vs base) was already used at"),
        (GAME.replace("{", '{"key": "k", ') + "}\n"
         + GAME.replace("{", '{"key": "k", ').replace('"A"', '"B"') + "}\n",
         'winner "A" there, "B" here'),
    ],
    ids=["nan", "-inf", "above-1", "below-0", "bool", "negative-length", "itself",
         "blank-name", "unknown-field", "empty", "blank-lines", "key-reused", "key-disagrees"],
)
def test_garbage_judgments_exit_2_naming_line_and_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    path = tmp_path / "judgments.jsonl"
    path.write_text(content)
    code, out, err = run(["stats", str(path), "--baseline", "base"], capsys)
    flat = " ".join(err.split())
    assert code == 2, out + err
    assert message in flat and "Fix:" in flat
    assert "Traceback" not in err + out


def test_exact_duplicates_and_integer_ids_are_fine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A line repeated word for word is a duplicate (dropped, counted); a whole-number
    prompt_id is read as its digits, as prompt sets read ids."""
    path = tmp_path / "judgments.jsonl"
    lines = [GAME.replace('"p0"', "7") + ', "key": "k", "weight_a": 0.75}',
             GAME.replace('"p0"', "7") + ', "key": "k", "weight_a": 0.75}',
             '{"prompt_id": "7", "first": "base", "second": "tuned", "winner": "B"}']
    path.write_text("\n".join(lines) + "\n")
    code, out, err = run(["stats", str(path), "--baseline", "base", "--bootstrap", "100"],
                         capsys)
    assert code == 0, err
    assert "1 duplicate keys dropped" in " ".join(out.split())


def test_bracketed_names_print_literally(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A model and a folder named like rich markup are printed as written, not interpreted
    (which hid '[bold]', or crashed on a closing tag like '[/INST]'."""
    folder = tmp_path / "[red]runs"
    folder.mkdir()
    path = folder / "judgments.jsonl"
    write_judgments(path, 4, 2)
    path.write_text(path.read_text().replace('"tuned"', '"[bold]x[/bold]"')
                    .replace('"base"', '"[/INST]base"'))
    code, out, err = run(["stats", str(path), "--bootstrap", "100", "--baseline",
                          "[/INST]base"], capsys)
    assert code == 0, err
    flat = " ".join(out.split())
    summary = " ".join(out.split("Head to head")[0].split())
    # The path and the baseline in bold, written as they are: no markup tags of our own shown.
    assert summary.startswith(f"{path}: 12 judgments by external; baseline [/INST]base; "), out
    assert "[bold]x[/bold]" in flat  # the table rows and the league
    assert "[/INST]base" in flat  # the summary line and the titles
    assert "Head to head against [/INST]base" in flat
    assert "[red]runs" in flat  # the file's path
    assert flat.count("[bold]x[/bold]") >= 3  # head to head, bias, league


def test_ambiguous_baseline_asks_for_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "judgments.jsonl"
    path.write_text('{"prompt_id": "p", "first": "a", "second": "b", "winner": "A"}\n')
    code, _, err = run(["stats", str(path)], capsys)
    assert code == 2
    assert "--baseline" in err


def test_power_commands(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["power", "--win-rate", "0.6"], capsys)
    assert code == 0
    assert "210" in out and "199" in out
    code, out, _ = run(["power", "--n", "50"], capsys)
    assert code == 0
    assert "70.4%" in out
    code, out, _ = run(["power", "--win-rate", "0.62", "--n", "50"], capsys)
    assert "0.335" in out
    code, _, err = run(["power", "--win-rate", "1.3"], capsys)
    assert code == 2 and "win rate" in err
    code, _, err = run(["power"], capsys)
    assert code == 2 and "--win-rate" in err


def test_stats_reads_soft_only_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A published annotator's rows: one order, a soft preference, no hard winner at all."""
    path = tmp_path / "soft.jsonl"
    weights = [0.9, 0.8, 0.3, 0.7, 0.6, 0.2, 0.95, 0.55]
    path.write_text("".join(json.dumps({"prompt_id": f"p{i}", "first": "tuned", "second": "base",
                                        "weight_a": w}) + "\n" for i, w in enumerate(weights)))
    code, out, _ = run(["stats", str(path), "--baseline", "base", "--bootstrap", "200",
                        "--format", "json"], capsys)
    assert code == 0
    record = json.loads(out)
    h = record["candidates"][0]["head_to_head"]
    assert record["score"] == "soft" and record["n_invalid"] == 0
    assert h["n_prompts"] == 8 and h["win_rate"] == pytest.approx(sum(weights) / 8)
    assert record["orders"] == "each prompt judged in one order only"


@pytest.mark.parametrize(("row", "message"), [
    ({"winner": "B", "weight_a": 0.99},
     'bad.jsonl:2: winner is "B" but weight_a 0.99 says P(A better) is above 0.75'),
    ({"winner": "A", "weight_a": 0.1},
     'bad.jsonl:2: winner is "A" but weight_a 0.1 says P(A better) is below 0.25'),
    ({"winner": None, "weight_a": 1.7}, "bad.jsonl:2: field 'weight_a'"),
    ({"weight_a": -0.4}, "bad.jsonl:2: field 'weight_a'"),
    ({}, "bad.jsonl:2: the judgment has neither a 'winner' nor a soft preference 'weight_a'"),
])
def test_stats_refuses_contradictory_and_out_of_range_soft_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], row: dict[str, object], message: str
) -> None:
    path = tmp_path / "bad.jsonl"
    good = {"prompt_id": "p0", "first": "tuned", "second": "base", "winner": "A"}
    path.write_text(json.dumps(good) + "\n"
                    + json.dumps({"prompt_id": "p1", "first": "tuned", "second": "base", **row})
                    + "\n")
    code, out, err = run(["stats", str(path), "--baseline", "base"], capsys)
    assert code == 2
    text = " ".join((out + err).split())
    assert message in text and "Fix:" in text


def test_a_perfect_record_prints_a_bound_not_a_zero_width_interval(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # "tuned" won all 25 prompts in both orders (50 games); "other" won 15 of 25.
    path = tmp_path / "j.jsonl"
    write_judgments(path, 25, 0)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for i in range(25):
        won = i < 15
        rows.append({"prompt_id": f"p{i}", "first": "other", "second": "base",
                     "winner": "A" if won else "B"})
        rows.append({"prompt_id": f"p{i}", "first": "base", "second": "other",
                     "winner": "B" if won else "A"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out, _ = run(["stats", str(path), "--baseline", "base", "--bootstrap", "200"], capsys)
    assert code == 0
    bound = 0.025 ** (1 / 50)  # exact one-sided bound of 50 wins in 50 games
    assert f"≥ {100 * bound:.1f}%" in out and "won every game" in out
    assert "[100.0, 100.0]" not in out
    code, out, _ = run(["stats", str(path), "--baseline", "base", "--bootstrap", "200",
                        "--format", "json"], capsys)
    tuned = next(s for s in json.loads(out)["league"]["standings"] if s["model"] == "tuned")
    assert tuned["bound"] == "lower" and tuned["interval"]["high"] is None
    assert tuned["win_probability_interval"]["low"] == pytest.approx(bound, abs=1e-9)
