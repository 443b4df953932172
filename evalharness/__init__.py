"""evalharness: pairwise win-rate evaluation of LoRA adapters, with honest statistics.

The Python API::

    import evalharness
    result = evalharness.compare("adapters/my-lora", prompts="prompts/league-50.jsonl")
    result.win_rate, result.stats.head_to_head.wilson, result.p_value

``compare`` and ``league`` (``evalharness.evaluate``) return result objects; names are
imported on first use, so ``import evalharness`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "compare": "evalharness.evaluate",
    "league": "evalharness.evaluate",
    "CompareResult": "evalharness.evaluate",
    "LeagueResult": "evalharness.evaluate",
    "GenConfig": "evalharness.schema",
    "BackendChoice": "evalharness.backends.registry",
    "BackendOptions": "evalharness.backends.registry",
}
__all__ = ["BackendChoice", "BackendOptions", "CompareResult", "GenConfig", "LeagueResult",
           "__version__", "compare", "league"]

if TYPE_CHECKING:
    from evalharness.backends.registry import BackendChoice, BackendOptions
    from evalharness.evaluate import CompareResult, LeagueResult, compare, league
    from evalharness.schema import GenConfig


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'evalharness' has no attribute {name!r}")
