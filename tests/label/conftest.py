"""A judged run for labelling: the report tests' synthetic run with name-free answers.

The report fixture's answers say which model wrote them; a blind page must not, so every
answer here carries only a tag (``Reply K7.``) the tests use to tell, from what the page
shows, which model's answer is on which side. Every prompt carries hostile HTML, and one
answer (the strong adapter's to ``vet-03``) does too; one answer is Markdown.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from evalharness.schema import Answer, Judgment
from evalharness.store import ANSWERS, JUDGMENTS, JsonlLog
from tests.report.conftest import (
    BASELINE,
    INJECTED_PROMPT,
    N_PROMPTS,
    STRONG,
    WEAK,
    build_run,
    pid,
)

HOSTILE = ('<img src=x onerror="document.title=\'pwned\'">'
           '<script>document.title="pwned"</script>')
TAGS = {BASELINE: "K", STRONG: "Q", WEAK: "M"}
MODELS = (BASELINE, STRONG, WEAK)
MARKDOWN_PROMPT = pid(0)
N_GAMES = 2 * N_PROMPTS  # two adapters against the baseline


def answer_text(model: str, prompt_id: str) -> str:
    tag = f"Reply {TAGS[model]}{prompt_id}."
    if model == STRONG and prompt_id == INJECTED_PROMPT:
        return f"{tag} A careful answer {HOSTILE} with <b>markup</b> & \"quotes\"."
    if model == BASELINE and prompt_id == MARKDOWN_PROMPT:
        return (f"{tag} Steps:\n\n- one\n- **two**\n\n```python\nprint('<b>x</b>')\n```\n"
                "Done with `code`.")
    return f"{tag} A plain answer about colleges and apprenticeships."


@dataclass(frozen=True)
class LabelRun:
    run_dir: Path

    def model_shown(self, prompt_id: str, shown_text: str) -> str:
        """The model whose answer the page showed (by its tag)."""
        found = [m for m in MODELS if f"Reply {TAGS[m]}{prompt_id}." in shown_text]
        assert len(found) == 1, (prompt_id, shown_text)
        return found[0]

    def labels(self, annotator: str) -> list[Judgment]:
        return [j for j in JsonlLog(self.run_dir / JUDGMENTS, Judgment).read()
                if j.judge == f"human:{annotator}"]


def build_label_run(root: Path) -> LabelRun:
    synthetic = build_run(root, with_perplexity=False)
    lines = synthetic.prompts_file.read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines]
    for row in rows:
        row["prompt"] = f"{row['prompt']} {HOSTILE}"
    synthetic.prompts_file.write_text("".join(json.dumps(r) + "\n" for r in rows),
                                      encoding="utf-8")
    answers = [a.model_copy(update={"text": answer_text(a.model, a.prompt_id)})
               for a in synthetic.answers]
    (synthetic.run_dir / ANSWERS).unlink()
    JsonlLog(synthetic.run_dir / ANSWERS, Answer).extend(answers)
    return LabelRun(synthetic.run_dir)
