"""Hyperparameter effects: win rate and perplexity grouped by LoRA and training settings.

Where the numbers come from, for an adapter folder (all optional):

- ``adapter_config.json`` (PEFT): ``r`` -> ``lora_rank``, ``lora_alpha``,
  ``target_modules`` (sorted, comma-joined), ``lora_dropout``. The adapter's shape is taken
  from here whenever this file states it.
- ``evalharness_training.json`` (the kit's sidecar): any of ``learning_rate``, ``epochs``,
  ``r``, ``lora_alpha``, ``target_modules``, ``train_loss``, ``eval_loss``, ...
- ``training_args.json`` (a JSON dump of transformers ``TrainingArguments``):
  ``learning_rate``, ``num_train_epochs`` -> ``epochs``, ``per_device_train_batch_size``
  -> ``batch_size``, ``weight_decay``, ``warmup_ratio``, ``lr_scheduler_type``.
- ``trainer_state.json`` (transformers): ``num_train_epochs`` -> ``epochs``, the last
  logged ``train_loss`` and ``eval_loss``.

For training values, the sidecar wins over ``training_args.json``, which wins over
``trainer_state.json``.
Only scalar values are kept (numbers and short strings). ``training_args.bin`` is a pickle
and is never read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evalharness.errors import UserError
from evalharness.schema import ModelSpec
from evalharness.stats.games import PromptScores, score_matrix
from evalharness.stats.intervals import (
    Interval,
    bootstrap_weights,
    percentile_interval,
    weighted_means,
)
from evalharness.stats.paradox import Perplexity, ranking_metric

Scalar = float | int | str
SIDECAR = "evalharness_training.json"

_ALIASES = {
    "r": "lora_rank",
    "num_train_epochs": "epochs",
    "per_device_train_batch_size": "batch_size",
}
_TRAINING_ARGS_KEYS = (
    "learning_rate",
    "num_train_epochs",
    "per_device_train_batch_size",
    "weight_decay",
    "warmup_ratio",
    "lr_scheduler_type",
)


def _scalar(value: Any) -> Scalar | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return value
    if isinstance(value, str) and len(value) <= 200:
        return value
    if isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
        return ",".join(sorted(value))
    return None


def normalize(raw: Mapping[str, Any]) -> dict[str, Scalar]:
    """Rename known keys to evalharness names and keep only scalar values.

    >>> normalize({"r": 8, "target_modules": ["v_proj", "q_proj"], "log_history": []})
    {'lora_rank': 8, 'target_modules': 'q_proj,v_proj'}
    """
    out: dict[str, Scalar] = {}
    for key, value in raw.items():
        scalar = _scalar(value)
        if scalar is not None:
            out[_ALIASES.get(key, key)] = scalar
    return out


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(
            f"{path}:{exc.lineno}: not valid JSON ({exc.msg}). Fix: repair or remove the file."
        ) from None
    if not isinstance(value, dict):
        raise UserError(f"{path}: expected a JSON object. Fix: repair or remove the file.")
    return value


def _trainer_state(state: Mapping[str, Any]) -> dict[str, Scalar]:
    out: dict[str, Scalar] = {}
    if isinstance(state.get("num_train_epochs"), int | float):
        out["epochs"] = state["num_train_epochs"]
    for entry in state.get("log_history") or []:
        if not isinstance(entry, dict):
            continue
        for key in ("train_loss", "eval_loss"):
            if isinstance(entry.get(key), int | float):
                out[key] = entry[key]
    return out


def read_hyperparameters(folder: Path) -> dict[str, Scalar]:
    """Hyperparameters of the adapter in ``folder`` (see the module doc for the sources).

    Returns an empty dict for a folder with none of the files.

    Raises:
        UserError: one of the files exists but is not a JSON object.
    """
    found: dict[str, Scalar] = {}
    config = folder / "adapter_config.json"
    if config.is_file():
        raw = _read_json(config)
        found.update(
            normalize(
                {
                    k: raw[k]
                    for k in ("r", "lora_alpha", "target_modules", "lora_dropout")
                    if k in raw
                }
            )
        )
    state = folder / "trainer_state.json"
    if state.is_file():
        for key, value in _trainer_state(_read_json(state)).items():
            found.setdefault(key, value)
    args = folder / "training_args.json"
    if args.is_file():
        raw = _read_json(args)
        for key, value in normalize({k: raw[k] for k in _TRAINING_ARGS_KEYS if k in raw}).items():
            if key not in {"lora_rank", "lora_alpha", "target_modules"}:
                found[key] = value
    sidecar = folder / SIDECAR
    if sidecar.is_file():
        for key, value in normalize(_read_json(sidecar)).items():
            # The adapter's own config is the truth about its shape.
            if key not in found or key not in {"lora_rank", "lora_alpha", "target_modules"}:
                found[key] = value
    return found


def spec_hyperparameters(spec: ModelSpec) -> dict[str, Scalar]:
    """A model's LoRA shape and training hyperparameters as one flat mapping."""
    out: dict[str, Scalar] = dict(normalize(spec.hyperparameters))
    if spec.lora_rank is not None:
        out["lora_rank"] = spec.lora_rank
    if spec.lora_alpha is not None:
        out["lora_alpha"] = spec.lora_alpha
    if spec.target_modules:
        out["target_modules"] = ",".join(sorted(spec.target_modules))
    return out


@dataclass(frozen=True)
class HyperparameterRow:
    """Candidates sharing one value of one hyperparameter."""

    parameter: str
    """Hyperparameter name (``lora_rank``, ``learning_rate``, ...)."""
    value: str
    """Its value, as text."""
    candidates: tuple[str, ...]
    """Candidates with that value."""
    win_rate: float
    """Mean of those candidates' win rates against the baseline."""
    interval: Interval
    """Bootstrap interval of ``win_rate`` over prompts."""
    perplexity: float | None
    """Mean of their perplexity (the chosen metric) where known."""
    perplexity_range: Interval | None
    """Lowest and highest perplexity among them."""


_SKIP = {"train_loss", "eval_loss"}
"""Outcomes of training, not settings: never grouped by."""


def _sort_key(value: Scalar) -> tuple[int, float, str]:
    return (0, float(value), "") if isinstance(value, int | float) else (1, 0.0, str(value))


def hyperparameter_effects(
    hyperparameters: Mapping[str, Mapping[str, Scalar]] | Sequence[ModelSpec],
    scores: Sequence[PromptScores],
    perplexity: Mapping[str, Perplexity | tuple[float, float]] | None = None,
    *,
    metric: str | None = None,
    seed: int = 0,
    n_boot: int = 2000,
    confidence: float = 0.95,
) -> tuple[HyperparameterRow, ...]:
    """Win rate (and perplexity) by value of every hyperparameter that varies.

    Args:
        hyperparameters: candidate name -> its hyperparameters, or ``ModelSpec`` objects.
        scores: each candidate's per-prompt scores against the baseline.
        perplexity: optional candidate name -> (token perplexity, bits per byte).
        metric: ``bits_per_byte`` or ``token_ppl`` (default: ``paradox.ranking_metric`` of
            the candidates with a perplexity, as the paradox table ranks them).
        seed: bootstrap seed.
        n_boot: bootstrap rounds.
        confidence: interval level.

    Returns:
        Rows grouped by parameter name, values in ascending order. A parameter that has one
        value for every candidate (nothing to compare) is left out.
    """
    if isinstance(hyperparameters, Mapping):
        table = {name: dict(values) for name, values in hyperparameters.items()}
    else:
        table = {spec.name: spec_hyperparameters(spec) for spec in hyperparameters}
    used = [s for s in scores if s.candidate in table and s.n_prompts > 0]
    if not used:
        return ()
    names = [s.candidate for s in used]
    prompts, matrix = score_matrix(used)
    point = np.array([s.score.mean() for s in used])
    boot = weighted_means(bootstrap_weights(len(prompts), n_boot, seed), matrix)
    ppl = {n: Perplexity(*v) for n, v in (perplexity or {}).items()}
    if metric is None:
        metric = ranking_metric(ppl[n] for n in names if n in ppl)
    rows: list[HyperparameterRow] = []
    for parameter in sorted({k for n in names for k in table[n]} - _SKIP):
        groups: dict[Scalar, list[int]] = {}
        for i, name in enumerate(names):
            if parameter in table[name]:
                groups.setdefault(table[name][parameter], []).append(i)
        if len(groups) < 2:
            continue
        for value in sorted(groups, key=_sort_key):
            members = groups[value]
            values = [getattr(ppl[names[i]], metric) for i in members if names[i] in ppl]
            rows.append(
                HyperparameterRow(
                    parameter=parameter,
                    value=str(value),
                    candidates=tuple(names[i] for i in members),
                    win_rate=float(point[members].mean()),
                    interval=percentile_interval(boot[:, members].mean(axis=1), confidence),
                    perplexity=float(np.mean(values)) if values else None,
                    perplexity_range=Interval(float(min(values)), float(max(values)))
                    if values
                    else None,
                )
            )
    return tuple(rows)
