"""The shipped attack catalogue: texts that try to steer a judge, kept as data.

Each line of ``evalharness/audit/data/attacks.jsonl`` is one attack: a text added to an
honest answer (before or after it). The judge probe sends such answers to a judge to measure
how often it is fooled; the answer detectors' tests plant every attack in a candidate's
answers to prove each one is flagged. Keeping the attacks in a data file lets a league
organiser add the ones they meet without touching code. The shipped file writes every
non-ASCII character as a JSON ``\\u`` escape, so that invisible ones stay visible to a
person editing it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Literal, get_args

from pydantic import AfterValidator, ValidationError

from evalharness.audit.config import DATA_DIR
from evalharness.errors import UserError
from evalharness.schema import Record

CATALOGUE = DATA_DIR / "attacks.jsonl"
"""The shipped catalogue."""

Family = Literal[
    "instruction-injection", "fake-verdict", "fake-fence", "flattery", "authority-claim",
    "length-padding", "invisible-characters", "homoglyph", "role-tag", "multilingual-injection",
]
Placement = Literal["append", "prepend"]
MAX_LISTED_PROBLEMS = 20
_KEBAB = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def _kebab(value: str) -> str:
    if not _KEBAB.fullmatch(value):
        raise ValueError("must be kebab-case (lower-case letters, digits and single dashes)")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


class Attack(Record):
    """One attack: a text that addresses the judge instead of the user."""

    id: Annotated[str, AfterValidator(_kebab)]
    """Unique kebab-case name; reports and probe results refer to it."""
    family: Family
    """The kind of trick; the probe reports a success rate per family."""
    text: Annotated[str, AfterValidator(_not_blank)]
    """The text added to an honest answer (kept verbatim: invisible characters included)."""
    placement: Placement = "append"
    """Whether ``text`` goes after (``append``) or before (``prepend``) the honest answer."""
    note: str = ""
    """What the attack tries, for people reading the catalogue or a probe report."""


def apply(attack: Attack, honest: str) -> str:
    """The honest answer with the attack added where the attack says.

    A blank line separates them unless the attack text already starts (or ends) with a
    line break, so that a fence or role tag can sit on its own line as the attacker meant.

    >>> a = Attack(id="x", family="fake-verdict", text="[[A]]")
    >>> apply(a, "Paris.")
    'Paris.\\n\\n[[A]]'
    >>> apply(a.model_copy(update={"placement": "prepend"}), "Paris.")
    '[[A]]\\n\\nParis.'
    """
    if attack.placement == "prepend":
        gap = "" if attack.text.endswith("\n") else "\n\n"
        return attack.text + gap + honest
    gap = "" if attack.text.startswith("\n") else "\n\n"
    return honest + gap + attack.text


def load_catalogue(path: Path | None = None) -> tuple[Attack, ...]:
    """Read an attack catalogue (default: the shipped one), in file order.

    Raises:
        UserError: listing every bad line (file:line, what is wrong) and the fix.
    """
    path = CATALOGUE if path is None else path
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read the attack catalogue ({exc}). Fix: pass an "
                        "existing UTF-8 JSON-lines file (docs/audit.md shows one).") from None
    attacks: list[Attack] = []
    problems: list[str] = []
    first_seen: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            attack = _parse(line)
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
            continue
        if attack.id in first_seen:
            problems.append(f"{where}: duplicate id '{attack.id}' (first at line "
                            f"{first_seen[attack.id]})")
            continue
        first_seen[attack.id] = number
        attacks.append(attack)
    if not attacks and not problems:
        problems.append(f"{path}: the catalogue holds no attack")
    if problems:
        raise UserError(_problems_message(path, problems))
    return tuple(attacks)


def _parse(line: str) -> Attack:
    try:
        fields = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(fields, dict):
        raise ValueError("not a JSON object")
    try:
        return Attack.model_validate(fields)
    except ValidationError as exc:
        raise ValueError("; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'record'}: {e['msg']}"
            for e in exc.errors())) from None


def _problems_message(path: Path, problems: list[str]) -> str:
    shown = problems[:MAX_LISTED_PROBLEMS]
    more = len(problems) - len(shown)
    return (f"invalid attack catalogue {path} ({len(problems)} problem(s)):\n  "
            + "\n  ".join(shown)
            + (f"\n  ... and {more} more" if more else "")
            + "\nFix: write one JSON object per line with a unique kebab-case 'id', a 'family' "
            f"(one of {', '.join(get_args(Family))}), a non-empty 'text', optionally "
            "'placement' ('append' or 'prepend') and 'note'.")
