"""Judge health: the judge's own reliability, flagged from its verdicts alone."""

from __future__ import annotations

from evalharness.audit.config import AuditConfig
from evalharness.audit.judge_health import judge_health
from evalharness.schema import Judgment
from tests.helpers import game

CONFIG = AuditConfig()


def _games(verdicts: list[tuple[str | None, str | None]], cand: str = "ft",
           base: str = "base") -> list[Judgment]:
    """Per prompt: (winner with the candidate shown first, winner with the baseline first)."""
    out = []
    for i, (cand_first, base_first) in enumerate(verdicts):
        out.append(game(f"{i}c", f"p{i}", cand, base, cand_first))
        out.append(game(f"{i}b", f"p{i}", base, cand, base_first))
    return out


def _checks(judgments: list[Judgment], **kw: object) -> dict[str, str]:
    found = judge_health(judgments, "base", CONFIG, **kw)  # type: ignore[arg-type]
    return {f.check: f.severity for f in found}


def test_a_judge_that_always_picks_position_a_is_flagged_twice() -> None:
    """47 of 50 prompts split by position (A wins both orders), 3 decided by content: the
    win rate is 50% with a tight interval, and the audit says it is the judge's doing."""
    judgments = _games([("A", "A")] * 47 + [("A", "B")] * 3)
    found = judge_health(judgments, "base", CONFIG)
    checks = {f.check: f for f in found}
    assert checks["judge-undecided"].severity == "severe"
    assert "47 of 50" in checks["judge-undecided"].summary
    assert checks["judge-position"].severity == "severe"
    assert "position A (shown first) won 97 of 100" in checks["judge-position"].summary
    assert all(f.subject == "judge:j" and f.about == "ft" for f in found)
    assert "verdicts: A 97, B 3, tie 0, invalid 0" in checks["judge-position"].evidence


def test_a_content_judge_with_a_clear_winner_is_not_flagged() -> None:
    """Candidate wins 35 prompts in both orders, loses 15 in both: nothing to flag."""
    assert _checks(_games([("A", "B")] * 35 + [("B", "A")] * 15)) == {}


def test_invalid_verdicts_are_flagged_by_share() -> None:
    """6 of 50 games unreadable (12%): a warning; 20 of 50 (40%): severe."""
    clean = [("A", "B")] * 25
    assert _checks(_games([(None, "B")] * 6 + clean[6:]))["judge-invalid"] == "warning"
    assert _checks(_games([(None, None)] * 10 + clean[10:]))["judge-invalid"] == "severe"


def test_ties_on_identical_answers_are_not_indecision() -> None:
    """An adapter that answers exactly like the baseline on every prompt gets ties: the right
    verdict, so no judge finding once the identical prompts are known."""
    judgments = _games([("tie", "tie")] * 30)
    assert _checks(judgments)["judge-undecided"] == "severe"
    assert _checks(judgments, identical={"ft": {f"p{i}" for i in range(30)}}) == {}


def test_too_few_games_say_nothing() -> None:
    assert _checks(_games([("A", "A")] * 4)) == {}
