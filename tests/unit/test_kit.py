"""The tiny-model kit builds deterministically and reuses a matching build."""

from __future__ import annotations

from pathlib import Path

from evalharness.demo.kit import AdapterRecipe, BaseRecipe, KitRecipe, build_kit

SMALL = KitRecipe(base=BaseRecipe(pretrain_steps=15),
                  adapters=(AdapterRecipe("tiny", epochs=1),))


def test_same_recipe_builds_the_same_weights_and_is_reused(tmp_path: Path) -> None:
    first = build_kit(tmp_path / "one", SMALL)
    second = build_kit(tmp_path / "two", SMALL)
    for relative in ("base/model.safetensors", "adapters/tiny/adapter_model.safetensors"):
        assert (first.root / relative).read_bytes() == (second.root / relative).read_bytes()
    assert first.seconds and "base" in first.seconds
    again = build_kit(tmp_path / "one", SMALL)
    assert again.seconds == {}, "a matching kit was rebuilt instead of reused"
    assert (first.adapter("tiny") / "evalharness_training.json").is_file()
