"""Prompt sets: every supported format loads the same prompts; bad records are named by line."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from evalharness.errors import UserError
from evalharness.prompts import load_prompt_set
from tests.helpers import write_jsonl

ROWS = [
    {"id": "a", "prompt": "What is a polytechnic?", "reference": "A college.", "category": "x"},
    {"id": "b", "messages": [{"role": "system", "content": "Be brief."},
                             {"role": "user", "content": "Define apprenticeship."}]},
]


def test_jsonl_prompt_and_messages_forms(tmp_path: Path) -> None:
    prompt_set = load_prompt_set(write_jsonl(tmp_path / "set.jsonl", ROWS))
    first, second = prompt_set.prompts
    assert prompt_set.name == "set"
    assert [m.role for m in first.messages] == ["user"]
    assert first.reference == "A college." and first.category == "x"
    assert [m.role for m in second.messages] == ["system", "user"]
    assert second.category == "default" and second.reference is None


def test_csv_parquet_and_datasets_folder_give_the_same_hash(tmp_path: Path) -> None:
    import datasets

    flat = [{"id": "a", "prompt": "Q1?", "reference": "R1"},
            {"id": "b", "prompt": "Q2?", "reference": "R2"}]
    reference = load_prompt_set(write_jsonl(tmp_path / "p.jsonl", flat))
    pd.DataFrame(flat).to_csv(tmp_path / "p.csv", index=False)
    pd.DataFrame(flat).to_parquet(tmp_path / "p.parquet")
    datasets.Dataset.from_list(flat).save_to_disk(str(tmp_path / "p_ds"))
    for path in (tmp_path / "p.csv", tmp_path / "p.parquet", tmp_path / "p_ds"):
        assert load_prompt_set(path).sha256 == reference.sha256, path


def test_csv_messages_column_holds_json(tmp_path: Path) -> None:
    messages = json.dumps([{"role": "user", "content": "Hello?"}])
    pd.DataFrame([{"id": "a", "messages": messages}]).to_csv(tmp_path / "p.csv", index=False)
    assert load_prompt_set(tmp_path / "p.csv").prompts[0].messages[0].content == "Hello?"


def test_hash_changes_with_content_only(tmp_path: Path) -> None:
    one = load_prompt_set(write_jsonl(tmp_path / "one.jsonl", ROWS))
    two = load_prompt_set(write_jsonl(tmp_path / "two.jsonl", ROWS))
    changed = load_prompt_set(write_jsonl(tmp_path / "three.jsonl",
                                          [{**ROWS[0], "prompt": "Other?"}, ROWS[1]]))
    assert one.sha256 == two.sha256 != changed.sha256


def test_every_problem_is_reported_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join([
        json.dumps({"id": "a", "prompt": "ok?"}),
        json.dumps({"id": "a", "prompt": "dup?"}),
        json.dumps({"id": "c", "prompt": "   "}),
        json.dumps({"prompt": "no id"}),
        json.dumps({"id": "e", "prompt": "x", "messages": []}),
        json.dumps({"id": "f", "promt": "typo"}),
        json.dumps({"id": "g", "messages": [{"role": "bot", "content": "x"}]}),
    ]) + "\n")
    with pytest.raises(UserError) as caught:
        load_prompt_set(path)
    message = str(caught.value)
    for line, problem in ((2, "duplicate id 'a'"), (3, "empty prompt"), (4, "missing 'id'"),
                          (5, "give exactly one of 'prompt' or 'messages'"),
                          (6, "unknown field(s) promt"),
                          (7, "messages[0] needs a 'role'")):
        assert f"bad.jsonl:{line}: {problem}" in message
    assert "Fix:" in message


def test_bad_json_lines_are_all_listed(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "a", "prompt": "x"}\n{oops\n[1, 2]\n')
    with pytest.raises(UserError) as caught:
        load_prompt_set(path)
    assert "bad.jsonl:2: not valid JSON" in str(caught.value)
    assert "bad.jsonl:3: expected a JSON object, got list" in str(caught.value)


@pytest.mark.parametrize(("name", "content", "expected"), [
    ("missing.jsonl", None, "prompt set not found"),
    ("empty.jsonl", "", "the prompt set is empty"),
    ("prompts.txt", "hello", "unknown prompt set format '.txt'"),
])
def test_unusable_files(tmp_path: Path, name: str, content: str | None, expected: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(UserError, match=expected):
        load_prompt_set(path)


def test_shipped_league_prompt_set_is_valid() -> None:
    shipped = Path(__file__).resolve().parents[2] / "prompts" / "league-50.jsonl"
    prompt_set = load_prompt_set(shipped)
    assert len(prompt_set.prompts) == 50
    assert all(p.reference for p in prompt_set.prompts)


def test_utf8_bom_is_accepted_and_changes_nothing(tmp_path: Path) -> None:
    plain = write_jsonl(tmp_path / "plain.jsonl", ROWS)
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    assert load_prompt_set(bom).sha256 == load_prompt_set(plain).sha256


def test_latin1_is_named_with_its_byte_offset_never_replaced(tmp_path: Path) -> None:
    path = tmp_path / "latin.jsonl"
    path.write_bytes(b'{"id": "a", "prompt": "ok"}\n{"id": "b", "prompt": "caf\xe9?"}\n')
    with pytest.raises(UserError) as info:
        load_prompt_set(path)
    message = str(info.value)
    offset = path.read_bytes().index(b"\xe9")
    assert f"latin.jsonl:2: prompt set is not UTF-8 (byte 0xe9 at offset {offset}, line 2)" \
        in message
    assert "Latin-1" in message and "Fix: re-save it as UTF-8" in message


def test_whole_number_ids_are_the_same_in_jsonl_and_csv(tmp_path: Path) -> None:
    from_jsonl = load_prompt_set(write_jsonl(tmp_path / "p.jsonl", [{"id": 7, "prompt": "Q?"}]))
    (tmp_path / "p.csv").write_text("id,prompt\n7,Q?\n")
    from_csv = load_prompt_set(tmp_path / "p.csv")
    assert from_jsonl.prompts[0].id == from_csv.prompts[0].id == "7"
    assert from_jsonl.sha256 == from_csv.sha256


def test_ids_that_are_not_text_are_refused_not_coerced(tmp_path: Path) -> None:
    rows = [{"id": 1.0, "prompt": "x"}, {"id": True, "prompt": "x"}, {"id": [1], "prompt": "x"},
            {"id": {"n": 1}, "prompt": "x"}]
    with pytest.raises(UserError) as info:
        load_prompt_set(write_jsonl(tmp_path / "ids.jsonl", rows))
    message = str(info.value)
    for line, shown in enumerate(("float 1.0", "bool true", "list [1]", "dict"), start=1):
        assert f"ids.jsonl:{line}: 'id' must be text (or a whole number), got {shown}" in message


def test_csv_text_that_looks_like_null_stays_text(tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_text("id,prompt\nNA,None\n")
    (prompt,) = load_prompt_set(tmp_path / "p.csv").prompts
    assert prompt.id == "NA" and prompt.messages[0].content == "None"
