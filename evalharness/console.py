"""The console commands print tables to, and how untrusted text is shown on it.

Answers, judge replies, model and folder names and prompt ids come from models, files and
users: printed as rich markup, ``[/INST]`` crashes the command (MarkupError) and
``[red]x[/red]`` or ``:smile:`` change what is shown; written raw, an escape sequence in an
answer can recolour, retitle or clear the user's terminal. So the console interprets no markup
or emoji codes at all, and ``literal`` turns every such string into a plain ``Text`` with its
control characters made visible.
"""

from __future__ import annotations

import os
import re
from typing import Any

from rich.console import Console
from rich.text import Text

PIPED_WIDTH = 160
"""Width for piped or captured output: tables wrapped at 80 characters break every cell."""

# C0 and C1 controls but tab and newline (ESC starts colour, title and hyperlink sequences),
# and the bidirectional overrides that make text display in another order than it is stored.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    r"""``text`` with control characters written as escapes, so a terminal shows them.

    >>> printable("a\x1b[31mred\r\nb\tc\u202ed")
    'a\\x1b[31mred\nb\tc\\u202ed'
    >>> printable("[/INST] stays")
    '[/INST] stays'
    """
    text = text.replace("\r\n", "\n")  # Windows line ends are line ends, not controls
    return _CONTROL.sub(
        lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100 else f"\\u{ord(m[0]):04x}", text)


def literal(text: object, style: str = "") -> Text:
    """``text`` to print exactly as it is: no markup, no emoji codes, no terminal controls.

    The one way terminal output shows a string it did not write itself (model output, prompt
    ids, model, judge and folder names, paths), whatever console it is printed on.

    >>> literal("[/INST] [red]x[/red] :smile:").plain
    '[/INST] [red]x[/red] :smile:'
    """
    return Text(printable(str(text)), style=style)


class LiteralConsole(Console):
    """A console that shows every plain string literally: markup and emoji codes off, control
    characters made visible (strings reach ``render_str`` from ``print``, table cells, titles
    and rules alike), so a message that embeds a name or a path needs no escaping; styles go
    through ``Text``."""

    def __init__(self, **options: Any) -> None:
        super().__init__(markup=False, emoji=False, **options)

    def render_str(self, text: str, **options: Any) -> Text:
        """Rich's rendering of ``text``, after ``printable``; markup stays off."""
        options["markup"] = options["emoji"] = False
        return super().render_str(printable(text), **options)


def output_console() -> Console:
    """stdout as a rich console; wide when not a terminal (unless COLUMNS says otherwise)."""
    console = LiteralConsole(soft_wrap=False)
    if console.is_terminal or "COLUMNS" in os.environ:
        return console
    return LiteralConsole(soft_wrap=False, width=PIPED_WIDTH)
