"""Process-wide settings read from the environment: quick mode, cache folder, project root."""

from __future__ import annotations

import os
from pathlib import Path

_TRUE = {"1", "true", "yes", "on"}


def env_flag(name: str, default: bool = False) -> bool:
    """Read a boolean environment variable (1/true/yes/on are true)."""
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in _TRUE


def quick_mode(override: bool | None = None) -> bool:
    """Quick mode shrinks every chapter's work; ``SLMLAB_QUICK=1`` turns it on unless overridden."""
    return env_flag("SLMLAB_QUICK") if override is None else bool(override)


def cache_dir() -> Path:
    """Where converted models live: ``$SLMLAB_CACHE`` or ``~/.cache/slmlab``."""
    root = os.environ.get("SLMLAB_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "slmlab")
    return Path(root)


def project_root(start: Path | None = None) -> Path:
    """The course checkout: the nearest folder upwards holding both ``notebooks/`` and ``pyproject.toml``.

    ``$SLMLAB_ROOT`` wins when set. Falls back to the current folder outside a checkout.
    """
    if os.environ.get("SLMLAB_ROOT"):
        return Path(os.environ["SLMLAB_ROOT"]).resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "notebooks").is_dir():
            return folder
    return here


def results_dir(*parts: str) -> Path:
    """A folder under ``results/`` of the checkout, created on demand."""
    path = project_root() / "results" / Path(*parts) if parts else project_root() / "results"
    path.mkdir(parents=True, exist_ok=True)
    return path
