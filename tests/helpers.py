"""Small helpers shared by tests."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from evalharness.schema import Judgment


def read_jsonl(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_jsonl(path: Path, rows: Sequence[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def game(key: str, prompt_id: str, first: str, second: str, winner: str | None,
         **extra: object) -> Judgment:
    """One judged game for statistics tests (judge "j", verdict = winner)."""
    return Judgment(key=key, prompt_id=prompt_id, judge="j", first=first, second=second,
                    verdict=winner, winner=winner, **extra)  # type: ignore[arg-type]
