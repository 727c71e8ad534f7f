"""One generation API over three backends: torch (CUDA → MPS → CPU), MLX (mlx-lm) and llama.cpp (GGUF files).

Entry point: :func:`load_backend` (usually reached through :func:`slmlab.load_model`). ``auto`` picks
MLX on Apple silicon when mlx-lm imports, torch everywhere else; ``mlx`` can be chosen wherever mlx
imports (on Linux through ``mlx[cpu]``); ``llamacpp`` (optional extra ``slmlab[llamacpp]``) is only ever
chosen by name.
"""

from __future__ import annotations

import functools
import importlib
import platform
import sys
from pathlib import Path

from slmlab.backends.base import LanguageModel
from slmlab.errors import BackendError

BACKENDS = ("torch", "mlx", "llamacpp")

__all__ = ["BACKENDS", "LanguageModel", "available_backends", "load_backend", "select_backend", "torch_device"]


def is_apple_silicon() -> bool:
    return sys.platform == "darwin" and platform.machine() == "arm64"


@functools.lru_cache(maxsize=None)
def mlx_available() -> bool:
    """True when mlx and mlx-lm import and mlx has a usable device."""
    try:
        importlib.import_module("mlx.core")
        importlib.import_module("mlx_lm")
    except Exception:
        return False
    return True


@functools.lru_cache(maxsize=None)
def llamacpp_available() -> bool:
    """True when llama-cpp-python imports (its compiled library loads)."""
    try:
        importlib.import_module("llama_cpp")
    except Exception:
        return False
    return True


def available_backends() -> list[str]:
    return ["torch"] + (["mlx"] if mlx_available() else []) + (["llamacpp"] if llamacpp_available() else [])


def select_backend(name: str = "auto") -> str:
    """Resolve ``auto`` and check that the chosen backend can run here."""
    if name == "auto":
        return "mlx" if is_apple_silicon() and mlx_available() else "torch"
    if name not in BACKENDS:
        raise BackendError(f"Unknown backend '{name}': choose one of auto, {', '.join(BACKENDS)}.")
    if name == "mlx" and not mlx_available():
        extra = "'mlx[cpu]'" if sys.platform == "linux" else "mlx"
        raise BackendError(f"The mlx backend needs mlx and mlx-lm: pip install {extra} mlx-lm")
    if name == "llamacpp" and not llamacpp_available():
        from slmlab.backends.llamacpp_backend import INSTALL_HINT  # lazy: each backend loads its own library

        raise BackendError(INSTALL_HINT)
    return name


def torch_device(preferred: str | None = None) -> str:
    """The torch device to use: ``preferred`` if given, else CUDA, then MPS, then CPU."""
    import torch

    if preferred:
        return preferred
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def load_backend(
    path: Path, backend: str = "auto", device: str | None = None, label: str | None = None, **options
) -> LanguageModel:
    """Load the Hugging Face folder ``path`` on the selected backend (a GGUF file for llamacpp)."""
    chosen = select_backend(backend)
    if chosen == "llamacpp":
        from slmlab.backends.llamacpp_backend import LlamaCppModel  # lazy: llama-cpp-python is optional

        return LlamaCppModel.load(path, label=label, device=device, **options)
    if chosen == "mlx":
        if device not in (None, "cpu", "gpu"):
            raise BackendError(f"The mlx backend runs on 'cpu' or 'gpu', not '{device}'.")
        from slmlab.backends.mlx_backend import MlxModel  # lazy: mlx is optional (Apple silicon, or mlx[cpu])

        return MlxModel.load(path, label=label, device=device, **options)
    from slmlab.backends.torch_backend import TorchModel  # lazy: keeps `import slmlab` free of torch

    return TorchModel.load(path, label=label, device=torch_device(device), **options)
