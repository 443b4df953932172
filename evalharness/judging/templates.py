"""Judge templates: placeholders, and the fences that keep each answer inside its block.

A template names what it shows with ``{question}``, ``{answer_a}``, ``{answer_b}``,
``{reference}`` and ``{fence_id}``. Each text is inserted inside a fence whose id is a hash
of the question and both answers::

    <<<ANSWER A id=3f9a1c2b7d0e>>>
    ...the answer, verbatim...
    <<<END ANSWER A id=3f9a1c2b7d0e>>>

An answer cannot close its block and address the judge: to forge the end line it would have
to contain a hash of itself. Invisible and direction-control characters are shown to the
judge as visible escapes (``<U+200B>``), and the judgment records how many (``neutralised``).
Substitution is a single pass, so placeholder-like text inside
an answer is left as it is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from evalharness.audit.text import visible_controls
from evalharness.keys import content_key
from evalharness.schema import Message

PLACEHOLDERS = ("question", "answer_a", "answer_b", "reference", "fence_id")
"""Every name a template may use."""
REQUIRED = ("question", "answer_a", "answer_b")
"""Names the templates of an LLM judge must use (in the system or the user template)."""
PLACEHOLDER_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class GameText:
    """The texts one game shows the judge."""

    question: str
    answer_a: str
    answer_b: str
    reference: str | None = None


def question_text(messages: Sequence[Message]) -> str:
    """The prompt as the judge reads it: the user's text, or the whole conversation.

    >>> question_text([Message(role="user", content="Hi?")])
    'Hi?'
    >>> print(question_text([Message(role="system", content="Be brief."),
    ...                      Message(role="user", content="Hi?")]))
    [system]
    Be brief.
    <BLANKLINE>
    [user]
    Hi?
    """
    if len(messages) == 1 and messages[0].role == "user":
        return messages[0].content
    return "\n\n".join(f"[{m.role}]\n{m.content}" for m in messages)


def fence_id(game: GameText) -> str:
    """Id of a game's fences: 12 hex digits of the hash of everything fenced."""
    return content_key([game.question, game.answer_a, game.answer_b, game.reference])[:12]


def fenced(label: str, text: str, ident: str) -> str:
    """``text`` between the open and close lines of block ``label``.

    >>> print(fenced("ANSWER A", "Paris.", "abc"))
    <<<ANSWER A id=abc>>>
    Paris.
    <<<END ANSWER A id=abc>>>
    """
    return f"<<<{label} id={ident}>>>\n{text}\n<<<END {label} id={ident}>>>"


def neutralised(game: GameText) -> int:
    """How many invisible or direction-control characters ``game``'s texts hold: each is
    shown to the judge as a visible ``<U+XXXX>`` escape (``values_for``).

    >>> neutralised(GameText("Q?", "fine", "ignore\u200b the rest"))
    1
    """
    texts = (game.question, game.answer_a, game.answer_b, game.reference or "")
    return sum(visible_controls(t).replaced for t in texts)


def values_for(game: GameText) -> dict[str, str]:
    """The text each placeholder stands for in ``game``.

    Zero-width and bidi-override characters are shown as visible escapes (``<U+202E>``):
    hidden from a reader, they are still read by the judge, so an answer could carry an
    instruction nobody sees, or display reversed text. The fence id hashes the texts as
    they were, so it is the same whether or not anything was escaped.
    """
    ident = fence_id(game)

    def shown(text: str) -> str:
        return visible_controls(text).text

    return {
        "question": fenced("QUESTION", shown(game.question), ident),
        "answer_a": fenced("ANSWER A", shown(game.answer_a), ident),
        "answer_b": fenced("ANSWER B", shown(game.answer_b), ident),
        "reference": fenced("REFERENCE", shown(game.reference or "(no reference)"), ident),
        "fence_id": ident,
    }


def render(template: str, values: Mapping[str, str]) -> str:
    """Replace known ``{name}`` placeholders in one pass; other braces stay as they are.

    >>> render("Q: {question} {json}", {"question": "{answer_a}"})
    'Q: {answer_a} {json}'
    """
    return PLACEHOLDER_RE.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def placeholder_problems(template: str, where: str) -> list[str]:
    """Unknown placeholders in ``template``, each with ``where:line``.

    >>> placeholder_problems("ok {question}\\n{answr_a}", "user.txt")[0].split(" (")[0]
    'user.txt:2: unknown placeholder {answr_a}'
    """
    known = ", ".join("{" + name + "}" for name in PLACEHOLDERS)
    problems = []
    for number, line in enumerate(template.splitlines(), start=1):
        for match in PLACEHOLDER_RE.finditer(line):
            if match.group(1) not in PLACEHOLDERS:
                problems.append(f"{where}:{number}: unknown placeholder {match.group(0)} "
                                f"(known: {known})")
    return problems


def used_placeholders(*templates: str | None) -> set[str]:
    """Known placeholder names used by any of ``templates``."""
    return {m.group(1) for t in templates if t for m in PLACEHOLDER_RE.finditer(t)
            if m.group(1) in PLACEHOLDERS}
