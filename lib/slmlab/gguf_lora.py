"""PEFT LoRA adapter folder -> GGUF LoRA file that llama.cpp applies on top of its base GGUF model.

Entry point: :func:`gguf_lora_for` (convert once, cache the file beside the adapter, rebuild when the adapter
or the base model changes); :func:`read_gguf_header` reads a GGUF file's metadata and tensor shapes quickly.
The conversion is hand-written because llama.cpp's own ``convert_lora_to_gguf.py`` is a script inside its
source tree, not an installable library; it follows the facts that script and llama.cpp's loader rely on:

* tensor names are the base model's GGUF names (``blk.N.attn_q``) from gguf's ``TensorNameMap`` for the base
  architecture, plus ``.weight.lora_a`` (PEFT ``lora_A``, shape ``[r, in]``) and ``.weight.lora_b`` (``lora_B``,
  ``[out, r]``), unchanged in orientation;
* metadata ``general.type = adapter``, ``adapter.type = lora``, ``adapter.lora.alpha``; llama.cpp scales each
  pair by ``alpha / r`` (``r`` read from the tensor), so rsLoRA's ``alpha / sqrt(r)`` is folded into ``lora_b``;
* the ``llama`` architecture stores the query and key rows in llama.cpp's rotary order, so ``lora_b`` of
  ``q_proj`` / ``k_proj`` gets the same row permutation the base weights got when they were converted.
"""

from __future__ import annotations

import hashlib
import json
import math
import mmap
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slmlab.adapters import CONFIG_FILE, PEFT_WEIGHTS, AdapterFormatError, detect_adapter_format
from slmlab.io import atomic_write

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "ADAPTER_GGUF",
    "GGUF_LORA_FORMAT",
    "GgufHeader",
    "GgufHeaderError",
    "gguf_lora_for",
    "peft_to_gguf_lora",
    "read_gguf_header",
]

ADAPTER_GGUF = "adapter.gguf"
GGUF_LORA_FORMAT = 1  # bump when the written file changes, so cached files are rebuilt
FINGERPRINT_KEY = "slmlab.source_fingerprint"
_PEFT_TENSOR = re.compile(r"^base_model\.model\.(.+)\.lora_([AB])\.weight$")
_ROTARY_PERMUTED_ARCHS = ("llama",)  # llama.cpp's converter permutes q/k rows only for these (undo_permute)
_REFUSED = {  # PEFT config key -> (value that is fine, why llama.cpp cannot apply another value)
    "use_dora": (False, "it is a DoRA adapter (use_dora=true); llama.cpp applies plain LoRA only"),
    "bias": ("none", "it trains biases (bias != 'none'), which a GGUF LoRA cannot carry"),
    "lora_bias": (False, "it has a LoRA bias (lora_bias=true), which a GGUF LoRA cannot carry"),
    "modules_to_save": (None, "it saves full modules (modules_to_save), which a GGUF LoRA cannot carry"),
    "alpha_pattern": ({}, "it uses per-module alphas (alpha_pattern); a GGUF LoRA has one alpha"),
    "target_parameters": (None, "it targets raw parameters (target_parameters), not linear modules"),
    "fan_in_fan_out": (False, "it stores transposed (fan_in_fan_out) weights, as for GPT-2 Conv1D layers"),
}


GGUF_MAGIC = b"GGUF"
# GGUF value types 0..12 (gguf.GGUFValueType): struct format of each scalar; 8 = string, 9 = array
_SCALAR_FORMATS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


class GgufHeaderError(ValueError):
    """A file that is not a GGUF file, or whose header is truncated or damaged."""


@dataclass(frozen=True)
class GgufHeader:
    """A GGUF file's scalar metadata (arrays are skipped) and its tensors' ggml shapes (``ne``: [in, out])."""

    metadata: dict[str, Any]
    tensors: dict[str, tuple[int, ...]]


class _Cursor:
    """Sequential little-endian reads over a memory-mapped file."""

    def __init__(self, buffer) -> None:
        self.buffer, self.offset = buffer, 0

    def scalar(self, fmt: str):
        (value,) = struct.unpack_from(fmt, self.buffer, self.offset)
        self.offset += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        length = self.scalar("<Q")
        self.offset += length
        if self.offset > len(self.buffer):
            raise GgufHeaderError("a string runs past the end of the file")
        return bytes(self.buffer[self.offset - length : self.offset]).decode("utf-8", errors="replace")

    def value(self, kind: int):
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item_kind, count = self.scalar("<I"), self.scalar("<Q")
            if item_kind in (_STRING, _ARRAY):
                for _ in range(count):
                    self.value(item_kind)
            else:
                self.offset += count * struct.calcsize(_SCALAR_FORMATS[item_kind])
            return None
        if kind not in _SCALAR_FORMATS:
            raise GgufHeaderError(f"unknown metadata value type {kind}")
        return self.scalar(_SCALAR_FORMATS[kind])


def read_gguf_header(path: str | Path) -> GgufHeader:
    """Metadata and tensor shapes of a GGUF file, without reading its tensors.

    Hand-written because gguf.GGUFReader parses every vocabulary and merge entry into NumPy views (about 3 s
    for a 49k-token vocabulary); this skips the arrays and takes milliseconds.
    """
    with open(path, "rb") as handle:
        if handle.read(4) != GGUF_MAGIC:
            raise GgufHeaderError("it does not start with the GGUF magic bytes")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buffer:
            try:
                return _parse_header(_Cursor(buffer))
            except (struct.error, KeyError, OverflowError) as exc:
                raise GgufHeaderError(f"its header is truncated or damaged ({exc})") from exc


def _parse_header(cursor: _Cursor) -> GgufHeader:
    cursor.offset = 4
    cursor.scalar("<I")  # version
    tensor_count, kv_count = cursor.scalar("<Q"), cursor.scalar("<Q")
    metadata: dict[str, Any] = {}
    for _ in range(kv_count):
        key = cursor.string()
        value = cursor.value(cursor.scalar("<I"))
        if value is not None:
            metadata[key] = value
    tensors: dict[str, tuple[int, ...]] = {}
    for _ in range(tensor_count):
        name = cursor.string()
        dims = cursor.scalar("<I")
        tensors[name] = tuple(cursor.scalar("<Q") for _ in range(dims))
        cursor.scalar("<I")  # ggml type
        cursor.scalar("<Q")  # data offset
    return GgufHeader(metadata=metadata, tensors=tensors)


@dataclass(frozen=True)
class _Base:
    """What the conversion needs to know about the base GGUF."""

    path: Path
    arch: str
    block_count: int
    head_count: int
    head_count_kv: int
    shapes: dict[str, tuple[int, ...]]  # tensor name -> ggml shape (ne: [in, out] for a matrix)


def _read_base(base_gguf: Path) -> _Base:
    try:
        header = read_gguf_header(base_gguf)
    except (OSError, GgufHeaderError) as exc:
        raise AdapterFormatError(f"{base_gguf} is not a readable GGUF file: {exc}.") from exc
    arch = header.metadata.get("general.architecture")
    if not arch:
        raise AdapterFormatError(f"{base_gguf} has no general.architecture, so its tensor names are unknown.")
    heads = header.metadata.get(f"{arch}.attention.head_count", 0)
    return _Base(
        path=base_gguf,
        arch=arch,
        block_count=int(header.metadata.get(f"{arch}.block_count", 0)),
        head_count=int(heads),
        head_count_kv=int(header.metadata.get(f"{arch}.attention.head_count_kv", heads)),
        shapes=header.tensors,
    )


def _peft_config(adapter_dir: Path) -> dict[str, Any]:
    found = detect_adapter_format(adapter_dir)
    if found != "peft":
        raise AdapterFormatError(
            f"{adapter_dir} holds a {found} adapter; the llamacpp backend needs the PEFT format: convert it with "
            f"`slmlab adapter convert {adapter_dir} {adapter_dir}-peft --to peft`."
        )
    path = adapter_dir / CONFIG_FILE
    config = json.loads(path.read_text(encoding="utf-8"))
    if str(config.get("peft_type", "")).upper() != "LORA":
        raise AdapterFormatError(f"{path} is a PEFT {config.get('peft_type')} adapter, not LoRA.")
    if not isinstance(config.get("lora_alpha"), (int, float)):
        raise AdapterFormatError(f"{path} needs a numeric 'lora_alpha' (as PEFT's save_pretrained writes).")
    for key, (fine, why) in _REFUSED.items():
        value = config.get(key, fine)
        if (value != fine) if isinstance(fine, str) else bool(value):
            raise AdapterFormatError(f"Cannot convert {path} for llama.cpp: {why}.")
    return config


def _fingerprint(adapter_dir: Path, base: _Base) -> str:
    """A digest of everything the converted file depends on: both adapter files, the base and this converter."""
    digest = hashlib.sha256(f"format={GGUF_LORA_FORMAT}".encode())
    for name in (CONFIG_FILE, PEFT_WEIGHTS):
        digest.update((adapter_dir / name).read_bytes())
    digest.update(f"{base.path.resolve()}:{base.path.stat().st_size}:{base.path.stat().st_mtime_ns}".encode())
    return digest.hexdigest()


def _rotary_permute(rows: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's q/k row order: each head's two rotary halves interleaved (LlamaModel.permute)."""
    shape = rows.shape
    return rows.reshape(heads, 2, shape[0] // heads // 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


def _gguf_name(module: str, name_map, path: Path) -> str:
    mapped = name_map.get_name(module)
    if mapped is None:
        raise AdapterFormatError(f"{path}: LoRA on '{module}', which has no tensor in a llama.cpp model of this architecture.")
    return mapped


def _pairs(adapter_dir: Path, base: _Base) -> dict[str, dict[str, np.ndarray]]:
    """GGUF tensor name (``blk.0.attn_q``) -> {"A": [r, in], "B": [out, r]} as float32 arrays."""
    import gguf
    from safetensors.torch import load_file

    path = adapter_dir / PEFT_WEIGHTS
    arch_ids = {name: arch for arch, name in gguf.MODEL_ARCH_NAMES.items()}
    if base.arch not in arch_ids:
        raise AdapterFormatError(f"{base.path}: architecture '{base.arch}' is unknown to the installed gguf package.")
    name_map = gguf.get_tensor_name_map(arch_ids[base.arch], base.block_count)
    pairs: dict[str, dict[str, np.ndarray]] = {}
    for key, tensor in load_file(str(path)).items():
        match = _PEFT_TENSOR.match(key)
        if match is None:
            raise AdapterFormatError(
                f"{path} holds tensor '{key}', which is not a LoRA A/B pair of a linear module "
                "(embedding LoRA and saved modules do not convert to a GGUF LoRA)."
            )
        module, half = match.groups()
        pairs.setdefault(_gguf_name(module, name_map, path), {})[half] = tensor.float().numpy()
    return pairs


def _checked_pair(name: str, pair: dict[str, np.ndarray], base: _Base, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The (A, B) pair after checking it is complete and fits the base tensor ``name``.weight."""
    if set(pair) != {"A", "B"}:
        raise AdapterFormatError(f"{path}: {name} has lora_{set(pair).pop()} but not its partner.")
    a, b = pair["A"], pair["B"]
    target = base.shapes.get(f"{name}.weight")
    if target is None:
        raise AdapterFormatError(f"Adapter {path} adapts {name}, but the base model {base.path} has no {name}.weight.")
    expected_in, expected_out = target[0], target[1] if len(target) > 1 else 1
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1] or a.shape[1] != expected_in or b.shape[0] != expected_out:
        raise AdapterFormatError(
            f"Adapter {path} does not fit base model {base.path}: {name} is [out={expected_out}, in={expected_in}] "
            f"but the LoRA pair is A {list(a.shape)} / B {list(b.shape)}. It was made for a different base model."
        )
    return a, b


def _lora_b_factor(config: dict[str, Any], rank: int) -> float:
    """What multiplies lora_b so llama.cpp's ``alpha / r`` gives PEFT's scaling (``alpha / sqrt(r)`` for rsLoRA)."""
    return math.sqrt(rank) if config.get("use_rslora") else 1.0


def _tensors(adapter_dir: Path, config: dict[str, Any], base: _Base) -> dict[str, np.ndarray]:
    path = adapter_dir / PEFT_WEIGHTS
    tensors: dict[str, np.ndarray] = {}
    for name, pair in sorted(_pairs(adapter_dir, base).items()):
        a, b = _checked_pair(name, pair, base, path)
        b = b * _lora_b_factor(config, a.shape[0])
        if base.arch in _ROTARY_PERMUTED_ARCHS and name.endswith((".attn_q", ".attn_k")):
            b = _rotary_permute(b, base.head_count if name.endswith(".attn_q") else base.head_count_kv)
        tensors[f"{name}.weight.lora_a"] = a.astype("float32")
        tensors[f"{name}.weight.lora_b"] = b.astype("float32")
    if not tensors:
        raise AdapterFormatError(f"{path} has no LoRA weights: nothing to convert.")
    return tensors


def _write(out: Path, base: _Base, alpha: float, tensors: dict[str, np.ndarray], fingerprint: str) -> None:
    import gguf

    writer = gguf.GGUFWriter(out, base.arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    writer.add_string(FINGERPRINT_KEY, fingerprint)
    for name, array in tensors.items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def peft_to_gguf_lora(adapter_dir: str | Path, base_gguf: str | Path, out: str | Path) -> Path:
    """Convert the PEFT LoRA folder ``adapter_dir`` for the model ``base_gguf`` into the GGUF LoRA file ``out``."""
    adapter_dir, out = Path(adapter_dir), Path(out)
    config = _peft_config(adapter_dir)
    base = _read_base(Path(base_gguf))
    tensors = _tensors(adapter_dir, config, base)
    fingerprint = _fingerprint(adapter_dir, base)
    return atomic_write(out, lambda tmp: _write(tmp, base, float(config["lora_alpha"]), tensors, fingerprint))


def _cached_fingerprint(path: Path) -> str | None:
    try:
        return read_gguf_header(path).metadata.get(FINGERPRINT_KEY)
    except (OSError, GgufHeaderError):
        return None


def gguf_lora_for(adapter_dir: str | Path, base_gguf: str | Path) -> Path:
    """The GGUF LoRA file for a PEFT adapter folder (``adapter_dir/adapter.gguf``), converted when missing or stale."""
    adapter_dir = Path(adapter_dir)
    config = _peft_config(adapter_dir)
    base = _read_base(Path(base_gguf))
    cached = adapter_dir / ADAPTER_GGUF
    fingerprint = _fingerprint(adapter_dir, base)
    if cached.is_file() and _cached_fingerprint(cached) == fingerprint:
        return cached
    tensors = _tensors(adapter_dir, config, base)
    return atomic_write(cached, lambda tmp: _write(tmp, base, float(config["lora_alpha"]), tensors, fingerprint))
