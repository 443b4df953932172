"""`evalharness import` / `export` on small files written by hand in each tool's published
format, then `stats`, `report` and `show` on the imported run, through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from evalharness.cli import app
from evalharness.formats.alpacaeval import prompt_id
from evalharness.keys import file_sha256
from tests.helpers import read_jsonl
from tests.helpers import write_jsonl as write_flat
from tests.integration.test_cli_stats import run

assert any(c.name == "import" for c in app.registered_commands)  # the CLI has the verbs

REF, LORA = "gpt4_turbo", "my-lora"
INSTRUCTIONS = ["Name a prime.", "Say hi.", "What is 2+2?", "Spell cat.", "Define <b>x</b>.",
                "Count to 3."]
# AlpacaEval preference: 1 = output_1 (the reference) better, 2 = output_2, soft between.
PREFERENCES: list[float | None] = [1.9, 1.8, 1.2, 1.5, 1.95, None]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_flat(path, rows)


def outputs(model: str) -> list[dict[str, str]]:
    return [{"instruction": text, "output": f"{model} answers: {text} " + "x" * i,
             "generator": model, "dataset": "helpful_base" if i % 2 else "koala"}
            for i, text in enumerate(INSTRUCTIONS)]


def write_alpacaeval(folder: Path, preferences: list[Any] | None = None) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    ref, lora = outputs(REF), outputs(LORA)
    annotations = [
        {"instruction": r["instruction"], "output_1": r["output"], "generator_1": REF,
         "output_2": m["output"], "generator_2": LORA, "dataset": r["dataset"],
         "annotator": "weighted_alpaca_eval_gpt4_turbo", "preference": p,
         "raw_completion": {"logprobs": [{"token": "M", "logprob": -0.1}]},
         "price_per_example": 0.01}
        for r, m, p in zip(ref, lora, preferences or PREFERENCES, strict=True)]
    paths = {"reference": folder / "reference_outputs.json",
             "model": folder / "model_outputs.json", "annotations": folder / "annotations.json"}
    for key, value in (("reference", ref), ("model", lora), ("annotations", annotations)):
        paths[key].write_text(json.dumps(value, indent=2), encoding="utf-8")
    return paths


def stats_json(path: Path, capsys: pytest.CaptureFixture[str]) -> Any:
    code, out, err = run(["stats", str(path), "--format", "json", "--bootstrap", "200"], capsys)
    assert code == 0, err
    return json.loads(out)


def test_alpacaeval_import_lands_in_our_records_and_every_command_reads_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = write_alpacaeval(tmp_path / "ae")
    run_dir = tmp_path / "run"
    code, out, err = run(["import", "alpacaeval", *map(str, paths.values()),
                          "--run-dir", str(run_dir)], capsys)
    assert code == 0, err
    assert "12 answers (12 new) and 6 judgments (6 new)" in out
    games = {g["prompt_id"]: g for g in read_jsonl(run_dir / "judgments.jsonl")}
    hi = games[prompt_id("Say hi.")]
    assert (hi["first"], hi["second"], hi["winner"]) == (REF, LORA, "B")
    assert hi["weight_a"] == pytest.approx(0.2)  # P(output_1 better) = 2 - 1.8
    assert games[prompt_id("What is 2+2?")]["winner"] == "A"
    assert games[prompt_id("Spell cat.")]["winner"] == "tie"  # exactly 1.5
    unreadable = games[prompt_id("Count to 3.")]
    assert unreadable["winner"] is None and unreadable["error"]  # invalid, never a tie
    assert hi["judge"] == "weighted_alpaca_eval_gpt4_turbo"
    assert hi["second_length"] == len(outputs(LORA)[1]["output"])
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["command"] == "import" and manifest["baseline"] == REF
    assert manifest["status"] == "complete"
    recorded = {s["source"]: s["sha256"] for s in manifest["inputs"]["sources"]}
    assert recorded == {str(p.resolve()): file_sha256(p) for p in paths.values()}

    summary = stats_json(run_dir / "judgments.jsonl", capsys)
    text = json.dumps(summary)
    assert LORA in text and REF in text

    code, out, err = run(["report", str(run_dir)], capsys)
    assert code == 0, err
    report = (run_dir / "report.md").read_text()
    assert LORA in report and "| command | import |" in report
    assert "| 6 | 0 | 0 | 0 |" in report  # 6 judgments, 0 judge calls made by this run
    code, out, err = run(["report", str(run_dir), "--format", "html"], capsys)
    assert code == 0, err
    html = (run_dir / "report.html").read_text()
    assert "Say hi." in html  # the prompt texts travel with the run (prompts.jsonl)
    assert "<b>x</b>" not in html  # an imported text is never markup
    code, out, err = run(["show", str(run_dir)], capsys)
    assert code == 0, err
    assert LORA in out and "answers" in out


def test_importing_the_same_files_again_adds_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = write_alpacaeval(tmp_path / "ae")
    argv = ["import", "alpacaeval", str(tmp_path / "ae"), "--run-dir", str(tmp_path / "run")]
    assert run(argv, capsys)[0] == 0
    before = (tmp_path / "run" / "judgments.jsonl").read_text()
    code, out, err = run(argv, capsys)
    assert code == 0, err
    assert "(0 new)" in out and "judgments (0 new)" in out
    assert (tmp_path / "run" / "judgments.jsonl").read_text() == before
    # Other files into the same run are refused: the run is bound to what it imported.
    paths["annotations"].write_text(paths["annotations"].read_text().replace("1.95", "1.05"))
    code, out, err = run(argv, capsys)
    assert code == 2 and "Fix:" in err


def test_round_trip_import_stats_export_reimport_gives_identical_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = write_alpacaeval(tmp_path / "ae")
    first, second = tmp_path / "run1", tmp_path / "run2"
    assert run(["import", "alpacaeval", *map(str, paths.values()), "--run-dir", str(first)],
               capsys)[0] == 0
    before = stats_json(first / "judgments.jsonl", capsys)
    exported = tmp_path / "out" / "model_outputs.json"
    code, _out, err = run(["export", str(first), "--format", "alpacaeval", "--model", LORA,
                          "--out", str(exported)], capsys)
    assert code == 0, err
    assert json.loads(exported.read_text()) == outputs(LORA)  # AlpacaEval's own records
    code, _out, err = run(["import", "alpacaeval", str(paths["reference"]), str(exported),
                          str(paths["annotations"]), "--run-dir", str(second)], capsys)
    assert code == 0, err
    assert stats_json(second / "judgments.jsonl", capsys) == before
    assert read_jsonl(second / "answers.jsonl") == read_jsonl(first / "answers.jsonl")


def test_alpacaeval_bad_preference_names_file_record_and_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = write_alpacaeval(tmp_path / "ae", [1.9, 1.8, 2.7, 1.5, "yes", None])
    code, _out, err = run(["import", "alpacaeval", str(paths["annotations"]),
                          "--run-dir", str(tmp_path / "run")], capsys)
    assert code == 2
    assert f"{paths['annotations']}: record 3: preference 2.7 is outside [1, 2]" in err
    assert "record 5" in err and "Fix:" in err
    assert not (tmp_path / "run" / "judgments.jsonl").exists()  # nothing half-imported


def test_export_refuses_an_unknown_model_naming_those_there_are(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = write_alpacaeval(tmp_path / "ae")
    assert run(["import", "alpacaeval", *map(str, paths.values()), "--run-dir",
                str(tmp_path / "run")], capsys)[0] == 0
    code, _out, err = run(["export", str(tmp_path / "run"), "--model", "nope", "--out",
                          str(tmp_path / "x.json")], capsys)
    assert code == 2 and LORA in err and "Fix:" in err


def write_arenahard(root: Path, scores: list[tuple[Any, Any]]) -> Path:
    bench = root / "arena-hard-v0.1"
    questions = [{"question_id": f"q{i}", "category": "arena-hard-v0.1", "cluster": "Code",
                  "turns": [{"content": f"Question {i}?"}]} for i in range(len(scores))]
    write_jsonl(bench / "question.jsonl", questions)
    for model in ("gpt-4-0314", "my-lora"):
        write_jsonl(bench / "model_answer" / f"{model}.jsonl", [
            {"question_id": f"q{i}", "answer_id": f"{model}{i}", "model_id": model,
             "choices": [{"index": 0, "turns": [{"content": f"{model} says {i}",
                                                 "token_len": 4}]}], "tstamp": 1.0}
            for i in range(len(scores))])
    write_jsonl(bench / "model_judgment" / "gpt-4-1106-preview" / "my-lora.jsonl", [
        {"question_id": f"q{i}", "model": "my-lora", "judge": "gpt-4-1106-preview",
         "games": [{"user_prompt": "...", "judgment": "verdict [[x]]", "score": g1},
                   {"user_prompt": "...", "judgment": "verdict", "score": g2}]}
        for i, (g1, g2) in enumerate(scores)])
    return bench


def test_arenahard_game_two_is_the_swapped_order_and_stats_read_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The model wins q0 in both orders, loses q1 in both, q2 is a tie and an unread verdict.
    bench = write_arenahard(tmp_path, [("B>>A", "A>B"), ("A>B", "B>>A"), ("A=B", None)])
    run_dir = tmp_path / "run"
    code, out, err = run(["import", "arenahard", str(bench), "--run-dir", str(run_dir)], capsys)
    assert code == 0, err
    assert "baseline: gpt-4-0314" in out  # the one model with answers and no judgments
    games = read_jsonl(run_dir / "judgments.jsonl")
    q0 = {(g["first"], g["winner"], g["verdict"]) for g in games if g["prompt_id"] == "q0"}
    assert q0 == {("gpt-4-0314", "B", "B>>A"), ("my-lora", "A", "A>B")}
    q2 = [g for g in games if g["prompt_id"] == "q2"]
    assert sorted(str(g["winner"]) for g in q2) == ["None", "tie"]
    assert all(g["judge"] == "gpt-4-1106-preview" for g in games)
    summary = stats_json(run_dir / "judgments.jsonl", capsys)
    [candidate] = summary["candidates"]
    assert json.dumps(candidate).count("my-lora") >= 1
    code, out, err = run(["report", str(run_dir)], capsys)
    assert code == 0, err
    code, out, err = run(["report", str(run_dir), "--format", "html"], capsys)
    assert code == 0, err
    assert "Question 1?" in (run_dir / "report.html").read_text()


def test_arenahard_unknown_score_is_refused_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = write_arenahard(tmp_path, [("B>>A", "A>B"), ("A>B", "A>>>B")])
    code, _out, err = run(["import", "arenahard", str(bench), "--run-dir",
                          str(tmp_path / "run")], capsys)
    judgments = bench / "model_judgment" / "gpt-4-1106-preview" / "my-lora.jsonl"
    assert code == 2
    assert f"{judgments}:2: game 2: score \"A>>>B\" is not on Arena-Hard's scale" in err
    assert "Fix:" in err


def test_mtbench_pairwise_winners_name_models_in_both_orders(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pair = tmp_path / "model_judgment" / "gpt-4_pair.jsonl"
    rows = [{"question_id": 81 + i, "model_1": "my-lora", "model_2": "gpt-3.5-turbo",
             "g1_winner": w1, "g2_winner": w2, "judge": ["gpt-4", "pair-v2"], "turn": turn,
             "g1_judgment": "[[A]]", "g2_judgment": "[[B]]", "tstamp": 1.0}
            for i, (w1, w2, turn) in enumerate([("model_1", "model_1", 1),
                                                ("model_2", "model_1", 1),
                                                ("tie", "error", 2)])]
    write_jsonl(pair, rows)
    run_dir = tmp_path / "run"
    code, out, err = run(["import", "mtbench", str(pair), "--run-dir", str(run_dir)], capsys)
    assert code == 0, err
    assert "baseline: gpt-3.5-turbo" in out  # model_2 of every record: pairwise-baseline
    games = read_jsonl(run_dir / "judgments.jsonl")
    q81 = {(g["first"], g["winner"]) for g in games if g["prompt_id"] == "81-t1"}
    # Game 2 shows model_2 first; its winner "model_1" is the model in position B.
    assert q81 == {("my-lora", "A"), ("gpt-3.5-turbo", "B")}
    assert {g["judge"] for g in games} == {"gpt-4/pair-v2"}
    assert sum(g["winner"] is None for g in games) == 1
    assert {g["prompt_id"] for g in games} == {"81-t1", "82-t1", "83-t2"}
    stats_json(run_dir / "judgments.jsonl", capsys)


def test_mtbench_unknown_winner_is_refused_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pair = write_jsonl(tmp_path / "gpt-4_pair.jsonl", [
        {"question_id": 81, "model_1": "a", "model_2": "b", "g1_winner": "model_3",
         "g2_winner": "tie", "judge": ["gpt-4", "pair-v2"], "turn": 1}])
    code, _out, err = run(["import", "mtbench", str(pair), "--baseline", "b", "--run-dir",
                          str(tmp_path / "run")], capsys)
    assert code == 2
    assert f"{pair}:1: g1_winner \"model_3\" is not a verdict" in err and "Fix:" in err


def test_unknown_format_names_the_known_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = run(["import", "lmsys", str(tmp_path), "--run-dir", str(tmp_path / "r")],
                         capsys)
    assert code == 2 and "alpacaeval" in err and "Fix:" in err


def test_table_csv_soft_only_rows_get_a_hard_winner_and_answers_land(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = tmp_path / "games.csv"
    table.write_text(
        "prompt_id,first,second,winner,weight_a,prompt,first_text,second_text\n"
        "1,tuned,base,,0.8,Hi?,hello there,hi\n"
        "1,base,tuned,B,0.3,Hi?,hi,hello there\n"
        "2,tuned,base,,0.5,Bye?,bye now,bye\n"
        "2,base,tuned,A,,Bye?,bye,bye now\n", encoding="utf-8")
    run_dir = tmp_path / "run"
    code, _out, err = run(["import", "table", str(table), "--baseline", "base", "--run-dir",
                          str(run_dir)], capsys)
    assert code == 0, err
    games = read_jsonl(run_dir / "judgments.jsonl")
    assert [(g["prompt_id"], g["winner"], g["weight_a"]) for g in games] == [
        ("1", "A", 0.8), ("1", "B", 0.3), ("2", "tie", 0.5), ("2", "A", None)]
    assert games[0]["first_length"] == len("hello there")
    assert {a["model"] for a in read_jsonl(run_dir / "answers.jsonl")} == {"tuned", "base"}
    stats_json(run_dir / "judgments.jsonl", capsys)


def test_table_contradiction_and_typo_are_refused_with_their_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = tmp_path / "games.csv"
    table.write_text("prompt_id,first,second,winner,weight_a,wieght\n"
                     "1,tuned,base,B,0.99,\n"
                     "2,tuned,base,A,,x\n", encoding="utf-8")
    code, _out, err = run(["import", "table", str(table), "--run-dir", str(tmp_path / "r")],
                          capsys)
    assert code == 2
    assert f"{table}:2: winner B contradicts weight_a 0.99" in err
    assert f"{table}:3: unknown column(s) wieght" in err and "Fix:" in err
