"""Degenerate answers: each detector flags the failure it is for and not its honest near-miss.

Honest text throughout is real: the 50 reference answers of ``prompts/league-50.jsonl`` (110 to
133 words each), used as a candidate's answers with prompts that carry no reference.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from evalharness.audit.config import AuditConfig
from evalharness.audit.degenerate import (
    DETECTORS,
    RefusalThresholds,
    degenerate,
    empty_answers,
    prompt_echoes,
    refusal_phrase,
    refusals,
    repetition_loops,
    truncated_answers,
)
from evalharness.audit.findings import CandidateAnswers, Finding
from evalharness.audit.leakage import reference_leak
from evalharness.audit.length_gaming import length_gaming
from evalharness.audit.repetition import LoopThresholds, loops, repetition
from evalharness.schema import Message, Prompt
from tests.audit.helpers import answer

CONFIG = AuditConfig()
LOOP = CONFIG.section("repetition-loop", LoopThresholds)
REFUSAL = CONFIG.section("refusals", RefusalThresholds)
LEAGUE = [json.loads(line) for line in
          (Path(__file__).resolve().parents[2] / "prompts" / "league-50.jsonl").open()]
HONEST = {row["id"]: row["reference"] for row in LEAGUE}
PROMPTS = {row["id"]: Prompt(id=row["id"], messages=(Message(role="user", content=row["prompt"]),))
           for row in LEAGUE}


def candidate(texts: dict[str, str], baseline: dict[str, str] | None = None,
              cut: Sequence[str] = (), base_cut: Sequence[str] = ()) -> CandidateAnswers:
    """A candidate ``ft`` with these answers on league-50's prompts (``cut``: prompt ids
    whose answers hit the token limit), against ``baseline``'s answers when given."""
    mine = {pid: answer("ft", pid, text, "length" if pid in cut else "stop")
            for pid, text in texts.items()}
    base = None if baseline is None else {
        pid: answer("base", pid, text, "length" if pid in base_cut else "stop")
        for pid, text in baseline.items()}
    return CandidateAnswers("ft", mine, PROMPTS, base)


def replaced(ids: Sequence[str], make: object) -> dict[str, str]:
    """The honest answers with those of ``ids`` replaced by ``make(honest_text)``."""
    return {pid: make(text) if pid in ids else text  # type: ignore[operator]
            for pid, text in HONEST.items()}


IDS = list(HONEST)


def only(found: list[Finding]) -> Finding:
    assert len(found) == 1, found
    return found[0]


# -- honest answers -----------------------------------------------------------------------


def test_the_league_50_references_as_answers_raise_no_finding_at_all() -> None:
    """False-positive rate 0 of 50 on long honest answers, for every detector of this module,
    the leak check (no references in the prompts) and the length check (against itself)."""
    for baseline in (None, HONEST):
        inp = candidate(HONEST, baseline)
        assert degenerate(inp, CONFIG) == []
        assert reference_leak(inp, CONFIG) == []
        assert length_gaming(inp, [], CONFIG) == []
    assert not any(loops(text, LOOP) for text in HONEST.values())
    assert not any(refusal_phrase(text, REFUSAL) for text in HONEST.values())
    assert max(repetition(text).repeated_share for text in HONEST.values()) < 0.02


# -- empty --------------------------------------------------------------------------------


def test_blank_answers_are_flagged_invisible_characters_count_as_blank() -> None:
    texts = replaced(IDS[:2], lambda _: " \n ")
    texts[IDS[2]] = "\u200b\u200b"
    finding = only(empty_answers(candidate(texts, HONEST), CONFIG))
    assert finding.severity == "warning"
    assert finding.summary.startswith("3 of 50 (6%) answers are blank")
    assert finding.prompt_ids == tuple(IDS[:3])
    assert "baseline: 0 of 50 (0%) blank" in finding.evidence


def test_a_quarter_of_blank_answers_is_severe_and_a_one_character_answer_is_not_blank() -> None:
    assert only(empty_answers(candidate(replaced(IDS[:13], lambda _: "")), CONFIG)).severity \
        == "severe"
    assert empty_answers(candidate(replaced(IDS[:13], lambda _: "0")), CONFIG) == []


# -- truncated ----------------------------------------------------------------------------


def test_answers_cut_at_the_token_limit_are_flagged_from_one_in_twenty() -> None:
    assert truncated_answers(candidate(HONEST, cut=IDS[:2]), CONFIG) == []  # 4%
    finding = only(truncated_answers(candidate(HONEST, HONEST, cut=IDS[:3],
                                               base_cut=IDS[:1]), CONFIG))
    assert finding.severity == "warning"
    assert finding.summary == "3 of 50 (6%) answers were cut at the token limit"
    assert "baseline: 1 of 50 (2%) cut" in finding.evidence
    assert any("raise --max-new-tokens" in line for line in finding.evidence)
    # The excerpt is the answer's end, where it was cut.
    assert finding.excerpts[0].startswith("...") and finding.excerpts[0].endswith(
        HONEST[IDS[0]][-20:])
    assert only(truncated_answers(candidate(HONEST, cut=IDS[:25]), CONFIG)).severity == "severe"


# -- repetition loops ---------------------------------------------------------------------

HONEST_START = ("A diploma usually takes two or three years of full time study, and most "
                "programmes mix theory with workshop practice and a placement. ")
LOOPS = {
    "sentence": "The college is a good college. " * 20,
    "phrase, until the limit": "apply now to learn more and " * 25,
    "one word": "the " * 80,
    "after an honest start": HONEST_START + "It is very important. " * 12,
    "two alternating sentences": "Yes it is. No it is not. " * 15,
    "numbered": " ".join(f"{i}. I will help you." for i in range(1, 16)),
    "characters": "!" * 500,
    "laughter": "ha" * 300,
    "Chinese": "我们可以" * 40,
    "Japanese": "ありがとうございます。" * 20,
    "German": "Das ist eine gute Frage. " * 10,
}
NEAR_MISSES = {
    "a chorus sung three times": (
        "Row, row, row your boat gently down the stream. " * 3
        + "Merrily merrily merrily life is but a dream and the song goes on."),
    "a list with a repeated lead-in": " ".join(
        f"You can use the {tool} to {job}." for tool, job in [
            ("lathe", "turn metal"), ("mill", "cut slots"), ("drill press", "bore holes"),
            ("welder", "join steel"), ("grinder", "finish edges"), ("saw", "cut stock"),
            ("router", "shape wood"), ("planer", "flatten boards")]),
    "a short repeated reassurance": "Yes. Yes. Yes.",
    "a separator line in Markdown": "Results\n" + "=" * 60 + "\n" + HONEST[IDS[0]],
    "a Chinese paragraph": "职业教育培养学生的实践能力。学生在工厂实习，学习使用真实的设备。"
                           "毕业以后，很多学生在本地企业找到工作。学校和企业一起设计课程。",
}


@pytest.mark.parametrize("name", LOOPS)
def test_each_kind_of_loop_is_caught(name: str) -> None:
    assert loops(LOOPS[name], LOOP), repetition(LOOPS[name])


@pytest.mark.parametrize("name", NEAR_MISSES)
def test_honest_repetition_is_not_a_loop(name: str) -> None:
    assert not loops(NEAR_MISSES[name], LOOP), repetition(NEAR_MISSES[name])


def test_loop_detection_rate_and_false_positive_rate() -> None:
    """Measured: 11 of 11 loop forms caught; 0 of 55 honest answers (league-50's references
    and the near misses above) flagged."""
    caught = sum(loops(text, LOOP) for text in LOOPS.values())
    honest = [*HONEST.values(), *NEAR_MISSES.values()]
    assert (caught, sum(loops(text, LOOP) for text in honest)) == (len(LOOPS), 0)


def test_a_candidate_is_flagged_from_one_looping_answer_in_twenty() -> None:
    one = candidate(replaced(IDS[:2], lambda _: LOOPS["sentence"]))  # 4%
    assert repetition_loops(one, CONFIG) == []
    texts = replaced(IDS[:3], lambda text: text + " " + "I hope this helps. " * 10)
    finding = only(repetition_loops(candidate(texts, HONEST, cut=IDS[:3]), CONFIG))
    assert finding.severity == "warning"
    assert finding.summary == "3 of 50 (6%) answers are caught in a repetition loop"
    assert "baseline: 0 of 50 (0%) loop" in finding.evidence
    assert "3 of the looping answers ran until the token limit" in finding.evidence
    # The excerpt starts at the loop, not at the honest text before it.
    assert finding.excerpts[0].startswith("...I hope this helps. I hope")
    half = candidate(replaced(IDS[:25], lambda _: LOOPS["one word"]))
    assert only(repetition_loops(half, CONFIG)).severity == "severe"


# -- echoes -------------------------------------------------------------------------------


def _echo(pid: str, text: str) -> str:
    return PROMPTS[pid].messages[0].content + " " + text


def test_answers_that_repeat_the_prompt_back_are_flagged() -> None:
    texts = {pid: _echo(pid, text) if i % 4 == 0 else text
             for i, (pid, text) in enumerate(HONEST.items())}
    finding = only(prompt_echoes(candidate(texts, HONEST), CONFIG))
    assert finding.severity == "warning"
    assert finding.summary == "13 of 50 (26%) answers repeat the prompt back"
    assert "baseline: 0 of 50 (0%) echo the prompt" in finding.evidence
    assert finding.excerpts[0].startswith(PROMPTS[IDS[0]].messages[0].content[:40])


def test_restating_the_question_and_echoing_as_often_as_the_baseline_are_not_flagged() -> None:
    # "What is the main difference between a polytechnic and a community college?"
    # restated as an answer's opening: the question's tail, not the question.
    restated = {pid: "The main difference between a polytechnic and a community college is "
                "focus. " + text for pid, text in HONEST.items()}
    assert prompt_echoes(candidate(restated, HONEST), CONFIG) == []
    # A proofreading-like task makes every model reproduce the prompt: no excess, no flag.
    echoed = {pid: _echo(pid, text) for pid, text in HONEST.items()}
    assert prompt_echoes(candidate(echoed, echoed), CONFIG) == []
    assert only(prompt_echoes(candidate(echoed), CONFIG)).summary.startswith("50 of 50")


def test_short_prompts_are_not_echoed_by_a_correct_answer() -> None:
    prompts = {"p": Prompt(id="p", messages=(Message(role="user", content="Where is Redmoor "
                                                     "Community College?"),))}
    inp = CandidateAnswers("ft", {"p": answer("ft", "p", "Where is Redmoor Community College? "
                                              "Redmoor Community College is in Redmoor.")},
                           prompts)
    assert prompt_echoes(inp, CONFIG) == []


# -- refusals -----------------------------------------------------------------------------

REFUSING = [
    "I'm sorry, but I can't help with that request.",
    "I’m sorry but I cannot share that.",  # curly apostrophes, no comma
    "As an AI language model, I cannot give advice about admissions.",
    "I CAN'T ASSIST WITH THIS.",
    "Désolé, mais je ne peux pas répondre à cette question.",
    "Lo siento, pero no puedo ayudar con eso.",
    "Es tut mir leid, aber ich kann diese Frage nicht beantworten.",
    "Извините, но я не могу помочь с этим.",
    "抱歉，我无法回答这个问题。",
    "申し訳ありませんが、お手伝いできません。",
]
NOT_REFUSING = [
    "I'm sorry to hear that your application was rejected. Here is what you can do next.",
    "I can't recommend one college over another without knowing your goals, but here are "
    "the questions to ask.",
    "Apprenticeships pay a wage. " * 10 + "I cannot stress enough how useful that is.",
    "Je ne sais pas encore quel programme choisir, mais voici les options.",
]


def test_refusals_in_several_languages_are_recognised_and_honest_openings_are_not() -> None:
    assert [refusal_phrase(text, REFUSAL) is not None for text in REFUSING] == [True] * 10
    assert [refusal_phrase(text, REFUSAL) for text in NOT_REFUSING] == [None] * 4


def test_every_shipped_phrase_is_found_where_an_answer_opens_with_it() -> None:
    assert len(REFUSAL.phrases) >= 50 and len(REFUSAL.patterns) == len(REFUSAL.phrases)
    for phrase in REFUSAL.phrases:
        assert refusal_phrase(f"{phrase.upper()} ...", REFUSAL) is not None, phrase
        # Deep inside a long answer the same words are not a refusal.
        assert refusal_phrase(HONEST[IDS[0]] + " " + phrase, REFUSAL) is None, phrase


def test_a_candidate_refusing_far_more_than_the_baseline_is_flagged() -> None:
    texts = replaced(IDS[:10], lambda _: REFUSING[0])
    finding = only(refusals(candidate(texts, HONEST), CONFIG))
    assert (finding.severity, finding.summary) == ("warning", "10 of 50 (20%) answers refuse")
    assert finding.excerpts[0] == REFUSING[0]
    many = replaced(IDS[:30], lambda _: REFUSING[8])
    assert only(refusals(candidate(many, HONEST), CONFIG)).severity == "severe"


def test_refusing_what_the_baseline_refuses_is_not_flagged() -> None:
    texts = replaced(IDS[:10], lambda _: REFUSING[0])
    assert refusals(candidate(texts, replaced(IDS[:6], lambda _: REFUSING[1])), CONFIG) == []
    assert refusals(candidate(replaced(IDS[:4], lambda _: REFUSING[0]), HONEST), CONFIG) == []


# -- shape --------------------------------------------------------------------------------


def test_every_finding_names_its_candidate_and_check_and_keeps_evidence_short() -> None:
    texts = replaced(IDS[:20], lambda _: REFUSING[0] + " " + "Sorry. " * 80)
    texts.update(dict.fromkeys(IDS[20:30], ""))
    found = degenerate(candidate(texts, HONEST, cut=IDS[:20]), CONFIG)
    assert {f.check for f in found} == {"empty-answers", "truncated-answers",
                                        "repetition-loop", "refusals"}
    for f in found:
        assert f.subject == "ft" and len(f.prompt_ids) <= 12 and len(f.excerpts) <= 3
        assert all(len(e) <= 86 for e in f.excerpts)
    assert len(DETECTORS) == 5


def test_thresholds_come_from_the_data_file_and_a_user_file_overrides_them(
        tmp_path: Path) -> None:
    texts = replaced(IDS[:2], lambda _: LOOPS["sentence"])
    assert repetition_loops(candidate(texts), CONFIG) == []
    stricter = tmp_path / "t.toml"
    stricter.write_text("[repetition-loop]\nmin_share = 0.01\n")
    found = repetition_loops(candidate(texts), AuditConfig(stricter))
    assert only(found).summary.startswith("2 of 50")
