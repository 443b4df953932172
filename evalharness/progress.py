"""Rich progress bars for the pipeline's stages (the ``Progress`` protocol of pipeline.py)."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class RichProgress:
    """One bar per stage, on stderr so stdout stays clean for tables and JSON."""

    def __init__(self, console: Console | None = None) -> None:
        self._progress = Progress(
            TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(),
            # A note quotes endpoints and model names: shown literally, never as markup.
            TextColumn("{task.fields[note]}", markup=False, style="yellow"),
            console=console or Console(stderr=True), transient=False,
        )
        self._task: TaskID | None = None
        self._last_note = ""

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._progress.stop()

    def start(self, description: str, total: int) -> None:
        """Begin a bar; a stage with nothing to do draws no bar."""
        self._task = (self._progress.add_task(description, total=total, note="") if total
                      else None)

    def advance(self, amount: int = 1) -> None:
        """Move the current bar."""
        if self._task is not None:
            self._progress.advance(self._task, amount)

    def note(self, text: str) -> None:
        """Show why the stage is stalled (a long wait and its reason) beside the bar, and
        once as a line above it, so it stays in the scrollback; ``""`` clears it.

        Without it the bar's ETA keeps promising seconds while every worker sleeps.
        """
        if self._task is not None:
            self._progress.update(self._task, note=text)
        if text and text != self._last_note:
            self._progress.console.print(Text(text, style="yellow"))
        self._last_note = text
