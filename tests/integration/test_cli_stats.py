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
