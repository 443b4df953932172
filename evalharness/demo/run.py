"""`evalharness demo`: build the tiny kit and run the baseline and its adapters, offline.

The demo shows the whole path on a CPU in about a minute: a base model and LoRA adapters
built here, answers to held-out questions, and perplexity on the same questions, all saved
in a run directory that ``evalharness show`` reads.
"""

from __future__ import annotations

from pathlib import Path

from evalharness.demo.kit import Kit, build_kit
from evalharness.pipeline import BackendSpec, Progress, RunResult, run_models
from evalharness.schema import GenConfig

DEMO_MAX_NEW_TOKENS = 48


def run_demo(runs_root: Path, backend: BackendSpec, argv: tuple[str, ...] = (),
             progress: Progress | None = None) -> tuple[Kit, RunResult]:
    """Build (or reuse) the kit under ``runs_root/.kit`` and answer + score with every model."""
    kit = build_kit(runs_root / ".kit")
    models = ["baseline", *(str(kit.adapter(a.name)) for a in kit.recipe.adapters)]
    result = run_models(
        models, command="demo", backend=backend,
        prompts=kit.prompts, ppl_data=kit.eval_data,
        gen=GenConfig(max_new_tokens=DEMO_MAX_NEW_TOKENS), runs_root=runs_root, argv=argv,
        progress=progress,
    )
    return kit, result
