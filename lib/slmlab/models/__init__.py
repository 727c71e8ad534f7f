"""Models: resolve a name to a local Hugging Face folder (or, for llama.cpp, a GGUF file), and load it on a backend.

Entry points: :func:`resolve_model` (name → folder), :func:`resolve_gguf` (name → GGUF file and tokenizer folder)
and :func:`load_model` (name → ready model).
"""

from __future__ import annotations

import time
from pathlib import Path

from slmlab.backends import load_backend, select_backend
from slmlab.errors import BackendError, ModelUnavailableError, UnknownModelError
from slmlab.models.hub import hub_model_dir
from slmlab.models.packaged import converted_model_dir, packaged_gguf
from slmlab.models.registry import DEFAULT_MODEL, REGISTRY, ModelSpec, looks_like_hub_id

__all__ = ["DEFAULT_MODEL", "REGISTRY", "ModelSpec", "load_model", "resolve_gguf", "resolve_model"]


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or Path(name).exists()


def resolve_model(name: str = DEFAULT_MODEL) -> Path:
    """Turn a registry name, a Hugging Face id or a local folder into a local model folder."""
    if name in REGISTRY:
        spec = REGISTRY[name]
        return converted_model_dir(spec) if spec.offline else hub_model_dir(spec.hf_id, name)
    if _looks_like_path(name):
        folder = Path(name).expanduser()
        if folder.is_file() and folder.suffix.lower() == ".gguf":
            raise ModelUnavailableError(
                f"{name} is a GGUF file: load it with backend='llamacpp' (the torch and mlx backends load Hugging Face folders)."
            )
        if not folder.is_dir():
            raise ModelUnavailableError(f"Model folder not found: {name}")
        if not (folder / "config.json").is_file():
            raise ModelUnavailableError(f"{folder} is not a Hugging Face model folder (no config.json)")
        return folder.resolve()
    if looks_like_hub_id(name):
        return hub_model_dir(name)
    known = ", ".join(REGISTRY)
    raise UnknownModelError(
        f"Unknown model '{name}': use one of {known}, a Hugging Face id such as 'org/name', or a local folder."
    )


def resolve_gguf(name: str = DEFAULT_MODEL) -> tuple[Path, Path | None]:
    """The GGUF file for the llamacpp backend, and the tokenizer folder to use with it (None: the GGUF's own).

    A packaged registry model gives its shipped GGUF and its converted folder (same tokenizer and chat template
    as the other backends); a path gives that file.
    """
    spec = REGISTRY.get(name)
    if spec is not None and spec.offline:
        return packaged_gguf(spec), converted_model_dir(spec)
    if spec is None and _looks_like_path(name):
        path = Path(name).expanduser()
        if path.is_dir():
            raise BackendError(f"{name} is a folder; the llamacpp backend loads a GGUF file: pass the path of a .gguf.")
        if not path.is_file():
            raise ModelUnavailableError(f"GGUF file not found: {name}")
        return path.resolve(), None
    packaged = ", ".join(spec.name for spec in REGISTRY.values() if spec.offline)
    raise BackendError(
        f"'{name}' is not a GGUF file; the llamacpp backend loads the path of a .gguf file or a packaged model ({packaged})."
    )


def load_model(name: str = DEFAULT_MODEL, backend: str = "auto", device: str | None = None, **options):
    """Resolve ``name`` and load it on ``backend`` ("auto", "torch", "mlx" or "llamacpp"); see slmlab.backends."""
    start = time.perf_counter()
    if select_backend(backend) == "llamacpp":
        source, tokenizer_dir = resolve_gguf(name)
        options = {"tokenizer_dir": tokenizer_dir, **options}
    else:
        source = resolve_model(name)
    resolve_seconds = time.perf_counter() - start
    model = load_backend(source, backend=backend, device=device, label=name, **options)
    model.resolve_seconds = resolve_seconds
    return model
