"""When no judgment has a verdict, say so: the judge's replies are the problem, not the data.

A run whose every judgment is invalid has no win rate to report, and the statistics would
otherwise fail on a symptom (the baseline "played no valid game"). Judging, ``stats`` and
the report all ask ``all_invalid_problem`` instead, so the message is the same everywhere.
Kept free of numpy and of the judging package: every command imports it cheaply.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from evalharness.schema import Judgment

SAMPLES = 2
"""Replies quoted in the message."""
SAMPLE_CHARS = 80
"""Characters kept of each quoted reply."""


def sample_replies(judgments: Sequence[Judgment], n: int = SAMPLES) -> list[str]:
    """Up to ``n`` distinct replies of invalid judgments, shortened and quoted as JSON strings
    (newlines, quotes and control characters escaped: the text is the judge's, untrusted).

    >>> bad = Judgment(key="k", prompt_id="p", judge="j", first="a", second="b", verdict=None,
    ...                winner=None, raw='I pick "A"\\nprobably')
    >>> sample_replies([bad])
    ['"I pick \\\\"A\\\\"\\\\nprobably"']
    """
    seen: dict[str, None] = {}
    for judgment in judgments:
        if not judgment.valid:
            text = judgment.raw or f"(no reply: {judgment.error or 'empty'})"
            short = text if len(text) <= SAMPLE_CHARS else text[:SAMPLE_CHARS] + "..."
            seen.setdefault(json.dumps(short), None)
            if len(seen) == n:
                break
    return list(seen)


def all_invalid_problem(judgments: Sequence[Judgment], where: str = "") -> str | None:
    """The message for judgments that are all invalid (``None`` when any has a verdict, or
    there are none); ``where`` names the judge's folder for the fix.

    >>> bad = Judgment(key="k", prompt_id="p", judge="j", first="a", second="b", verdict=None,
    ...                winner=None, raw="Both fine.")
    >>> print(all_invalid_problem([bad]).split(" Fix")[0])  # doctest: +NORMALIZE_WHITESPACE
    all 1 judgments were invalid: the judge's replies could not be read as verdicts (e.g. "Both
    fine.").
    >>> all_invalid_problem([bad.model_copy(update={"verdict": "A", "winner": "A"})]) is None
    True
    """
    if not judgments or any(j.valid for j in judgments):
        return None
    folder = f" ({where})" if where else ""
    return (
        f"all {len(judgments)} judgments were invalid: the judge's replies could not be read "
        f"as verdicts (e.g. {', '.join(sample_replies(judgments))}). Fix: check the judge "
        f"model and its template{folder}: the replies must end in the verdict format its "
        "'verdicts' patterns read (`evalharness check` tests them on the 'examples'); then "
        "judge the answers again in a new run directory (these invalid judgments are the "
        "judge's answers and stay in this run)."
    )
