"""The "Findings" section: what the integrity audit found, with its evidence.

One builder for every output: the terminal (``print_sections``), Markdown and HTML render
the same ``Section``, each escaping the excerpts its own way (they are model output).
"""

from __future__ import annotations

from collections import Counter

from evalharness.audit.findings import Finding
from evalharness.audit.run import AuditResult
from evalharness.report.blocks import Block, Paragraph, Section, Table


def _subject(finding: Finding) -> str:
    return f"{finding.subject} on {finding.about}" if finding.about else finding.subject


def _row(finding: Finding) -> tuple[str, ...]:
    return (finding.severity, _subject(finding), finding.check, finding.summary,
            "; ".join(finding.evidence) or "-", ", ".join(finding.prompt_ids) or "-",
            " | ".join(f"«{e}»" for e in finding.excerpts) or "-")


def findings_section(result: AuditResult) -> Section:
    """The Findings section of ``result``: a count by severity and one row per finding."""
    scope = ("answers (gaming, degeneration, leakage, length) and judge health"
             if result.answers_audited else
             "judge health only (no answers beside the judgments: the answer checks did "
             "not run)")
    if not result.findings:
        text = f"No findings. Checked: {scope}. Thresholds and checks: docs/audit.md."
        return Section("findings", "Findings", (Paragraph(text),))
    counts = Counter(f.severity for f in result.findings)
    tally = ", ".join(f"{counts[s]} {s}" for s in ("severe", "warning", "info") if counts[s])
    blocks: list[Block] = [
        Paragraph(
            f"{tally}. Checked: {scope}. A severe finding means the result should not be "
            "trusted as it stands; a warning, look before trusting it. Excerpts are the "
            "answers' own text (invisible characters shown as <U+...>); thresholds and "
            "checks: docs/audit.md."),
        Table("Findings", ("severity", "about", "check", "finding", "evidence", "prompts",
                           "excerpts"),
              tuple(_row(f) for f in result.findings)),
    ]
    return Section("findings", "Findings", tuple(blocks))
