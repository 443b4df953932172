"""``evalharness report``: default paths, --out, and bad input named with its fix."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import typer

from evalharness.errors import UserError
from evalharness.report.cli import register, write_report
from tests.report.conftest import SyntheticRun, build_run


def run_app(*args: str) -> None:
    app = typer.Typer()
    register(app)

    @app.callback()
    def _root() -> None:  # a group, so "report" is spelled out as in the real CLI
        """evalharness."""

    app(args=list(args), standalone_mode=False)


def test_report_command_writes_the_default_file_and_prints_it(
    synthetic: SyntheticRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    shutil.copytree(synthetic.run_dir, run)
    run_app("report", str(run))
    assert f"report written to {run / 'report.md'}" in capsys.readouterr().out
    assert (run / "report.md").read_text().startswith("# evalharness report")
    run_app("report", str(run), "--format", "html", "--out", str(tmp_path / "x" / "r.html"))
    assert (tmp_path / "x" / "r.html").read_text().startswith("<!DOCTYPE html>")


def test_run_id_under_runs_root(synthetic: SyntheticRun, tmp_path: Path) -> None:
    shutil.copytree(synthetic.run_dir, tmp_path / "runs" / "r1")
    run_app("report", "r1", "--runs-root", str(tmp_path / "runs"))
    assert (tmp_path / "runs" / "r1" / "report.md").exists()


def test_unknown_format(synthetic: SyntheticRun) -> None:
    with pytest.raises(UserError, match=r"--format 'pdf'.*--format md.*--format html"):
        run_app("report", str(synthetic.run_dir), "--format", "pdf")


def test_not_a_run_directory(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such run directory"):
        write_report(tmp_path / "missing")
    with pytest.raises(UserError, match=r"not a run directory \(no manifest.json\)"):
        write_report(tmp_path)


def test_a_run_without_judgments_says_which_command_to_run(tmp_path: Path) -> None:
    run = build_run(tmp_path)
    (run.run_dir / "judgments.jsonl").unlink()
    with pytest.raises(UserError, match=r"no judgments.*evalharness judge "):
        write_report(run.run_dir, "html")
    assert not (run.run_dir / "report.html").exists()


def test_exit_code_2_through_the_real_cli(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from evalharness.cli import app, main

    names = {c.name or getattr(c.callback, "__name__", "") for c in app.registered_commands}
    if "report" not in names:
        pytest.skip("evalharness.cli does not register the report command yet")
    with pytest.raises(SystemExit) as exc:
        main(["report", str(tmp_path)])
    assert exc.value.code == 2
    assert "not a run directory" in capsys.readouterr().err
