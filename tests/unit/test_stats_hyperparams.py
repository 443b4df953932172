"""Hyperparameters from adapter folders, and win rate by hyperparameter value."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from evalharness.errors import UserError
from evalharness.schema import ModelSpec
from evalharness.stats import hyperparameter_effects, read_hyperparameters
from evalharness.stats.games import PromptScores


def write(folder: Path, name: str, value: object) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(value), encoding="utf-8")


def test_reads_config_trainer_state_training_args_and_sidecar(tmp_path: Path) -> None:
    write(
        tmp_path,
        "adapter_config.json",
        {"r": 16, "lora_alpha": 32, "target_modules": ["v_proj", "q_proj"], "peft_type": "LORA"},
    )
    write(
        tmp_path,
        "trainer_state.json",
        {
            "num_train_epochs": 3,
            "log_history": [{"loss": 2.0}, {"train_loss": 1.25}, {"eval_loss": 1.5}],
        },
    )
    write(
        tmp_path,
        "training_args.json",
        {
            "learning_rate": 2e-4,
            "num_train_epochs": 3,
            "per_device_train_batch_size": 8,
            "output_dir": "x",
        },
    )
    write(tmp_path, "evalharness_training.json", {"learning_rate": 1e-4, "r": 99})
    found = read_hyperparameters(tmp_path)
    assert found["lora_rank"] == 16  # adapter_config is the truth about shape
    assert found["lora_alpha"] == 32
    assert found["target_modules"] == "q_proj,v_proj"
    assert found["epochs"] == 3
    assert found["train_loss"] == 1.25 and found["eval_loss"] == 1.5
    assert found["learning_rate"] == 1e-4  # the sidecar wins for training values
    assert found["batch_size"] == 8
    assert "output_dir" not in found


def test_sidecar_alone_and_empty_folder(tmp_path: Path) -> None:
    assert read_hyperparameters(tmp_path) == {}
    write(tmp_path, "evalharness_training.json", {"r": 4, "epochs": 2, "learning_rate": 0.001})
    assert read_hyperparameters(tmp_path) == {"lora_rank": 4, "epochs": 2, "learning_rate": 0.001}


def test_broken_json_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "adapter_config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(UserError, match=r"adapter_config\.json:1"):
        read_hyperparameters(tmp_path)


def scores(name: str, values: list[float]) -> PromptScores:
    n = len(values)
    return PromptScores(
        name,
        "base",
        tuple(f"p{i}" for i in range(n)),
        np.array(values),
        np.full(n, 2),
        np.full(n, np.nan),
        (),
    )


def test_effects_table_groups_by_each_varying_value() -> None:
    specs = [
        ModelSpec(
            name=n,
            kind="adapter",
            base_model="m",
            base_fingerprint="f",
            lora_rank=r,
            hyperparameters={"learning_rate": lr, "train_loss": 1.0},
        )
        for n, r, lr in [("r8a", 8, 1e-4), ("r8b", 8, 2e-4), ("r16", 16, 1e-4)]
    ]
    s = [scores("r8a", [1, 1, 0, 1]), scores("r8b", [0, 1, 0, 1]), scores("r16", [0, 0, 0, 1])]
    rows = hyperparameter_effects(
        specs, s, {"r8a": (5.0, 0.8), "r8b": (6.0, 0.9), "r16": (7.0, 1.0)}, n_boot=200
    )
    by = {(r.parameter, r.value): r for r in rows}
    assert set(by) == {
        ("learning_rate", "0.0001"),
        ("learning_rate", "0.0002"),
        ("lora_rank", "8"),
        ("lora_rank", "16"),
    }
    rank8 = by[("lora_rank", "8")]
    assert rank8.candidates == ("r8a", "r8b")
    assert rank8.win_rate == pytest.approx((0.75 + 0.5) / 2)
    assert rank8.perplexity == pytest.approx(0.85)
    assert rank8.perplexity_range is not None and rank8.perplexity_range.high == 0.9
    assert rank8.interval.low <= rank8.win_rate <= rank8.interval.high
    assert [r.value for r in rows if r.parameter == "lora_rank"] == ["8", "16"]  # numeric order
