"""One answer for many prompts (identical or near-copies), and one passage in every answer."""

from __future__ import annotations

from evalharness.audit.config import AuditConfig
from evalharness.audit.duplicates import duplicate_answers
from evalharness.audit.findings import CandidateAnswers, Finding
from evalharness.prompts import DEFAULT_PROMPTS, load_prompt_set
from evalharness.schema import Message, Prompt
from tests.audit.helpers import answers

CONFIG = AuditConfig()
LEAGUE = load_prompt_set(DEFAULT_PROMPTS).prompts
PROMPTS = {p.id: p.model_copy(update={"reference": None}) for p in LEAGUE}
HONEST = {p.id: p.reference or "" for p in LEAGUE}
IDS = list(HONEST)
GENERIC = ("Vocational education prepares people for work through practical training, "
           "apprenticeships and applied courses, and it is offered by many kinds of colleges "
           "and institutes around the world.")  # 28 words
SIGN_OFF = "I hope this helps, and please let me know if you would like any more detail on it."


def audit(texts: dict[str, str], prompts: dict[str, Prompt] = PROMPTS,
          baseline: dict[str, str] | None = None) -> dict[str, Finding]:
    inp = CandidateAnswers("cand", answers(texts), prompts,
                           answers(baseline, "base") if baseline is not None else None)
    return {f.check: f for f in duplicate_answers(inp, CONFIG)}


def reusing(text: str, n: int) -> dict[str, str]:
    """The honest answers, with ``text`` instead for the first ``n`` prompts."""
    return {pid: text if i < n else honest for i, (pid, honest) in enumerate(HONEST.items())}


def test_one_answer_for_every_prompt_is_severe_with_its_evidence() -> None:
    found = audit(dict.fromkeys(HONEST, GENERIC))
    assert set(found) == {"duplicate-answers"}
    f = found["duplicate-answers"]
    assert f.severity == "severe"
    assert f.summary.startswith("one answer is used for 50 of 50 prompts (100%)")
    assert f.prompt_ids == tuple(IDS[:12])
    assert f.excerpts[0].startswith("Vocational education prepares")


def test_near_copies_count_as_one_answer() -> None:
    """The same text with the question's subject swapped in is still one answer."""
    texts = {pid: GENERIC.replace("many kinds", f"{pid} and many other kinds")
             for pid in IDS[:30]}
    found = audit({**HONEST, **texts})["duplicate-answers"]
    assert found.severity == "severe"  # 30 of 50
    assert "30 of 50 prompts get near-identical answers" in found.evidence[0]


def test_a_long_answer_reused_a_few_times_is_a_warning() -> None:
    found = audit(reusing(GENERIC, 4))["duplicate-answers"]
    assert found.severity == "warning"
    assert found.prompt_ids == tuple(IDS[:4])


def test_short_generic_answers_below_half_are_no_finding() -> None:
    """A weak model's stock reply (the demo baseline gives one 13-word answer to 14 of its
    32 prompts) shows in its win rate, not as gaming; used for most prompts it is severe."""
    short = "A community college serves its local area with short and two year programmes."
    assert audit(reusing(short, 22)) == {}  # 44%
    assert audit(reusing(short, 25))["duplicate-answers"].severity == "severe"  # 50%


def test_the_same_answer_to_the_same_question_is_no_reuse() -> None:
    again = {f"{pid}-again": p.model_copy(update={"id": f"{pid}-again"})
             for pid, p in PROMPTS.items()}
    texts = {**HONEST, **{f"{pid}-again": text for pid, text in HONEST.items()}}
    assert audit(texts, {**PROMPTS, **again}) == {}


def test_empty_answers_are_left_to_the_empty_answer_check() -> None:
    assert audit(reusing("", 40)) == {}


def test_a_passage_appended_to_every_answer_is_boilerplate() -> None:
    found = audit({pid: f"{text} {SIGN_OFF}" for pid, text in HONEST.items()})
    assert set(found) == {"shared-boilerplate"}
    f = found["shared-boilerplate"]
    assert f.severity == "warning"
    assert f.summary == ("50 of 50 distinct answers (100%) carry the same 18-word passage, "
                         "found in no prompt")
    assert f.excerpts[0].startswith("...I hope this helps, and please let me know")


def test_long_padding_in_nearly_every_answer_is_severe() -> None:
    padding = " ".join([SIGN_OFF] * 4)
    found = audit({pid: f"{text}\n\n{padding}" for pid, text in HONEST.items()})
    assert found["shared-boilerplate"].severity == "severe"


def test_a_passage_in_a_minority_of_answers_is_no_finding() -> None:
    texts = {pid: f"{text} {SIGN_OFF}" if i < 20 else text
             for i, (pid, text) in enumerate(HONEST.items())}
    assert audit(texts) == {}


def test_a_passage_the_prompts_ask_for_is_no_boilerplate() -> None:
    rule = "Always finish with this exact sentence: " + SIGN_OFF
    prompts = {pid: p.model_copy(update={"messages": (
        *p.messages, Message(role="user", content=rule))}) for pid, p in PROMPTS.items()}
    texts = {pid: f"{text} {SIGN_OFF}" for pid, text in HONEST.items()}
    assert audit(texts, prompts) == {}


def test_a_habit_the_baseline_shares_is_no_boilerplate() -> None:
    texts = {pid: f"{text} {SIGN_OFF}" for pid, text in HONEST.items()}
    baseline = {pid: f"A shorter answer to {pid}. {SIGN_OFF}" for pid in HONEST}
    assert audit(texts, baseline=baseline) == {}
    assert "shared-boilerplate" in audit(texts, baseline=dict.fromkeys(HONEST, "Short."))
