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


def judge_folder(target: Path, key_env: str, *, base: str = "pairwise-binary",
                 replace: Sequence[tuple[str, str]] = ()) -> Path:
    """A copy of a shipped judge at ``target`` whose API key is read from ``key_env``, with
    further ``(old, new)`` text replacements in its config.yaml (e.g. faster retries)."""
    import shutil

    from evalharness.judging.config import default_judges_root

    shutil.copytree(default_judges_root() / base, target)
    config = target / "config.yaml"
    text = config.read_text().replace("api_key_env: OPENAI_API_KEY", f"api_key_env: {key_env}")
    for old, new in replace:
        assert old in text, f"{old!r} is not in {base}'s config.yaml"
        text = text.replace(old, new)
    config.write_text(text)
    return target
