"""What every format reader shares: the ``Imported`` result, content keys of imported
records, the reading of JSON arrays and JSON lines with locations, and problem collection.

An imported record's key is a hash of its content (never of a path or a position in a
file), so importing the same files twice finds every key on disk and adds nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalharness.errors import UserError
from evalharness.keys import content_key
from evalharness.rows import Row, read_rows, read_text_utf8
from evalharness.schema import Answer, Judgment, Message, ModelSpec, Prompt, Winner

MAX_LISTED = 20
"""Problems listed in one error message (the count says how many more there are)."""


@dataclass(frozen=True)
class SourceFile:
    """One file a reader took records from."""

    path: Path
    """Where it was read."""
    n: int
    """Records read from it."""


@dataclass(frozen=True)
class Imported:
    """Everything read from one format's files, as our records."""

    format: str
    """The format's name (``alpacaeval``, ``arenahard``, ``mtbench``, ``table``)."""
    prompts: tuple[Prompt, ...]
    """The prompts whose text the files hold, in first-seen order."""
    answers: tuple[Answer, ...]
    """Every answer, one per model and prompt."""
    judgments: tuple[Judgment, ...]
    """Every game, one per judge, prompt and order."""
    models: tuple[str, ...]
    """Every model, the baseline first when there is one."""
    baseline: str | None
    """The model every other one was compared with, when the files or the user say."""
    sources: tuple[SourceFile, ...]
    """The files read."""


def imported_spec(name: str) -> ModelSpec:
    """The ``ModelSpec`` of a model known only by name (its answers came from a file).

    Its identity is its name: the same name in two imports (or in an export and its
    re-import) is the same model, whatever format carried it.

    >>> imported_spec("gpt4").key == imported_spec("gpt4").key != imported_spec("x").key
    True
    """
    return ModelSpec(name=name, kind="endpoint", base_model=f"imported:{name}",
                     base_fingerprint=content_key({"imported_model": name}))


def prompt_of(prompt_id: str, text: str, category: str = "default") -> Prompt:
    """A one-turn prompt."""
    return Prompt(id=prompt_id, messages=(Message(role="user", content=text),),
                  category=category)


def winner_of_weight(weight_a: float) -> Winner:
    """The hard verdict of a soft preference P(A better): ties at exactly one half.

    >>> winner_of_weight(0.7), winner_of_weight(0.5), winner_of_weight(0.0)
    ('A', 'tie', 'B')
    """
    return "A" if weight_a > 0.5 else "B" if weight_a < 0.5 else "tie"


class Problems:
    """Problems found while reading, reported together (up to ``MAX_LISTED``)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.found: list[str] = []

    def add(self, where: str, problem: str, fix: str) -> None:
        """Record one problem at ``where`` (``file:line`` or ``file: record N``)."""
        self.found.append(f"{where}: {problem}. Fix: {fix}")

    def raise_if_any(self) -> None:
        """Raise one ``UserError`` listing every problem recorded.

        Raises:
            UserError: when any problem was recorded; nothing has been written then.
        """
        if not self.found:
            return
        more = len(self.found) - MAX_LISTED
        listed = "\n  ".join(self.found[:MAX_LISTED]) + (f"\n  ... and {more} more"
                                                          if more > 0 else "")
        raise UserError(f"{len(self.found)} problem(s) in the {self.what}; nothing was "
                        f"imported:\n  {listed}")


def read_records(path: Path, what: str) -> list[Row]:
    """The records of a JSON file holding one array of objects (as AlpacaEval writes), or
    of JSON lines; a JSON array's locations are ``file: record N`` (N from 1).

    Raises:
        UserError: the file is missing, not UTF-8, not JSON, or holds something other than
            objects.
    """
    if not path.is_file():
        raise UserError(f"{path}: {what} not found. Fix: check the path.")
    text = read_text_utf8(path, what)
    if not text.lstrip().startswith("["):
        return read_rows(path, what)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}: {what} is not valid JSON ({exc.msg} at column "
                        f"{exc.colno}). Fix: restore the file as its tool wrote it.") from None
    rows: list[Row] = []
    for index, record in enumerate(value, start=1):
        if not isinstance(record, dict):
            raise UserError(f"{path}: record {index}: expected a JSON object, got "
                            f"{type(record).__name__}. Fix: the file must be a list of "
                            "objects, as the tool writes it.")
        rows.append(Row(f"{path}: record {index}", record))
    return rows


def expand(sources: Iterable[Path], suffixes: tuple[str, ...]) -> list[Path]:
    """Files named in ``sources``, folders searched (recursively, sorted) for ``suffixes``.

    Raises:
        UserError: a source that does not exist, or a folder holding no such file.
    """
    files: list[Path] = []
    for source in sources:
        if source.is_dir():
            found = sorted(p for p in source.rglob("*") if p.is_file()
                           and p.suffix.lower() in suffixes and not p.name.startswith("."))
            if not found:
                raise UserError(f"{source}: the folder holds no {' or '.join(suffixes)} file. "
                                "Fix: pass the folder the tool wrote, or the files themselves.")
            files.extend(found)
        elif source.is_file():
            files.append(source)
        else:
            raise UserError(f"{source}: no such file or folder. Fix: check the path.")
    return list(dict.fromkeys(files))


@dataclass
class Collector:
    """Gathers prompts, answers and judgments, refusing two records that claim the same
    thing with different content (a prompt id with two texts, a model with two answers to
    one prompt, one game with two verdicts): which one was meant is unknowable."""

    format: str
    problems: Problems
    prompts: dict[str, tuple[Prompt, str]] = field(default_factory=dict)
    answers: dict[tuple[str, str], tuple[Answer, str]] = field(default_factory=dict)
    judgments: dict[str, tuple[Judgment, str]] = field(default_factory=dict)
    models: dict[str, None] = field(default_factory=dict)

    def prompt(self, prompt: Prompt, where: str) -> None:
        """Add a prompt (a repeat with the same text is dropped)."""
        seen = self.prompts.get(prompt.id)
        if seen is None:
            self.prompts[prompt.id] = (prompt, where)
        elif seen[0].messages != prompt.messages:
            self.problems.add(where, f"prompt '{prompt.id}' has another text than at "
                              f"{seen[1]}", "give each prompt one id and one text")

    def answer(self, prompt_id: str, model: str, text: str, where: str,
               n_tokens: int = 0) -> None:
        """Add ``model``'s answer to ``prompt_id`` (a repeat with the same text is dropped)."""
        self.models.setdefault(model)
        seen = self.answers.get((prompt_id, model))
        if seen is not None:
            if seen[0].text != text:
                self.problems.add(where, f"model '{model}' has another answer to prompt "
                                  f"'{prompt_id}' than at {seen[1]}",
                                  "keep one answer per model and prompt (remove the other "
                                  "file, or rename one of the models)")
            return
        spec = imported_spec(model)
        key = content_key({"model": spec.key, "prompt": prompt_id, "text": text})
        self.answers[(prompt_id, model)] = (Answer(
            key=key, prompt_id=prompt_id, model=model, model_key=spec.key, text=text,
            n_tokens=n_tokens, finish_reason="stop", seconds=0.0), where)

    def text(self, prompt_id: str, model: str) -> str | None:
        """The answer text of ``model`` to ``prompt_id``, if collected."""
        seen = self.answers.get((prompt_id, model))
        return None if seen is None else seen[0].text

    def judgment(self, where: str, **fields: Any) -> None:
        """Add one game; its key hashes the judge, prompt, both models (and their answers
        when known) in their order, so the same game from the same files has the same key."""
        first, second, pid = fields["first"], fields["second"], fields["prompt_id"]
        self.models.setdefault(first)
        self.models.setdefault(second)
        key = content_key({"format": self.format, "judge": fields["judge"], "prompt": pid,
                           "first": [first, self.text(pid, first)],
                           "second": [second, self.text(pid, second)]})
        a, b = self.text(pid, first), self.text(pid, second)
        fields.setdefault("first_length", None if a is None else len(a))
        fields.setdefault("second_length", None if b is None else len(b))
        fields.setdefault("attempts", 0)  # this run made no judge call: reports count calls
        try:
            made = Judgment(key=key, **fields)
        except ValueError as exc:  # pydantic's ValidationError: a model against itself, ...
            self.problems.add(where, f"not a valid game ({_first_error(exc)})",
                              "name two different models and a verdict the format allows")
            return
        seen = self.judgments.get(key)
        if seen is None:
            self.judgments[key] = (made, where)
        elif (seen[0].winner, seen[0].weight_a) != (made.winner, made.weight_a):
            self.problems.add(where, f"the same game ({first} vs {second} on prompt '{pid}', "
                              f"judge {fields['judge']}) has another verdict than at "
                              f"{seen[1]}", "keep one verdict per game and order")

    def build(self, baseline: str | None, sources: list[SourceFile]) -> Imported:
        """The result; raises the problems found, if any.

        Raises:
            UserError: listing every problem found while reading.
        """
        self.problems.raise_if_any()
        models = list(self.models)
        if baseline is not None:
            models = [baseline] + [m for m in models if m != baseline]
        return Imported(
            format=self.format,
            prompts=tuple(p for p, _ in self.prompts.values()),
            answers=tuple(a for a, _ in self.answers.values()),
            judgments=tuple(j for j, _ in self.judgments.values()),
            models=tuple(models), baseline=baseline, sources=tuple(sources))


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        found = errors()
        if found:
            return str(found[0].get("msg", exc))
    return str(exc)


def field_text(row: Row, name: str, problems: Problems, fix: str) -> str | None:
    """``row``'s field ``name`` as text, or ``None`` with a problem recorded."""
    value = row.fields.get(name)
    if isinstance(value, str):
        return value
    got = "missing" if value is None else f"{type(value).__name__}, not text"
    problems.add(row.where, f"field '{name}' is {got}", fix)
    return None


def read_sources(sources: Iterable[Path], suffixes: tuple[str, ...], what: str
                 ) -> tuple[list[SourceFile], list[list[Row]]]:
    """Every file in ``sources`` (folders searched for ``suffixes``) read as records: the
    files for the manifest's provenance, and each file's records."""
    files: list[SourceFile] = []
    contents: list[list[Row]] = []
    for path in expand(sources, suffixes):
        rows = read_records(path, what)
        files.append(SourceFile(path, len(rows)))
        contents.append(rows)
    return files, contents
