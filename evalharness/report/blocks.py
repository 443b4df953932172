"""The building blocks of a report: sections of paragraphs, tables and figures.

Every renderer (Markdown, HTML, the terminal) lays out these; what the report says is
decided once, in ``markdown.report_sections``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NUMERIC = re.compile(r"^[-+<$]?\d")

@dataclass(frozen=True)
class Paragraph:
    """Plain text (renderers escape it)."""

    text: str


@dataclass(frozen=True)
class Table:
    """A table of plain-text cells; the first column is a label, the rest are numbers."""

    caption: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    def numeric(self, column: int) -> bool:
        """Whether a column holds numbers (right-aligned): every filled cell starts with one.

        >>> Table("t", ("a", "b"), (("x", "1.0%"), ("y", "-"))).numeric(1)
        True
        """
        cells = [r[column] for r in self.rows if r[column] not in {"", "-"}]
        return bool(cells) and all(_NUMERIC.match(c) for c in cells)


@dataclass(frozen=True)
class Figure:
    """Where a plot goes (the HTML report draws it; Markdown leaves it out)."""

    name: str
    caption: str


Block = Paragraph | Table | Figure


@dataclass(frozen=True)
class Section:
    """One titled part of the report."""

    id: str
    """Anchor id (letters and dashes)."""
    title: str
    blocks: tuple[Block, ...]
