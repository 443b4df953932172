"""Load and validate prompt sets into a ``PromptSet`` with its content hash.

A prompt record has an ``id``, either a ``prompt`` (one user message) or ``messages`` (a chat
list of ``{"role", "content"}``), and optionally a ``reference`` answer and a ``category``.
Every problem in the file is collected and reported at once, each with its ``file:line``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evalharness.errors import UserError
from evalharness.keys import content_key
from evalharness.resources import shipped_dir
from evalharness.rows import Row, read_rows, text_id
from evalharness.schema import Answer, Judgment, Manifest, Message, Prompt, PromptSet

ROLES = ("system", "user", "assistant")
KNOWN_FIELDS = {"id", "prompt", "messages", "reference", "category"}
MAX_LISTED_PROBLEMS = 20
DEFAULT_PROMPTS = shipped_dir("prompts") / "league-50.jsonl"
"""The shipped prompt set (installed with the package; the checkout's prompts/ in a source tree)."""


def load_prompt_set(path: Path | str) -> PromptSet:
    """Read, validate and hash a prompt set.

    Raises:
        UserError: listing every invalid record (up to 20) with its location and the fix.

    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "p.jsonl"
    >>> _ = f.write_text('{"id": "a", "prompt": "Hi?"}\\n')
    >>> load_prompt_set(f).prompts[0].messages[0].content
    'Hi?'
    """
    path = Path(path)
    rows = read_rows(path, "prompt set")
    prompts: list[Prompt] = []
    problems: list[str] = []
    first_seen: dict[str, str] = {}
    for row in rows:
        try:
            prompt = _parse_prompt(row)
        except ValueError as exc:
            problems.append(f"{row.where}: {exc}")
            continue
        if prompt.id in first_seen:
            problems.append(
                f"{row.where}: duplicate id '{prompt.id}' (first at {first_seen[prompt.id]}); "
                "ids must be unique"
            )
            continue
        first_seen[prompt.id] = row.where
        prompts.append(prompt)
    if not rows:
        problems.append(f"{path}: the prompt set is empty")
    if problems:
        shown = problems[:MAX_LISTED_PROBLEMS]
        more = len(problems) - len(shown)
        raise UserError(
            f"invalid prompt set {path} ({len(problems)} problem(s)):\n  "
            + "\n  ".join(shown)
            + (f"\n  ... and {more} more" if more else "")
            + "\nFix: each record needs a unique non-empty 'id' and a non-empty 'prompt' "
            "(text) or 'messages' (list of {\"role\", \"content\"}); see README, Prompt sets."
        )
    return PromptSet(
        name=path.stem,
        source=str(path),
        sha256=content_key([p.model_dump(mode="json") for p in prompts]),
        prompts=tuple(prompts),
    )


def _parse_prompt(row: Row) -> Prompt:
    fields = row.fields
    unknown = sorted(set(fields) - KNOWN_FIELDS)
    if unknown:
        raise ValueError(
            f"unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(KNOWN_FIELDS))})"
        )
    if fields.get("id") is None:
        raise ValueError("missing 'id'")
    prompt_id = text_id(fields["id"])
    messages = parse_messages_field(fields, prompt_id)
    reference = fields.get("reference")
    if reference is not None and not isinstance(reference, str):
        raise ValueError("'reference' must be text")
    category = fields.get("category") or "default"
    if not isinstance(category, str):
        raise ValueError(f"'category' must be text, got {type(category).__name__}")
    return Prompt(id=prompt_id, messages=messages, reference=reference, category=category)


def parse_messages_field(fields: dict[str, Any], record_id: str = "") -> tuple[Message, ...]:
    """The conversation of a record with a ``prompt`` (text) or ``messages`` (chat list).

    Raises:
        ValueError: neither or both given, empty text, or a malformed message.
    """
    has_prompt = "prompt" in fields
    if has_prompt == ("messages" in fields):
        raise ValueError("give exactly one of 'prompt' or 'messages'")
    if not has_prompt:
        return _parse_messages(fields["messages"], record_id)
    text = fields["prompt"]
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"empty prompt for id '{record_id}'")
    return (Message(role="user", content=text),)


def _parse_messages(value: Any, prompt_id: str) -> tuple[Message, ...]:
    if isinstance(value, str):  # CSV and Parquet cells hold the list as JSON text
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise ValueError("'messages' is text but not a JSON list") from None
    if not isinstance(value, list) or not value:
        raise ValueError(f"'messages' must be a non-empty list for id '{prompt_id}'")
    messages: list[Message] = []
    for index, item in enumerate(value):
        if not isinstance(item, dict) or item.get("role") not in ROLES:
            raise ValueError(
                f"messages[{index}] needs a 'role' in {', '.join(ROLES)} and a 'content'"
            )
        content = item.get("content")
        if not isinstance(content, str) or not content.strip():
            raise ValueError(f"messages[{index}] has empty content for id '{prompt_id}'")
        messages.append(Message(role=item["role"], content=content))
    if messages[-1].role == "assistant":
        raise ValueError("the last message is the assistant's; nothing is left to answer")
    return tuple(messages)


def load_run_prompts(manifest: Manifest, answers: Sequence[Answer],
                      judgments: Sequence[Judgment]) -> tuple[tuple[Prompt, ...], str | None]:
    """The prompts a run answered, read from the file its manifest names.

    When that file is gone or no longer reads, id-only stand-ins (categories from the
    judgments) and a note saying why prompt texts are missing.
    """
    note: str | None = None
    if manifest.prompts is None:
        note = "the manifest names no prompt set"
    else:
        source = Path(manifest.prompts.source)
        if source.exists():
            try:
                return load_prompt_set(source).prompts, None
            except UserError as exc:
                note = f"the prompt set {source} no longer reads ({exc})"
        else:
            note = f"the prompt set {source} is no longer there"
    # Ids in first-seen order; categories from the judgments, which record them.
    categories = {j.prompt_id: j.category for j in judgments}
    ids = dict.fromkeys([a.prompt_id for a in answers] + [j.prompt_id for j in judgments])
    stand_ins = tuple(
        Prompt.model_construct(id=pid, messages=(), reference=None,
                               category=categories.get(pid, "default"))
        for pid in ids
    )
    return stand_ins, f"{note}: prompt texts are not shown, only their ids"
