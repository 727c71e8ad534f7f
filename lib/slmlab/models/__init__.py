"""Models: resolve a name to a local Hugging Face folder, and load it on a backend.

Entry points: :func:`resolve_model` (name → folder) and :func:`load_model` (name → ready model).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from slmlab.errors import ModelUnavailableError, UnknownModelError
from slmlab.models.hub import hub_model_dir
from slmlab.models.packaged import converted_model_dir
from slmlab.models.registry import DEFAULT_MODEL, REGISTRY, ModelSpec

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

__all__ = ["DEFAULT_MODEL", "REGISTRY", "ModelSpec", "load_model", "resolve_model"]


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or Path(name).exists()


def resolve_model(name: str = DEFAULT_MODEL) -> Path:
    """Turn a registry name, a Hugging Face id or a local folder into a local model folder."""
    if name in REGISTRY:
        spec = REGISTRY[name]
        return converted_model_dir(spec) if spec.offline else hub_model_dir(spec.hf_id, name)
    if _looks_like_path(name):
        folder = Path(name).expanduser()
        if not folder.is_dir():
            raise ModelUnavailableError(f"Model folder not found: {name}")
        if not (folder / "config.json").is_file():
            raise ModelUnavailableError(f"{folder} is not a Hugging Face model folder (no config.json)")
        return folder.resolve()
    if _HUB_ID.match(name):
        return hub_model_dir(name)
    known = ", ".join(REGISTRY)
    raise UnknownModelError(
        f"Unknown model '{name}': use one of {known}, a Hugging Face id such as 'org/name', or a local folder."
    )


def load_model(name: str = DEFAULT_MODEL, backend: str = "auto", device: str | None = None, **options):
    """Resolve ``name`` and load it on ``backend`` ("auto", "torch" or "mlx"); see slmlab.backends."""
    from slmlab.backends import load_backend

    start = time.perf_counter()
    folder = resolve_model(name)
    resolve_seconds = time.perf_counter() - start
    model = load_backend(folder, backend=backend, device=device, label=name, **options)
    model.resolve_seconds = resolve_seconds
    return model
