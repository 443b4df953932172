"""Where the judges and prompt sets that ship with evalharness are.

The repository keeps them at its top level (``judges/``, ``prompts/``, beside ``evalharness/``)
as their only copy. A wheel carries them as package data under ``evalharness/_data/`` (setup.py
copies them there at build time), so a non-editable install finds them from any directory; a
source checkout or editable install has no ``_data`` and reads the top-level folders.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Literal

Shipped = Literal["judges", "prompts"]


def shipped_dir(name: Shipped) -> Path:
    """The folder of the shipped ``judges`` or ``prompts``: the installed copy, else the checkout's.

    >>> (shipped_dir("judges") / "reference" / "config.yaml").is_file()
    True
    """
    package = Path(str(files("evalharness"))).resolve()
    installed = package / "_data" / name
    return installed if installed.is_dir() else package.parent / name
