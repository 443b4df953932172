"""Build hook: ship the repository's top-level ``judges/`` and ``prompts/`` inside the wheel.

Everything else (metadata, packages, package data) is in pyproject.toml. The two folders stay at
the top level, beside ``evalharness/``, as their only copy; a wheel carries them as package data
under ``evalharness/_data/``, where ``evalharness.resources`` looks first. A build hook is the
simplest robust way to do that: mapping them in as extra packages with ``package-dir`` would
need a hand-kept package list (``packages.find`` cannot add packages from outside
``evalharness/``) and warns for every judge folder named like a Python module, and a committed
copy or symlink drifts or breaks on checkouts without symlinks. The sdist gets the folders from
MANIFEST.in, so a wheel built from it (``pip install evalharness``) carries them too.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SHIPPED = ("judges", "prompts")
ROOT = Path(__file__).resolve().parent


class BuildPyWithShippedData(build_py):
    """``build_py`` that also copies ``judges/`` and ``prompts/`` to ``evalharness/_data/``."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install reads the folders in the checkout
            return
        for name in SHIPPED:
            target = Path(self.build_lib, "evalharness", "_data", name)
            # build/ is reused between builds: a judge deleted since the last one must not ship
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(ROOT / name, target,
                            ignore=shutil.ignore_patterns("__pycache__", "*.py[cod]", ".*"))


setup(cmdclass={"build_py": BuildPyWithShippedData})
