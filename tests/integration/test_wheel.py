"""A non-editable install, built the way `pip install evalharness` builds it (sdist, then a wheel
from the sdist), runs the default workflow from a directory outside the repository: the shipped
judges and prompt set come with the package.

The fresh venv sees the main venv's dependencies through a plain path in a .pth file (nothing is
downloaded); a path line in a .pth does not process the .pth files it points at, so the main
venv's editable install of evalharness stays invisible, and the test asserts the import comes
from the fresh venv.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.test_cli_stats import write_judgments

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
WHEEL_LIMIT = 1_000_000
"""Bytes: code, templates, judges and prompts are ~0.2 MB; runs/, tests or a model would not fit."""


@dataclass(frozen=True)
class Installed:
    venv: Path
    wheel: Path
    outside: Path
    """A directory outside the repository, the working directory of every command."""

    def run(self, *args: str,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        command = [str(self.venv / "bin" / "evalharness"), *args]
        return subprocess.run(command, cwd=self.outside, env=env or clean_env(), text=True,
                              capture_output=True, timeout=300, check=False)


def clean_env() -> dict[str, str]:
    """The caller's environment without anything that points back at the repository."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"PYTHONPATH", "EVALHARNESS_JUDGES", "VIRTUAL_ENV", "PYTHONHOME"}}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", COLUMNS="200")
    return env


def _check(command: list[str], cwd: Path) -> str:
    done = subprocess.run(command, cwd=cwd, env=clean_env(), text=True, capture_output=True,
                          timeout=300, check=False)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    started = time.perf_counter()
    work = tmp_path_factory.mktemp("wheel")
    assert not work.is_relative_to(REPO)
    # The sdist through setuptools' PEP 517 hook (what `python -m build` calls), then the wheel
    # from the sdist in pip's own temporary folder: a file the sdist forgets cannot slip in
    # from the checkout. No build isolation: the main venv's setuptools, nothing downloaded.
    sdist = Path(_check([sys.executable, "-c", "import sys; from setuptools import build_meta; "
                         "print(build_meta.build_sdist(sys.argv[1]))", str(work / "sdist")],
                        REPO).strip().splitlines()[-1])
    _check([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
            "-w", str(work / "dist"), str(work / "sdist" / sdist)], work)
    (wheel,) = (work / "dist").glob("evalharness-*.whl")

    venv = work / "venv"
    _check([sys.executable, "-m", "venv", "--without-pip", str(venv)], work)
    _check([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
            "--no-deps", "--no-index", "-q", str(wheel)], work)
    (site,) = (venv / "lib").glob("python3*/site-packages")
    (site / "evalharness-test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    outside = tmp_path_factory.mktemp("outside")
    print(f"\nwheel {wheel.stat().st_size} bytes; sdist + wheel + install "
          f"{time.perf_counter() - started:.1f} s")
    return Installed(venv, wheel, outside)


def test_the_wheel_carries_the_judges_and_prompts_and_nothing_else(installed: Installed) -> None:
    names = zipfile.ZipFile(installed.wheel).namelist()
    shipped = {n.removeprefix("evalharness/_data/") for n in names
               if n.startswith("evalharness/_data/")}
    in_repo = {str(p.relative_to(REPO)) for folder in ("judges", "prompts")
               for p in (REPO / folder).rglob("*") if p.is_file()}
    assert shipped == in_repo
    assert not [n for n in names if n.split("/")[0] in {"tests", "runs", "judges", "prompts"}]
    assert installed.wheel.stat().st_size < WHEEL_LIMIT


def test_the_installed_package_is_imported_not_the_checkout(installed: Installed) -> None:
    out = _check([str(installed.venv / "bin" / "python"), "-c",
                  "import json, sys, evalharness; "
                  "print(json.dumps([evalharness.__file__, sys.path]))"], installed.outside)
    module, path = json.loads(out)
    assert Path(module).is_relative_to(installed.venv)
    assert str(REPO) not in path


def test_judges_lists_the_shipped_judges_and_user_folders_still_override(
    installed: Installed, tmp_path: Path
) -> None:
    listed = installed.run("judges")
    assert listed.returncode == 0, listed.stderr
    for name in ("reference", "pairwise-binary", "pairwise-5level", "pairwise-logprob"):
        assert name in listed.stdout
    assert "_data/judges" in listed.stdout  # the title names where they were found

    mine = tmp_path / "my-judges" / "strict"
    mine.mkdir(parents=True)
    (mine / "config.yaml").write_text("kind: reference\nmetric: rouge_l\n")
    by_env = installed.run("judges", env={**clean_env(), "EVALHARNESS_JUDGES": str(mine.parent)})
    by_flag = installed.run("judges", "--judges-dir", str(mine.parent))
    for result in (by_env, by_flag):
        assert result.returncode == 0, result.stderr
        assert "strict" in result.stdout and "pairwise-binary" not in result.stdout


def test_check_validates_the_shipped_prompt_set_and_judges(installed: Installed) -> None:
    result = installed.run("check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "league-50.jsonl (50 prompts" in result.stdout
    assert "ok   judge reference" in result.stdout
    assert "everything checks out" in result.stdout


def test_power_and_stats(installed: Installed) -> None:
    power = installed.run("power", "--win-rate", "0.6")
    assert power.returncode == 0, power.stderr
    assert "you need 210 prompts" in " ".join(power.stdout.split())

    write_judgments(installed.outside / "judgments.jsonl", 31, 19)
    stats = installed.run("stats", "judgments.jsonl", "--baseline", "base", "--bootstrap", "500")
    assert stats.returncode == 0, stats.stderr
    assert "62.0%" in stats.stdout and "[48.2, 74.1]" in stats.stdout


def test_compare_with_the_reference_judge_on_the_shipped_prompts(installed: Installed) -> None:
    # The fake backend answers without a model; a folder with a config.json passes as a
    # merged model, for the candidate and for the base.
    for name in ("cand", "base"):
        (installed.outside / name).mkdir(exist_ok=True)
        (installed.outside / name / "config.json").write_text('{"model_type": "llama"}')
    result = installed.run("compare", "cand", "--base", "base", "--backend", "fake",
                           "--bootstrap", "100")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "50 prompts, 100 judgments by reference" in result.stdout
    (run_dir,) = (installed.outside / "runs").iterdir()
    judgments = [json.loads(line) for line in
                 (run_dir / "judgments.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(judgments) == 100
    assert {j["judge"] for j in judgments} == {"reference"}
    assert {j["error"] for j in judgments} == {None}
    assert (run_dir / "report.md").is_file() and (run_dir / "report.html").is_file()
