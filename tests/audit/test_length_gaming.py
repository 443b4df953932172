"""Length gaming: much longer than the baseline and winning because of it is flagged; long but
winning on content, or of similar length, is not."""

from __future__ import annotations

from evalharness.audit.config import AuditConfig
from evalharness.audit.findings import CandidateAnswers, Finding
from evalharness.audit.length_gaming import compare_lengths, length_gaming, split_by_length
from evalharness.schema import Judgment, Message, Prompt
from tests.audit.helpers import answer
from tests.helpers import game

CONFIG = AuditConfig()
N = 30
IDS = [f"p{i:02d}" for i in range(N)]
PROMPTS = {pid: Prompt(id=pid, messages=(Message(role="user", content="Explain it."),))
           for pid in IDS}
SHORT = "An apprenticeship combines paid work with study."  # 48 characters
PADDED = SHORT + " It is worth noting, as many experts agree, that this matters a lot." * 2


def candidate(mine: dict[str, str], theirs: dict[str, str] | None) -> CandidateAnswers:
    return CandidateAnswers(
        "ft", {pid: answer("ft", pid, t) for pid, t in mine.items()}, PROMPTS,
        None if theirs is None else {pid: answer("base", pid, t) for pid, t in theirs.items()})


def both_orders(pid: str, ft_wins: bool, ft_len: int, base_len: int) -> list[Judgment]:
    """The two games of one prompt, with the answer lengths the judge saw."""
    first, second = ("A", "B") if ft_wins else ("B", "A")
    return [game(f"{pid}a", pid, "ft", "base", first, first_length=ft_len,
                 second_length=base_len),
            game(f"{pid}b", pid, "base", "ft", second, first_length=base_len,
                 second_length=ft_len)]


def padded_on(longer: set[int]) -> dict[str, str]:
    return {pid: PADDED if i in longer else SHORT[:30] for i, pid in enumerate(IDS)}


def run(mine: dict[str, str], wins: set[int], theirs: dict[str, str] | None = None
        ) -> list[Finding]:
    """``ft`` answers ``mine`` against a baseline answering ``SHORT`` everywhere and wins the
    prompts in ``wins`` (both orders)."""
    theirs = theirs or dict.fromkeys(IDS, SHORT)
    judgments = [j for i, pid in enumerate(IDS)
                 for j in both_orders(pid, i in wins, len(mine[pid]), len(theirs[pid]))]
    return length_gaming(candidate(mine, theirs), judgments, CONFIG)


LONG_ON = set(range(24))  # longer on 24 of 30 prompts (80%), shorter on 6


def test_much_longer_and_winning_only_when_longer_is_flagged() -> None:
    (finding,) = run(padded_on(LONG_ON), wins=LONG_ON)
    assert finding.check == "length-gaming" and finding.severity == "warning"
    assert "win 100% when longer, 0% when shorter" in finding.summary
    assert finding.summary.startswith("answers are 3.8x as long as the baseline's")
    assert "win rate when longer 100% (48 games), when shorter 0% (12)" in finding.evidence
    assert finding.prompt_ids == tuple(IDS[:12])


def test_much_longer_but_winning_as_often_when_shorter_is_not_flagged() -> None:
    wins = set(range(0, N, 2))  # half the prompts, alike where longer and where shorter
    assert run(padded_on(LONG_ON), wins=wins) == []


def test_winning_more_when_longer_by_less_than_the_gap_is_not_flagged() -> None:
    # When longer: 14 of 24 won (58%); when shorter: 3 of 6 (50%): an 8-point gap.
    wins = set(range(14)) | {24, 25, 26}
    assert run(padded_on(LONG_ON), wins=wins) == []


def test_similar_lengths_are_never_flagged() -> None:
    same = {pid: SHORT.upper() for pid in IDS}
    assert run(same, wins=set(range(N))) == []
    # Longer on most prompts, but only by 10%.
    assert run(dict.fromkeys(IDS, SHORT + " Yes."), wins=set(range(N))) == []


def test_much_longer_without_judgments_is_worth_knowing() -> None:
    (finding,) = length_gaming(candidate(padded_on(LONG_ON), dict.fromkeys(IDS, SHORT)), [],
                               CONFIG)
    assert finding.severity == "info"
    assert "read the length-controlled win rate" in finding.summary
    assert compare_lengths(candidate(padded_on(LONG_ON), dict.fromkeys(IDS, SHORT))) \
        .longer_share == 0.8


def test_too_few_shorter_games_cannot_show_gaming_and_stay_info() -> None:
    always = set(range(28))  # shorter on 2 prompts: 4 games, fewer than min_games (5)
    (finding,) = run(padded_on(always), wins=always)
    assert finding.severity == "info"


def test_lengths_missing_from_the_judgments_are_taken_from_the_answers() -> None:
    mine, theirs = padded_on(LONG_ON), dict.fromkeys(IDS, SHORT)
    judgments = [j.model_copy(update={"first_length": None, "second_length": None})
                 for i, pid in enumerate(IDS) for j in both_orders(pid, i in LONG_ON, 0, 0)]
    split = split_by_length(candidate(mine, theirs), judgments)
    assert (split.longer_games, split.longer_win_rate) == (48, 1.0)
    assert (split.shorter_games, split.shorter_win_rate) == (12, 0.0)
    (finding,) = length_gaming(candidate(mine, theirs), judgments, CONFIG)
    assert finding.severity == "warning"


def test_soft_preferences_count_by_the_side_they_lean_to() -> None:
    mine, theirs = padded_on(LONG_ON), dict.fromkeys(IDS, SHORT)
    judgments = [j.model_copy(update={"winner": None, "verdict": None,
                                      "weight_a": 0.9 if j.winner == "A" else 0.1})
                 for i, pid in enumerate(IDS)
                 for j in both_orders(pid, i in LONG_ON, len(mine[pid]), len(SHORT))]
    assert length_gaming(candidate(mine, theirs), judgments, CONFIG)[0].severity == "warning"


def test_the_baseline_itself_and_too_few_prompts_are_not_compared() -> None:
    assert length_gaming(candidate(padded_on(LONG_ON), None), [], CONFIG) == []
    few = dict.fromkeys(IDS[:9], PADDED)
    assert length_gaming(candidate(few, dict.fromkeys(IDS[:9], SHORT)), [], CONFIG) == []
