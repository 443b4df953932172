"""`evalharness demo`: the offline demo league, from nothing to a report, on a CPU.

It builds the tiny kit (a tokenizer, a small Llama, and four LoRA adapters trained here at
different settings: two sensible, one under-trained, one over-trained), measures each
adapter's perplexity on held-out questions, plays the league against the baseline with the
reference judge (or any configured judge), and writes the Markdown and HTML reports. A second
run reuses the kit, the answers, the scores and the judgments.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from evalharness.demo.kit import Kit, build_kit
from evalharness.evaluate import LeagueResult, league
from evalharness.judging.config import JudgeConfig
from evalharness.pipeline import BackendSpec, Progress
from evalharness.schema import GenConfig

DEMO_MAX_NEW_TOKENS = 48
KIT_FOLDER = Path("runs/.kit")


def run_demo(runs_root: Path, backend: BackendSpec,
             judge: str | JudgeConfig | Sequence[JudgeConfig] = "reference",
             kit_folder: Path = KIT_FOLDER, argv: Sequence[str] = (),
             progress: Progress | None = None) -> tuple[Kit, LeagueResult]:
    """Build (or reuse) the kit in ``kit_folder`` and play its league under ``runs_root``."""
    kit = build_kit(kit_folder, progress=progress)
    adapters = [str(kit.adapter(a.name)) for a in kit.recipe.adapters]
    result = league(
        adapters, "baseline", prompts=kit.prompts, judge=judge, backend=backend,
        ppl_data=kit.eval_data, gen=GenConfig(max_new_tokens=DEMO_MAX_NEW_TOKENS),
        runs_root=runs_root, argv=argv, progress=progress, command="demo",
    )
    return kit, result
