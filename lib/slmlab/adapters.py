"""LoRA adapter conversion between PEFT folders and mlx-lm adapter folders, in both directions,
plus a check that an adapter fits a given base model (same layer count and layer shapes).

Hand-written on purpose: neither PEFT nor mlx-lm converts between the two formats (mlx-lm issue #1119),
so the mapping is spelled out here from the formats as the installed libraries write and read them:

* PEFT: ``adapter_config.json`` (``peft_type: LORA``, ``r``, ``lora_alpha``, ``use_rslora``,
  ``target_modules``, ``layers_to_transform``) and ``adapter_model.safetensors`` with
  ``base_model.model.model.layers.N.<module>.lora_A.weight`` of shape ``[r, in]`` and ``lora_B.weight``
  ``[out, r]``; the update is ``scaling * B @ A`` with ``scaling = lora_alpha / r`` (``/ sqrt(r)`` with rsLoRA).
* mlx-lm (``mlx_lm.lora``, ``mlx_lm.tuner.utils.load_adapters``): ``adapter_config.json``
  (``fine_tune_type``, ``num_layers``, ``lora_parameters: {rank, scale, dropout, keys}``) and
  ``adapters.safetensors`` with ``model.layers.N.<module>.lora_a`` ``[in, r]`` and ``lora_b`` ``[r, out]``;
  the update is ``scale * x @ a @ b`` on the modules in ``keys`` of the *last* ``num_layers`` layers.

So the tensors are transposes of each other, ``scale == scaling``, and PEFT's arbitrary layer set maps to the
mlx tail starting at the first adapted layer, with all-zero LoRA pairs on the tail layers (and modules)
PEFT did not adapt: a zero pair adds exactly nothing, and stays zero if mlx-lm trains on. Going back, all-zero
pairs are dropped again, so PEFT → mlx → PEFT returns the original tensors.
"""

from __future__ import annotations

import json
import math
import re
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from slmlab import __version__
from slmlab.errors import SlmLabError
from slmlab.io import atomic_write_folder, created_now

if TYPE_CHECKING:
    import torch

__all__ = [
    "AdapterFormatError",
    "check_adapter_base",
    "convert_adapter",
    "detect_adapter_format",
    "mlx_to_peft",
    "peft_to_mlx",
    "quiet_peft_deprecation",
]

AdapterFormat = Literal["peft", "mlx"]

CONFIG_FILE = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
MLX_WEIGHTS = "adapters.safetensors"
# PEFT's from_pretrained warns about unknown config keys, so PEFT output keeps its provenance beside the config.
PEFT_PROVENANCE = "slmlab_conversion.json"

_PEFT_KEY = re.compile(r"^base_model\.model\.model\.layers\.(\d+)\.(.+)\.lora_([AB])\.weight$")
_MLX_KEY = re.compile(r"^model\.layers\.(\d+)\.(.+)\.lora_([ab])$")
_PEFT_REFUSED = {  # config key -> (value that is fine, why another value cannot be expressed in mlx-lm)
    "use_dora": (False, "it is a DoRA adapter (use_dora=true); only plain LoRA converts"),
    "bias": ("none", "it trains biases (bias != 'none'), which mlx-lm adapters cannot carry"),
    "lora_bias": (False, "it has a LoRA bias (lora_bias=true), which mlx-lm adapters cannot carry"),
    "modules_to_save": (None, "it saves full modules (modules_to_save), which mlx-lm adapters cannot carry"),
    "rank_pattern": ({}, "it uses per-module ranks (rank_pattern); mlx-lm has one rank for all modules"),
    "alpha_pattern": ({}, "it uses per-module alphas (alpha_pattern); mlx-lm has one scale for all modules"),
    "target_parameters": (None, "it targets raw parameters (target_parameters), not linear modules"),
    "fan_in_fan_out": (False, "it stores transposed (fan_in_fan_out) weights, as for GPT-2 Conv1D layers"),
}

Pair = tuple["torch.Tensor", "torch.Tensor"]  # PEFT orientation: A [r, in], B [out, r]


class AdapterFormatError(SlmLabError, ValueError):
    """An adapter folder that is missing files, is not LoRA, or does not fit the given base model."""


@dataclass
class _Lora:
    """A LoRA adapter independent of its file format; tensors in PEFT orientation."""

    pairs: dict[tuple[int, str], Pair]
    rank: int
    scale: float
    dropout: float
    base_name: str | None = None
    all_layers: bool = False  # PEFT without layers_to_transform: every decoder layer carries LoRA
    provenance: dict[str, Any] = field(default_factory=dict)


@contextmanager
def quiet_peft_deprecation() -> Iterator[None]:
    """Silence the one FutureWarning PEFT triggers on transformers 5, around a PEFT call.

    PEFT's ``PeftModel`` reads the base model's ``is_gradient_checkpointing`` property, which transformers 5
    renamed ``is_activation_checkpointing``; the warning is about PEFT's code, not ours, and says nothing a
    learner can act on. Only that message is silenced, only inside the block.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


# --- detection and small file helpers ------------------------------------------------------------


def detect_adapter_format(folder: str | Path) -> AdapterFormat:
    """Return ``"peft"`` or ``"mlx"`` for an adapter folder; raise :class:`AdapterFormatError` otherwise."""
    folder = Path(folder)
    if not folder.is_dir():
        raise AdapterFormatError(f"Adapter folder not found: {folder}")
    config = _read_json(folder / CONFIG_FILE, what="adapter config (neither a PEFT nor an mlx-lm adapter folder)")
    if "peft_type" in config:
        fmt, weights = "peft", PEFT_WEIGHTS
    elif "fine_tune_type" in config or "lora_parameters" in config:
        fmt, weights = "mlx", MLX_WEIGHTS
    else:
        raise AdapterFormatError(
            f"{folder / CONFIG_FILE} has neither 'peft_type' (PEFT) nor 'fine_tune_type'/'lora_parameters' "
            "(mlx-lm), so it is not an adapter config this converter knows."
        )
    if not (folder / weights).is_file():
        label = "PEFT" if fmt == "peft" else "mlx-lm"
        raise AdapterFormatError(f"{folder} looks like a {label} adapter but has no {weights}.")
    return fmt  # type: ignore[return-value]


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise AdapterFormatError(f"Missing {path.name} in {path.parent}: no {what}.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AdapterFormatError(f"{path} is not valid JSON ({exc}).") from exc
    if not isinstance(data, dict):
        raise AdapterFormatError(f"{path} must hold a JSON object, not {type(data).__name__}.")
    return data


def _safetensors_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor shapes from a safetensors header (8-byte length + JSON), without loading any tensor."""
    try:
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > 100_000_000:
                raise ValueError("header too large")
            header = json.loads(handle.read(length))
        return {name: list(info["shape"]) for name, info in header.items() if name != "__metadata__"}
    except (OSError, ValueError, KeyError, TypeError, struct.error) as exc:
        raise AdapterFormatError(f"{path} is not a readable safetensors file ({exc}).") from exc


def _weights_file(folder: Path, fmt: AdapterFormat) -> Path:
    return folder / (PEFT_WEIGHTS if fmt == "peft" else MLX_WEIGHTS)


def _parse_key(fmt: AdapterFormat, name: str, path: Path) -> tuple[int, str, str]:
    """``(layer, module inside the layer, "A" | "B")`` for one tensor name; refuse anything else."""
    match = (_PEFT_KEY if fmt == "peft" else _MLX_KEY).match(name)
    if match is None:
        hint = " (a DoRA magnitude)" if name.endswith((".m", "lora_magnitude_vector")) else ""
        raise AdapterFormatError(
            f"{path} holds tensor '{name}'{hint}, which is not a LoRA A/B pair inside a decoder layer "
            "(model.layers.N); only such pairs convert between PEFT and mlx-lm."
        )
    return int(match.group(1)), match.group(2), match.group(3).upper()


# --- base models ---------------------------------------------------------------------------------


def _base_folder(explicit: str | Path | None, recorded: str | None) -> Path | None:
    """The base model folder: the one passed in, else the recorded one if it is a local model folder."""
    if explicit is not None:
        folder = Path(explicit)
        if not (folder / "config.json").is_file():
            raise AdapterFormatError(f"Base model folder {folder} has no config.json.")
        return folder
    if recorded and (Path(recorded) / "config.json").is_file():
        return Path(recorded)
    return None


def _base_layer_count(base: Path) -> int:
    config = _read_json(base / "config.json", what="model config")
    count = config.get("num_hidden_layers", config.get("text_config", {}).get("num_hidden_layers"))
    if not isinstance(count, int):
        raise AdapterFormatError(f"{base / 'config.json'} has no num_hidden_layers.")
    return count


def _base_weight_shapes(base: Path) -> dict[str, list[int]]:
    """Shapes of the base model's tensors from its safetensors headers ({} when it has none)."""
    index = base / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(_read_json(index, what="weight index").get("weight_map", {}).values()))
    else:
        files = sorted(p.name for p in base.glob("*.safetensors"))
    shapes: dict[str, list[int]] = {}
    for name in files:
        shapes.update(_safetensors_shapes(base / name))
    return shapes


# --- reading -------------------------------------------------------------------------------------


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own SafetensorError for corrupt files
        raise AdapterFormatError(f"{path} is not a readable safetensors file ({exc}).") from exc


def _pair_up(tensors: dict[str, torch.Tensor], fmt: AdapterFormat, path: Path) -> dict[tuple[int, str], Pair]:
    """Group tensors into (A, B) pairs in PEFT orientation; drop all-zero pairs (padding, adds nothing)."""
    halves: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    for name, tensor in tensors.items():
        layer, module, which = _parse_key(fmt, name, path)
        halves.setdefault((layer, module), {})[which] = tensor if fmt == "peft" else tensor.T.contiguous()
    pairs: dict[tuple[int, str], Pair] = {}
    for (layer, module), half in sorted(halves.items()):
        if set(half) != {"A", "B"}:
            raise AdapterFormatError(f"{path}: layer {layer} {module} has lora_{set(half).pop()} but not its partner.")
        a, b = half["A"], half["B"]
        if bool(a.any()) or bool(b.any()):
            pairs[(layer, module)] = (a, b)
    return pairs


def _check_rank(pairs: dict[tuple[int, str], Pair], rank: int, path: Path) -> None:
    for (layer, module), (a, b) in pairs.items():
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != rank or b.shape[1] != rank:
            raise AdapterFormatError(
                f"{path}: layer {layer} {module} has LoRA shapes {tuple(a.shape)} / {tuple(b.shape)}, "
                f"which do not match rank {rank} from {CONFIG_FILE}."
            )


def _validate_peft_config(config: dict[str, Any], path: Path) -> None:
    if str(config.get("peft_type", "")).upper() != "LORA":
        raise AdapterFormatError(f"{path} is a PEFT {config.get('peft_type')} adapter, not LoRA; only LoRA converts to mlx-lm.")
    if not isinstance(config.get("r"), int) or not isinstance(config.get("lora_alpha"), (int, float)):
        raise AdapterFormatError(f"{path} needs a numeric 'r' and 'lora_alpha' (as PEFT's save_pretrained writes).")
    for key, (fine, why) in _PEFT_REFUSED.items():
        value = config.get(key, fine)
        if (value != fine) if isinstance(fine, str) else bool(value):
            raise AdapterFormatError(f"Cannot convert {path}: {why}.")


def _read_peft(folder: Path) -> _Lora:
    config_path = folder / CONFIG_FILE
    config = _read_json(config_path, what="adapter config")
    _validate_peft_config(config, config_path)
    rank, alpha = int(config["r"]), float(config["lora_alpha"])
    use_rslora = bool(config.get("use_rslora", False))
    path = folder / PEFT_WEIGHTS
    pairs = _pair_up(_load_tensors(path), "peft", path)
    _check_rank(pairs, rank, path)
    layers = config.get("layers_to_transform")
    return _Lora(
        pairs=pairs,
        rank=rank,
        scale=alpha / (math.sqrt(rank) if use_rslora else rank),
        dropout=float(config.get("lora_dropout", 0.0)),
        base_name=config.get("base_model_name_or_path"),
        all_layers=layers is None or layers == [],
        provenance={"peft": {"lora_alpha": config["lora_alpha"], "use_rslora": use_rslora, "r": rank}},
    )


def _validate_mlx_config(config: dict[str, Any], path: Path) -> dict[str, Any]:
    kind = config.get("fine_tune_type", "lora")
    if kind == "dora":
        raise AdapterFormatError(f"Cannot convert {path}: it is a DoRA adapter; only plain LoRA converts to PEFT.")
    if kind != "lora":
        raise AdapterFormatError(f"Cannot convert {path}: fine_tune_type is '{kind}', not a LoRA adapter.")
    params = config.get("lora_parameters")
    if not isinstance(params, dict) or "rank" not in params or "scale" not in params:
        raise AdapterFormatError(f"{path} needs lora_parameters with 'rank' and 'scale' (as mlx_lm.lora writes).")
    if not isinstance(config.get("num_layers"), int):
        raise AdapterFormatError(f"{path} has no integer num_layers (as mlx_lm.lora writes).")
    return params


def _read_mlx(folder: Path) -> _Lora:
    config_path = folder / CONFIG_FILE
    config = _read_json(config_path, what="adapter config")
    params = _validate_mlx_config(config, config_path)
    path = folder / MLX_WEIGHTS
    pairs = _pair_up(_load_tensors(path), "mlx", path)
    _check_rank(pairs, int(params["rank"]), path)
    return _Lora(
        pairs=pairs,
        rank=int(params["rank"]),
        scale=float(params["scale"]),
        dropout=float(params.get("dropout", 0.0)),
        base_name=config.get("model"),
        provenance=dict(config.get("slmlab") or {}),
    )


# --- checking against a base model ---------------------------------------------------------------


def _adapter_dims(folder: Path, fmt: AdapterFormat) -> dict[tuple[int, str], tuple[int, int]]:
    """``(layer, module) -> (in, out)`` from the weights header, without loading tensors."""
    path = _weights_file(folder, fmt)
    dims: dict[tuple[int, str], tuple[int, int]] = {}
    for name, shape in _safetensors_shapes(path).items():
        layer, module, which = _parse_key(fmt, name, path)
        if len(shape) != 2:
            raise AdapterFormatError(f"{path}: tensor '{name}' has shape {shape}, not a 2-D LoRA matrix.")
        inner, outer = dims.get((layer, module), (0, 0))
        if which == "A":
            inner = shape[1] if fmt == "peft" else shape[0]
        else:
            outer = shape[0] if fmt == "peft" else shape[1]
        dims[(layer, module)] = (inner, outer)
    return dims


def _fit_problems(dims: dict[tuple[int, str], tuple[int, int]], layer_rule: tuple[str, int], base: Path) -> list[str]:
    """Why the adapter does not fit ``base`` (empty when it fits)."""
    count = _base_layer_count(base)
    shapes = _base_weight_shapes(base)
    problems: list[str] = []
    rule, value = layer_rule
    top = max((layer for layer, _ in dims), default=-1)
    if top >= count:
        problems.append(f"it has weights for layer {top} but the base model has {count} layers")
    elif rule == "all" and top + 1 != count:
        problems.append(f"it adapts all {top + 1} layers of its base model but this base model has {count}")
    elif rule == "tail" and value > 0 and any(layer < count - value for layer, _ in dims):
        problems.append(
            f"mlx-lm would put its {value} LoRA layers on layers {count - value}..{count - 1} "
            f"of this {count}-layer model, but its weights start at layer {min(l for l, _ in dims)}"
        )
    for (layer, module), (inner, outer) in sorted(dims.items()):
        if layer >= count or not shapes:
            continue
        weight = f"model.layers.{layer}.{module}.weight"
        if weight not in shapes:
            problems.append(f"the base model has no {weight}")
        elif shapes[weight][0] != outer or (f"model.layers.{layer}.{module}.scales" not in shapes and shapes[weight][1] != inner):
            problems.append(f"{weight} is {shapes[weight]} [out, in] but the adapter expects [{outer}, {inner}]")
        if len(problems) >= 3:
            break
    return problems


def _layer_rule(folder: Path, fmt: AdapterFormat) -> tuple[str, int]:
    """``("all", 0)``, ``("listed", 0)`` (PEFT) or ``("tail", num_layers)`` (mlx-lm)."""
    config = _read_json(folder / CONFIG_FILE, what="adapter config")
    if fmt == "mlx":
        return "tail", int(config.get("num_layers", 0))
    return ("listed", 0) if config.get("layers_to_transform") not in (None, []) else ("all", 0)


def check_adapter_base(adapter_dir: str | Path, base_model_dir: str | Path) -> None:
    """Raise :class:`AdapterFormatError` when the adapter's layers or shapes do not fit the base model."""
    folder, base = Path(adapter_dir), Path(base_model_dir)
    if not (base / "config.json").is_file():
        raise AdapterFormatError(f"Base model folder {base} has no config.json.")
    fmt = detect_adapter_format(folder)
    problems = _fit_problems(_adapter_dims(folder, fmt), _layer_rule(folder, fmt), base)
    if problems:
        raise AdapterFormatError(
            f"Adapter {folder} does not fit base model {base}: "
            + "; ".join(problems)
            + ". It was made for a different base model."
        )


# --- writing -------------------------------------------------------------------------------------


def _provenance(src: Path, fmt: AdapterFormat, lora: _Lora, base: Path | None) -> dict[str, Any]:
    return {
        "converted_by": f"slmlab {__version__} (slmlab.adapters)",
        "converted_from": fmt,
        "source": str(src),
        "base_model": str(base) if base else lora.base_name,
        "created": created_now(),
        **({"peft": lora.provenance["peft"]} if "peft" in lora.provenance else {}),
    }


def _tail(lora: _Lora, layer_count: int) -> dict[tuple[int, str], Pair]:
    """The pairs padded with zeros to every module on every layer from the first adapted one to the last."""
    import torch

    template = {module: pair for (_, module), pair in lora.pairs.items()}
    start = min(layer for layer, _ in lora.pairs)
    padded: dict[tuple[int, str], Pair] = {}
    for layer in range(start, layer_count):
        for module, (a, b) in sorted(template.items()):
            padded[(layer, module)] = lora.pairs.get((layer, module), (torch.zeros_like(a), torch.zeros_like(b)))
    return padded


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path, fmt: str) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata={"format": fmt})


# --- conversion ----------------------------------------------------------------------------------


def _require_pairs(lora: _Lora, src: Path) -> None:
    if not lora.pairs:
        raise AdapterFormatError(f"{src} has no non-zero LoRA weights: nothing to convert.")


def _resolved_base(lora: _Lora, base_model_dir: str | Path | None, src: Path) -> Path | None:
    """The base model folder (passed in or recorded), after checking that the adapter fits it."""
    base = _base_folder(base_model_dir, lora.base_name)
    if base is not None:
        check_adapter_base(src, base)
    return base


def peft_to_mlx(peft_dir: str | Path, out_dir: str | Path, base_model_dir: str | Path | None = None) -> Path:
    """Convert a PEFT LoRA folder to an mlx-lm adapter folder (``mlx_lm.load(base, adapter_path=out)``)."""
    src, out = Path(peft_dir), Path(out_dir)
    _check_format(src, "peft")
    lora = _read_peft(src)
    _require_pairs(lora, src)
    base = _resolved_base(lora, base_model_dir, src)
    top = max(layer for layer, _ in lora.pairs)
    if base is not None:
        layer_count = _base_layer_count(base)
    elif lora.all_layers:
        layer_count = top + 1  # every layer carries LoRA, so the last one present is the model's last
    else:
        raise AdapterFormatError(
            f"{src} adapts only some layers (layers_to_transform) and its base model "
            f"'{lora.base_name}' is not a local folder: pass base_model_dir so the layer count is known."
        )
    pairs = _tail(lora, layer_count)
    modules = sorted({module for _, module in pairs})
    config = {
        "fine_tune_type": "lora",
        "model": str(base) if base else lora.base_name,
        "num_layers": layer_count - min(layer for layer, _ in pairs),
        "lora_parameters": {"rank": lora.rank, "scale": lora.scale, "dropout": lora.dropout, "keys": modules},
        "slmlab": _provenance(src, "peft", lora, base),
    }
    tensors: dict[str, torch.Tensor] = {}
    for (layer, module), (a, b) in pairs.items():
        tensors[f"model.layers.{layer}.{module}.lora_a"] = a.T
        tensors[f"model.layers.{layer}.{module}.lora_b"] = b.T

    def write(tmp: Path) -> None:
        _save_tensors(tensors, tmp / MLX_WEIGHTS, "mlx")
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=4, sort_keys=True) + "\n", encoding="utf-8")

    return atomic_write_folder(out, write)


def _peft_alpha(lora: _Lora) -> tuple[float | int, bool]:
    """``(lora_alpha, use_rslora)``: the original PEFT values when recorded and still valid, else alpha = scale·r."""
    original = lora.provenance.get("peft") or {}
    if original.get("r") == lora.rank:
        alpha, rslora = float(original["lora_alpha"]), bool(original.get("use_rslora"))
        if math.isclose(alpha / (math.sqrt(lora.rank) if rslora else lora.rank), lora.scale, rel_tol=1e-9):
            return original["lora_alpha"], rslora
    alpha = lora.scale * lora.rank
    return (int(alpha) if alpha.is_integer() else alpha), False


def _peft_config(lora: _Lora, base: Path | None) -> dict[str, Any]:
    from peft import LoraConfig

    layers = sorted({layer for layer, _ in lora.pairs})
    all_layers = base is not None and layers == list(range(_base_layer_count(base)))
    alpha, rslora = _peft_alpha(lora)
    config = LoraConfig(
        r=lora.rank,
        lora_alpha=alpha,
        use_rslora=rslora,
        lora_dropout=lora.dropout,
        target_modules=sorted({module for _, module in lora.pairs}),
        layers_to_transform=None if all_layers else layers,
        task_type="CAUSAL_LM",
        inference_mode=True,
        base_model_name_or_path=str(base) if base else lora.base_name,
    ).to_dict()
    return {key: sorted(value) if isinstance(value, set) else value for key, value in config.items()}


def mlx_to_peft(mlx_dir: str | Path, out_dir: str | Path, base_model_dir: str | Path | None = None) -> Path:
    """Convert an mlx-lm LoRA adapter folder to a PEFT folder (``PeftModel.from_pretrained(model, out)``)."""
    import torch

    src, out = Path(mlx_dir), Path(out_dir)
    _check_format(src, "mlx")
    lora = _read_mlx(src)
    _require_pairs(lora, src)
    base = _resolved_base(lora, base_model_dir, src)
    # PEFT creates LoRA on every (listed layer x target module); write zeros where mlx had none.
    template = {module: pair for (_, module), pair in lora.pairs.items()}
    tensors: dict[str, torch.Tensor] = {}
    for layer in sorted({layer for layer, _ in lora.pairs}):
        for module, (a0, b0) in sorted(template.items()):
            a, b = lora.pairs.get((layer, module), (torch.zeros_like(a0), torch.zeros_like(b0)))
            prefix = f"base_model.model.model.layers.{layer}.{module}"
            tensors[f"{prefix}.lora_A.weight"], tensors[f"{prefix}.lora_B.weight"] = a, b
    config = _peft_config(lora, base)
    provenance = _provenance(src, "mlx", lora, base)

    def write(tmp: Path) -> None:
        _save_tensors(tensors, tmp / PEFT_WEIGHTS, "pt")
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        (tmp / PEFT_PROVENANCE).write_text(json.dumps({"slmlab": provenance}, indent=2) + "\n", encoding="utf-8")

    return atomic_write_folder(out, write)


def _check_format(src: Path, expected: AdapterFormat) -> None:
    found = detect_adapter_format(src)
    if found != expected:
        raise AdapterFormatError(f"{src} is a {found} adapter, not a {expected} one.")


def require_adapter_for(adapter: str | Path, backend_format: AdapterFormat, base_model_dir: str | Path) -> None:
    """Check an adapter before a backend loads it: right format (else say how to convert) and right base."""
    found = detect_adapter_format(adapter)
    if found != backend_format:
        backend = "torch" if backend_format == "peft" else "mlx"
        raise AdapterFormatError(
            f"{adapter} holds a {found} adapter; the {backend} backend needs the {backend_format} format: convert it "
            f"with `slmlab adapter convert {adapter} {adapter}-{backend_format} --to {backend_format}`."
        )
    check_adapter_base(adapter, base_model_dir)


def convert_adapter(
    src: str | Path, out: str | Path, to: AdapterFormat = "mlx", base_model_dir: str | Path | None = None
) -> Path:
    """Convert the adapter folder ``src`` (format detected) to format ``to`` in ``out``; return ``out``."""
    if to not in ("mlx", "peft"):
        raise ValueError(f"to must be 'mlx' or 'peft', not {to!r}")
    found = detect_adapter_format(src)
    if found == to:
        raise AdapterFormatError(f"{src} is already a {to} adapter; nothing to convert.")
    convert = peft_to_mlx if to == "mlx" else mlx_to_peft
    return convert(src, out, base_model_dir=base_model_dir)
