"""Shared fixtures: the tiny model kit (built once, cached across sessions) and a CLI runner."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
# The same folder `make demo` uses: one build (about 40 s) serves the demo and the suite.
KIT_CACHE = Path(os.environ.get("EVALHARNESS_TEST_KIT", REPO / "runs" / ".kit"))


@pytest.fixture(scope="session")
def kit():  # type: ignore[no-untyped-def]
    """The tiny kit: base + adapters qv-r8, all-r16, under-qv-r4, over-all-r32 (read-only:
    copy to edit)."""
    from evalharness.demo.kit import build_kit

    return build_kit(KIT_CACHE)


@pytest.fixture
def kit_copy(kit, tmp_path):  # type: ignore[no-untyped-def]
    """A private copy of the kit's adapters, for tests that change or break them."""
    target = tmp_path / "adapters"
    shutil.copytree(kit.root / "adapters", target)
    return target


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


@pytest.fixture
def cli(capsys, monkeypatch, tmp_path):  # type: ignore[no-untyped-def]
    """Run ``evalharness ARGS`` in-process, in a fresh working folder; returns code and output."""
    from evalharness.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")

    def run(*args: str | os.PathLike[str]) -> CliResult:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run
