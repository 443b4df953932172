"""The console commands print tables to."""

from __future__ import annotations

import os

from rich.console import Console

PIPED_WIDTH = 160
"""Width for piped or captured output: tables wrapped at 80 characters break every cell."""


def output_console() -> Console:
    """stdout as a rich console; wide when not a terminal (unless COLUMNS says otherwise)."""
    console = Console(soft_wrap=False)
    if console.is_terminal or "COLUMNS" in os.environ:
        return console
    return Console(soft_wrap=False, width=PIPED_WIDTH)
