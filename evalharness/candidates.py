"""Resolve what the user typed into ``ModelSpec``s, and check adapters fit their base.

A candidate is ``baseline`` (the base model alone), a PEFT adapter folder (its base model read
from ``adapter_config.json`` unless ``--base`` overrides it), or a merged model folder. All
checks here read only small files and safetensors headers, so a wrong adapter is reported in
milliseconds, before any model is loaded.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalharness.errors import CompatibilityError, UserError
from evalharness.keys import file_sha256
from evalharness.schema import ModelSpec

BASELINE = "baseline"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
MODEL_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "chat_template.jinja")
SAFETENSORS_HEADER_LIMIT = 100 * 1024 * 1024


@dataclass(frozen=True)
class AdapterConfig:
    """What evalharness needs from an ``adapter_config.json``."""

    path: Path
    """The adapter folder."""
    base_model: str | None
    """``base_model_name_or_path``, if recorded."""
    r: int
    """LoRA rank."""
    alpha: float
    """``lora_alpha``."""
    target_modules: tuple[str, ...]
    """Module names (suffixes) the adapter modifies."""
    weights: Path
    """The weights file."""
    rank_pattern: dict[str, int]
    """Per-module ranks that override ``r`` (peft's ``rank_pattern``)."""


def read_adapter_config(folder: Path) -> AdapterConfig:
    """Read and check an adapter folder's config and weights file.

    Raises:
        UserError: missing folder, config or weights; unreadable config; not a LoRA adapter.
    """
    config_path = folder / ADAPTER_CONFIG
    if not config_path.is_file():
        raise UserError(f"{folder}: no {ADAPTER_CONFIG}. Fix: pass a folder saved by peft's "
                        "save_pretrained (or a merged model folder with config.json).")
    try:
        raw = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{config_path}: unreadable adapter config ({exc}). "
                        "Fix: restore the file saved by peft.") from None
    if not isinstance(raw, dict):
        raise UserError(f"{config_path}: expected a JSON object. Fix: restore the file saved "
                        "by peft.")
    peft_type = str(raw.get("peft_type", "LORA")).upper()
    if peft_type != "LORA":
        raise UserError(f"{config_path}: peft_type is {peft_type}; evalharness serves LoRA "
                        "adapters only. Fix: merge the adapter into its base and pass the "
                        "merged folder.")
    weights = next((folder / n for n in ADAPTER_WEIGHTS if (folder / n).is_file()), None)
    if weights is None:
        raise UserError(f"{folder}: no adapter weights ({' or '.join(ADAPTER_WEIGHTS)}). "
                        "Fix: copy the weights file next to adapter_config.json.")
    targets = raw.get("target_modules") or []
    if isinstance(targets, str):  # peft allows a regex string; keep it as one pattern
        targets = [targets]
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        raise UserError(f"{config_path}: target_modules must be a list of module names, got "
                        f"{targets!r}. Fix: restore the file saved by peft.")
    r, alpha = raw.get("r", 8), raw.get("lora_alpha", 8)
    pattern = raw.get("rank_pattern") or {}
    numbers_ok = (_positive_int(r) and isinstance(alpha, int | float)
                  and not isinstance(alpha, bool) and isinstance(pattern, dict)
                  and all(_positive_int(v) for v in pattern.values()))
    if not numbers_ok or not math.isfinite(alpha):
        raise UserError(f"{config_path}: 'r' (and 'rank_pattern' values) must be positive "
                        f"whole numbers and 'lora_alpha' a finite number (got r={r!r}, "
                        f"lora_alpha={alpha!r}). Fix: restore the file saved by peft.")
    base_model = raw.get("base_model_name_or_path")
    if base_model is not None and not isinstance(base_model, str):
        raise UserError(f"{config_path}: base_model_name_or_path must be text, got "
                        f"{base_model!r}. Fix: set it to the base model's hub id or folder, or "
                        "pass --base.")
    return AdapterConfig(
        path=folder,
        base_model=base_model,
        r=r,
        alpha=float(alpha),
        target_modules=tuple(sorted(str(t) for t in targets)),
        weights=weights,
        rank_pattern={str(k): v for k, v in pattern.items()},
    )


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def adapter_sha256(config: AdapterConfig) -> str:
    """Hash of the adapter's config and weights: a retrained adapter gets a new hash."""
    digest = hashlib.sha256()
    digest.update(file_sha256(config.path / ADAPTER_CONFIG).encode())
    digest.update(file_sha256(config.weights).encode())
    return digest.hexdigest()


def safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file: tensor names, dtypes and shapes, no data.

    The header is checked against the file's size too, so a truncated download (the header
    intact, the tensor data cut short) is found here rather than in the middle of a load.

    Raises:
        UserError: a file too short, a header that is not JSON, or data cut short.
    """
    fix = "Fix: re-save the weights (or copy the file again: it may be truncated)."
    size_on_disk = path.stat().st_size
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise UserError(f"{path}: truncated safetensors file ({len(prefix)} bytes). {fix}")
        (size,) = struct.unpack("<Q", prefix)
        if size > SAFETENSORS_HEADER_LIMIT or size > size_on_disk - 8:
            raise UserError(f"{path}: not a safetensors file, or truncated (its first bytes "
                            f"announce a {size}-byte header in a {size_on_disk}-byte file). "
                            f"{fix}")
        raw = handle.read(size)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        header = None
    if not isinstance(header, dict):
        raise UserError(f"{path}: corrupt safetensors file (its header is not a JSON object). "
                        f"{fix}")
    header.pop("__metadata__", None)
    end = 0
    for name, info in header.items():
        if not (isinstance(info, dict) and _int_list(info.get("shape"))
                and _int_list(info.get("data_offsets")) and len(info["data_offsets"]) == 2):
            raise UserError(f"{path}: corrupt safetensors file (tensor {name!r} has no valid "
                            f"shape and data offsets). {fix}")
        end = max(end, info["data_offsets"][1])
    if 8 + size + end > size_on_disk:
        raise UserError(f"{path}: truncated safetensors file ({size_on_disk} bytes; its header "
                        f"describes {8 + size + end}). {fix}")
    return header


def _int_list(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)


TORCH_CHECKPOINT_MAGIC = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
"""First bytes of a torch.save file: a zip archive (torch >= 1.6) or a pickle stream."""


def adapter_weight_rank(config: AdapterConfig) -> int | None:
    """The LoRA rank the adapter's weights really have, checked against its config.

    Read from the safetensors header (no tensor is loaded); ``None`` for a ``.bin`` file,
    whose rank only a load can tell (its first bytes are still checked).

    Raises:
        UserError: a corrupt or truncated weights file, a file with no LoRA matrices, or
            matrices whose rank contradicts ``adapter_config.json``.
    """
    weights = config.weights
    if weights.suffix != ".safetensors":
        with weights.open("rb") as handle:
            magic = handle.read(4)
        if not magic.startswith(TORCH_CHECKPOINT_MAGIC):
            raise UserError(f"{weights}: not a PyTorch checkpoint (it starts with bytes "
                            f"{magic.hex(' ') or '(none: the file is empty)'}). Fix: re-save "
                            "the adapter with peft's save_pretrained (safetensors preferred).")
        return None
    header = safetensors_header(weights)
    ranks: dict[str, int] = {name: info["shape"][0] for name, info in header.items()
             if ".lora_A." in name and len(info["shape"]) == 2}
    if not ranks:
        raise UserError(f"{weights}: holds no LoRA matrices (no '.lora_A.' tensor among "
                        f"{len(header)}). Fix: pass the folder saved by peft's save_pretrained "
                        "for a LoRA adapter.")
    allowed = {config.r, *config.rank_pattern.values()}
    wrong = sorted((name, rank) for name, rank in ranks.items() if rank not in allowed)
    if wrong:
        name, rank = wrong[0]
        raise UserError(f"{weights}: {name} has rank {rank}, but {config.path / ADAPTER_CONFIG} "
                        f"says r={config.r} ({len(wrong)} matrices disagree). Fix: put back the "
                        "adapter_config.json saved with these weights.")
    return max(ranks.values())


def _weight_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))


def fingerprint_model(base: str) -> str:
    """A content fingerprint of a base model.

    For a local folder: the config and tokenizer files' bytes plus, for each weights file, its
    name, size and safetensors header (tensor names, shapes, offsets). Hashing every byte of a
    multi-GB model on each run would cost more than a run; re-saved weights change the
    header offsets or sizes in practice. For a hub id: the id itself.
    """
    folder = Path(base)
    if not folder.is_dir():
        return "hub:" + base
    digest = hashlib.sha256()
    for name in MODEL_FILES:
        if (folder / name).is_file():
            digest.update(name.encode() + b"\0" + (folder / name).read_bytes())
    for weights in _weight_files(folder):
        digest.update(f"{weights.name}\0{weights.stat().st_size}\0".encode())
        if weights.suffix == ".safetensors":
            digest.update(json.dumps(safetensors_header(weights), sort_keys=True).encode())
    return digest.hexdigest()


def base_weight_shapes(base: Path) -> dict[str, list[int]]:
    """Weight name -> shape for a local safetensors model, read from headers only."""
    shapes: dict[str, list[int]] = {}
    for weights in sorted(base.glob("*.safetensors")):
        for name, info in safetensors_header(weights).items():
            shapes[name] = list(info["shape"])
    return shapes


def check_adapter_fits(adapter: AdapterConfig, base: str) -> None:
    """Check the adapter's LoRA matrices fit the base model's layers (local safetensors only).

    Raises:
        CompatibilityError: a target module the base does not have, or a shape mismatch
            (an adapter trained for another base model).
    """
    base_dir = Path(base)
    if not base_dir.is_dir() or adapter.weights.suffix != ".safetensors":
        return  # nothing to read without loading; the backend's load will check
    base_shapes = base_weight_shapes(base_dir)
    if not base_shapes:
        return
    module_names = {name.rsplit(".", 1)[0].rsplit(".", 1)[-1] for name in base_shapes}
    missing = [t for t in adapter.target_modules if t not in module_names and "*" not in t
               and "(" not in t]
    if missing:
        raise CompatibilityError(
            f"{adapter.path}: target module(s) {', '.join(missing)} do not exist in base "
            f"model {base}. Fix: pass the base model this adapter was trained on (--base)."
        )
    suffix_to_shape = {_strip_model_prefix(n): s for n, s in base_shapes.items()}
    for name, info in safetensors_header(adapter.weights).items():
        problem = _lora_shape_problem(name, list(info["shape"]), suffix_to_shape)
        if problem:
            raise CompatibilityError(
                f"{adapter.path}: adapter does not fit base model {base}: {problem}. It was "
                f"trained for a different base model (its config names "
                f"{adapter.base_model!r}). Fix: pass that base model with --base."
            )


def _strip_model_prefix(name: str) -> str:
    # peft saves "base_model.model.model.layers..."; a base saves "model.layers..." (or
    # "layers..." for a bare backbone): strip wrappers until both read "layers...".
    stripped = True
    while stripped:
        stripped = False
        for prefix in ("base_model.model.", "model."):
            if name.startswith(prefix):
                name, stripped = name[len(prefix):], True
    return name


def _lora_shape_problem(name: str, shape: list[int], base: dict[str, list[int]]) -> str | None:
    # peft names: base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight
    for part, axis in ((".lora_A.", 1), (".lora_B.", 0)):
        if part not in name:
            continue
        if len(shape) != 2:
            return f"{name} has shape {shape}, not a matrix"
        module = _strip_model_prefix(name.split(part, maxsplit=1)[0])
        base_shape = base.get(module + ".weight")
        if base_shape is None:
            return f"the base has no weight for {module}"
        # Linear weights are [out_features, in_features]: lora_A is [r, in], lora_B [out, r].
        expected = base_shape[1] if axis == 1 else base_shape[0]
        if shape[axis] != expected:
            return (f"{module} has {'input' if axis == 1 else 'output'} size {expected} in the "
                    f"base but {shape[axis]} in the adapter")
    return None


def _same_model(a: str, b: str) -> bool:
    pa, pb = Path(a), Path(b)
    if pa.exists() and pb.exists():
        return pa.resolve() == pb.resolve()
    return a.rstrip("/") == b.rstrip("/")


def _hyperparameters(folder: Path) -> dict[str, float | int | str]:
    from evalharness.stats.hyperparams import read_hyperparameters

    return read_hyperparameters(folder)


def resolve_models(names: Sequence[str], base: str | None = None) -> list[ModelSpec]:
    """Turn command-line model names into checked ``ModelSpec``s, in the order given.

    Args:
        names: ``baseline``, adapter folders, or merged model folders.
        base: the ``--base`` override; otherwise taken from the adapters' configs.

    Raises:
        UserError: every problem found, before anything heavy is loaded.
    """
    if not names:
        raise UserError("no models given. Fix: name at least one model: 'baseline', a PEFT "
                        "adapter folder, or a merged model folder.")
    adapters: dict[str, AdapterConfig] = {}
    for name in names:
        folder = Path(name)
        if name == BASELINE:
            continue
        if not folder.exists():
            raise UserError(f"{name}: no such adapter or model folder. Fix: check the path, "
                            "or use 'baseline' for the base model.")
        if (folder / ADAPTER_CONFIG).is_file() or not (folder / "config.json").is_file():
            adapters[name] = read_adapter_config(folder)
    run_base = base or _common_base(adapters)
    if run_base is None and BASELINE in names:
        raise UserError("'baseline' needs a base model, and no adapter names one. "
                        "Fix: pass --base MODEL (a hub id or a local folder).")
    if base is None:
        _check_local_base(run_base, adapters)
    fingerprint = fingerprint_model(run_base) if run_base else ""
    specs: list[ModelSpec] = []
    for name in names:
        if name == BASELINE:
            assert run_base is not None  # checked above
            specs.append(ModelSpec(name=BASELINE, kind="base", base_model=run_base,
                                   base_fingerprint=fingerprint))
        elif name in adapters:
            assert run_base is not None  # every adapter yields a base or raised
            specs.append(_adapter_spec(adapters[name], run_base, fingerprint))
        else:
            folder = Path(name).resolve()
            specs.append(ModelSpec(name=folder.name, kind="merged", base_model=str(folder),
                                   base_fingerprint=fingerprint_model(str(folder))))
    _check_unique_names(specs)
    return specs


def _adapter_spec(config: AdapterConfig, run_base: str, fingerprint: str) -> ModelSpec:
    weight_rank = adapter_weight_rank(config)
    check_adapter_fits(config, run_base)
    folder = config.path.resolve()
    return ModelSpec(
        name=folder.name,
        kind="adapter",
        base_model=run_base,
        base_fingerprint=fingerprint,
        adapter=str(folder),
        adapter_sha256=adapter_sha256(config),
        # The largest rank in the weights (rank_pattern may exceed r): what vLLM must hold.
        lora_rank=max(config.r, weight_rank or 0),
        lora_alpha=config.alpha,
        target_modules=config.target_modules,
        hyperparameters=_hyperparameters(folder),
    )


def _common_base(adapters: dict[str, AdapterConfig]) -> str | None:
    bases: dict[str, list[str]] = {}
    for name, config in adapters.items():
        if not config.base_model:
            raise UserError(f"{config.path / ADAPTER_CONFIG}: no base_model_name_or_path. "
                            "Fix: pass --base MODEL.")
        match = next((b for b in bases if _same_model(b, config.base_model)), config.base_model)
        bases.setdefault(match, []).append(name)
    if len(bases) > 1:
        listing = "; ".join(f"{b}: {', '.join(n)}" for b, n in bases.items())
        raise CompatibilityError(
            f"the adapters were trained on different base models ({listing}). Fix: evaluate "
            "each base model's adapters in its own run, or pass --base if these name the same "
            "model in different places."
        )
    return next(iter(bases), None)


def _check_local_base(base: str | None, adapters: dict[str, AdapterConfig]) -> None:
    # An absolute path recorded at training time on another machine is the common failure.
    if base and base.startswith(("/", ".")) and not Path(base).is_dir():
        users = ", ".join(adapters)
        raise UserError(f"base model {base} (named in the adapter config of {users}) is not a "
                        "folder on this machine. Fix: pass --base with where the base model "
                        "is here.")


def _check_unique_names(specs: Sequence[ModelSpec]) -> None:
    seen: dict[str, str] = {}
    for spec in specs:
        ident = spec.key
        if spec.name in seen and seen[spec.name] != ident:
            raise UserError(f"two different models are both named '{spec.name}'. Fix: give the "
                            "adapter folders distinct names.")
        seen[spec.name] = ident
