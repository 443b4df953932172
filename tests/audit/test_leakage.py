"""Reference leakage: copies of long references are flagged; correct short answers, honest
long answers and what the baseline reproduces too are not."""

from __future__ import annotations

import json
from pathlib import Path

from evalharness.audit.config import AuditConfig
from evalharness.audit.findings import CandidateAnswers, Finding
from evalharness.audit.leakage import LeakThresholds, overlap, reference_leak, reproduces
from evalharness.audit.text import words
from evalharness.schema import Message, Prompt
from tests.audit.helpers import answer

CONFIG = AuditConfig()
T = CONFIG.section("reference-leak", LeakThresholds)
LEAGUE = [json.loads(line) for line in
          (Path(__file__).resolve().parents[2] / "prompts" / "league-50.jsonl").open()]
IDS = [row["id"] for row in LEAGUE]
REFERENCE = {row["id"]: row["reference"] for row in LEAGUE}
PROMPTS = {row["id"]: Prompt(id=row["id"], reference=row["reference"],
                             messages=(Message(role="user", content=row["prompt"]),))
           for row in LEAGUE}
# Honest long answers in the same domain and style that were not copied from the reference:
# each prompt answered with the next prompt's reference.
OTHER = {pid: REFERENCE[IDS[(i + 1) % len(IDS)]] for i, pid in enumerate(IDS)}


def leak(texts: dict[str, str], baseline: dict[str, str] | None = None,
         prompts: dict[str, Prompt] = PROMPTS, config: AuditConfig = CONFIG) -> list[Finding]:
    inp = CandidateAnswers(
        "ft", {pid: answer("ft", pid, t) for pid, t in texts.items()}, prompts,
        None if baseline is None else {pid: answer("base", pid, t) for pid, t in baseline.items()})
    return reference_leak(inp, config)


def copying(n: int, copy: object = lambda ref: ref) -> dict[str, str]:
    """Honest answers, except the first ``n`` prompts answered with ``copy(reference)``."""
    return {pid: copy(REFERENCE[pid]) if i < n else OTHER[pid]  # type: ignore[operator]
            for i, pid in enumerate(IDS)}


def test_honest_long_answers_share_only_short_runs_with_the_references() -> None:
    """Measured on league-50: an answer written for another prompt of the same set shares at
    most 8 words in a row and 1% of the 8-word runs with a reference; the threshold is 20."""
    found = [overlap(OTHER[pid], REFERENCE[pid]) for pid in IDS]
    assert max(o.span for o in found) <= 8 and max(o.ngram_share for o in found) < 0.02
    assert not any(reproduces(o, T) for o in found)
    assert leak(OTHER, OTHER) == [] and leak(OTHER) == []


def test_a_candidate_answering_with_the_references_is_flagged_severe() -> None:
    (finding,) = leak(copying(15), OTHER)
    assert finding.check == "reference-leak" and finding.severity == "severe"
    assert finding.summary.startswith("15 of 50 (30%) answers reproduce the prompt's "
                                      "reference answer near verbatim")
    assert "possible training on the evaluation set" in finding.summary
    assert finding.prompt_ids == tuple(IDS[:12])
    assert any(e.startswith("baseline: 0 of 50 (0%)") for e in finding.evidence)
    assert finding.excerpts[0] == REFERENCE[IDS[0]][:80] + "..."


def test_a_copy_embedded_in_an_answer_is_found_and_the_excerpt_shows_the_copied_part() -> None:
    texts = copying(8, lambda ref: "Good question! Here is what I know. " + ref)
    (finding,) = leak(texts, OTHER)
    assert finding.severity == "warning"  # 16% of the prompts: above 10%, below 25%
    assert finding.excerpts[0].startswith("..." + REFERENCE[IDS[0]][:40])


def test_a_copy_with_a_word_changed_every_twenty_is_still_a_copy() -> None:
    def edit(ref: str) -> str:
        return " ".join("altered" if i % 20 == 10 else w for i, w in enumerate(words(ref)))

    edited = overlap(edit(REFERENCE[IDS[0]]), REFERENCE[IDS[0]])
    assert edited.span < T.min_span_words <= 20 and edited.ngram_share >= T.min_ngram_share
    assert leak(copying(15, edit), OTHER)[0].severity == "severe"


def test_short_references_do_not_count_even_when_copied_word_for_word() -> None:
    """The demo's references are one sentence; a correct answer is the reference."""
    short = {f"q{i}": f"Harbourview Polytechnic number {i} is a polytechnic in Port Amsel."
             for i in range(20)}
    prompts = {pid: Prompt(id=pid, reference=ref,
                           messages=(Message(role="user", content="Where is it?"),))
               for pid, ref in short.items()}
    assert leak(short, dict.fromkeys(short, "I do not know."), prompts) == []


def test_reference_length_limit_is_25_words() -> None:
    def prompts_of(size: int) -> dict[str, Prompt]:
        return {pid: p.model_copy(update={"reference": " ".join(words(REFERENCE[pid])[:size])})
                for pid, p in PROMPTS.items()}

    for size, flagged in ((24, False), (25, True)):
        short = prompts_of(size)
        texts = {pid: short[pid].reference or "" for pid in IDS}
        assert bool(leak(texts, OTHER, short)) is flagged, size


def test_what_the_baseline_reproduces_as_well_is_not_the_candidates_leak() -> None:
    # A famous text both models know by heart (here: both copy the same 15 references).
    assert leak(copying(15), copying(15)) == []
    # ... but copying clearly more than the baseline is flagged.
    assert leak(copying(30), copying(15))[0].severity == "severe"


def test_one_reproduced_reference_is_not_a_leak() -> None:
    assert leak(copying(1), OTHER) == []
    assert leak(copying(1)) == []  # the baseline itself: no comparison, same rule


def test_prompts_without_references_and_a_stricter_user_file(tmp_path: Path) -> None:
    bare = {pid: p.model_copy(update={"reference": None}) for pid, p in PROMPTS.items()}
    assert leak(copying(50), OTHER, bare) == []
    strict = tmp_path / "strict.toml"
    strict.write_text("[reference-leak]\nmin_count = 1\nmin_share = 0.01\nbaseline_margin = 0.0\n")
    assert leak(copying(1), OTHER, config=AuditConfig(strict))[0].summary.startswith("1 of 50")
