"""The run store: append-only logs survive crashes, manifests are atomic, keys are content."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evalharness.errors import UserError
from evalharness.keys import content_key
from evalharness.schema import SCHEMA_VERSION, Answer, Manifest
from evalharness.store import JsonlLog, RunDir, find_reusable, list_runs


def _answer(key: str, text: str = "x") -> Answer:
    return Answer(key=key, prompt_id="p", model="m", model_key="k", text=text, n_tokens=1,
                  finish_reason="stop", seconds=0.0)


def _manifest(run_id: str, updated: str = "2026-01-01T00:00:00+00:00") -> Manifest:
    return Manifest(run_id=run_id, command="generate", created=updated, updated=updated,
                    versions={}, argv=())


def test_appended_records_read_back_in_order(tmp_path: Path) -> None:
    log = JsonlLog(tmp_path / "a.jsonl", Answer)
    log.extend([_answer("k1"), _answer("k2")])
    log.append(_answer("k3"))
    log.close()
    assert [a.key for a in log.read()] == ["k1", "k2", "k3"]
    assert log.keys() == {"k1", "k2", "k3"}


def test_torn_last_line_is_dropped_with_warning_and_cut_before_next_append(
        tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    log = JsonlLog(path, Answer)
    log.extend([_answer("k1")])
    log.close()
    with path.open("a") as handle:  # a crash in the middle of writing k2
        handle.write(_answer("k2").model_dump_json()[:30])
    with pytest.warns(UserWarning, match=r"a\.jsonl:2: dropping a torn last line"):
        assert [a.key for a in log.read()] == ["k1"]
    log.append(_answer("k3"))
    log.close()
    assert [a.key for a in JsonlLog(path, Answer).read()] == ["k1", "k3"]


def test_invalid_complete_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text(_answer("k1").model_dump_json() + "\n" + '{"key": "k2"}\n')
    with pytest.raises(UserError, match=r"a\.jsonl:2: not a valid Answer"):
        JsonlLog(path, Answer).read()


def test_manifest_roundtrip_and_newer_schema_refused(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "r1")
    run.write_manifest(_manifest("r1"))
    assert run.read_manifest().run_id == "r1"
    assert not list(run.path.glob("*.tmp")), "atomic write left a temporary file"
    raw = json.loads(run.manifest_path.read_text())
    raw["schema_version"] = SCHEMA_VERSION + 1
    run.manifest_path.write_text(json.dumps(raw))
    with pytest.raises(UserError, match="newer evalharness"):
        run.read_manifest()


def test_corrupt_manifest_is_a_user_error(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "r1")
    run.path.mkdir()
    run.manifest_path.write_text("{not json")
    with pytest.raises(UserError, match=r"manifest\.json:1: manifest is not valid JSON"):
        run.read_manifest()
    with pytest.raises(UserError, match="not a run directory"):
        RunDir(tmp_path / "nothing").read_manifest()


def test_list_runs_newest_first_and_reports_unreadable(tmp_path: Path) -> None:
    RunDir(tmp_path / "old").write_manifest(_manifest("old", "2026-01-01T00:00:00+00:00"))
    RunDir(tmp_path / "new").write_manifest(_manifest("new", "2026-02-01T00:00:00+00:00"))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "manifest.json").write_text("[]")
    found = list_runs(tmp_path)
    assert [run.run_id for run, m in found if m] == ["new", "old"]
    assert [run.run_id for run, m in found if m is None] == ["broken"]


def test_find_reusable_takes_matching_keys_from_other_runs_only(tmp_path: Path) -> None:
    for name, keys in (("r1", ["a", "b"]), ("r2", ["c"])):
        JsonlLog(tmp_path / name / "answers.jsonl", Answer).extend(_answer(k) for k in keys)
    found = find_reusable(tmp_path, "answers.jsonl", Answer, {"a", "c", "z"},
                          exclude=tmp_path / "r2")
    assert set(found) == {"a"}


def test_content_key_depends_on_content_not_order_of_fields() -> None:
    assert content_key({"a": 1, "b": [1, 2]}) == content_key({"b": [1, 2], "a": 1})
    assert content_key({"a": 1, "b": [1, 2]}) != content_key({"a": 1, "b": [2, 1]})
