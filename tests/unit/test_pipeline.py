"""The stage order resumes: nothing on disk is redone, and a crash loses only unfinished work."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from evalharness.backends.base import Generation, GenRequest
from evalharness.backends.fake import FakeBackend
from evalharness.pipeline import BackendSpec, run_models
from evalharness.schema import GenConfig
from tests.helpers import read_jsonl, write_jsonl


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "prompts.jsonl",
                       [{"id": f"p{i}", "prompt": f"Question {i}?"} for i in range(6)])


class Crashing(FakeBackend):
    """Dies after ``budget`` answers, like a process killed mid-run."""

    def __init__(self, budget: int) -> None:
        super().__init__()
        self.budget = budget

    def generate(self, requests: Sequence[GenRequest], gen: GenConfig) -> Iterator[Generation]:
        for produced, result in enumerate(super().generate(requests, gen)):
            if produced == self.budget:
                raise KeyboardInterrupt
            yield result


def _run(kit, prompts: Path, backend: FakeBackend, root: Path, **kw):  # type: ignore[no-untyped-def]
    return run_models(["baseline", str(kit.adapter("qv-r8"))], command="generate",
                      backend=BackendSpec("fake", "fake", lambda _run_dir: backend),
                      prompts=prompts, runs_root=root, **kw)


def test_interrupted_run_resumes_without_redoing_finished_answers(kit, prompts: Path,  # type: ignore[no-untyped-def]
                                                                 tmp_path: Path) -> None:
    root = tmp_path / "runs"
    with pytest.raises(KeyboardInterrupt):
        _run(kit, prompts, Crashing(budget=5), root)
    (run_dir,) = root.iterdir()
    assert len(read_jsonl(run_dir / "answers.jsonl")) == 5
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "interrupted"

    resumed = FakeBackend()
    result = _run(kit, prompts, resumed, root)
    assert resumed.calls["generate"] == 7  # 12 needed, 5 on disk
    assert (result.answers.on_disk, result.answers.computed) == (5, 7)  # type: ignore[union-attr]
    rows = read_jsonl(run_dir / "answers.jsonl")
    assert len(rows) == 12 and len({r["key"] for r in rows}) == 12


def test_rerun_of_a_finished_command_loads_no_backend(kit, prompts: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "runs"
    first = _run(kit, prompts, FakeBackend(), root)
    again = FakeBackend()
    second = _run(kit, prompts, again, root)
    assert second.run_dir == first.run_dir
    assert again.calls == {"generate": 0, "score": 0} and not second.backend_loaded
    assert again.prepared == []


def test_answers_are_reused_across_runs_by_content(kit, prompts: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "runs"
    _run(kit, prompts, FakeBackend(), root)
    backend = FakeBackend()
    result = run_models(["baseline", str(kit.adapter("all-r16"))], command="generate",
                        backend=BackendSpec("fake", "fake", lambda _run_dir: backend),
                        prompts=prompts, runs_root=root)
    # The baseline's six answers come from the first run; only the new adapter is generated.
    assert result.answers.reused == 6 and backend.calls["generate"] == 6  # type: ignore[union-attr]


def test_generation_settings_are_part_of_the_key(kit, prompts: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "runs"
    _run(kit, prompts, FakeBackend(), root)
    backend = FakeBackend()
    _run(kit, prompts, backend, root, gen=GenConfig(max_new_tokens=3))
    assert backend.calls["generate"] == 12
