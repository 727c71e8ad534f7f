"""Process-wide settings read from the environment: quick mode, cache folder, project root, artifact folders.

One rule places every generated artifact (:func:`artifacts_root`): quick runs get a tree of their own.
"""

from __future__ import annotations

import os
from pathlib import Path

_TRUE = {"1", "true", "yes", "on"}
ARTIFACTS_ENV = "SLMLAB_ARTIFACTS"
QUICK_TREE = "quick"


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

    ``$SLMLAB_ROOT`` wins when set. Falls back to the current folder outside a checkout. Committed inputs
    (``patterns/``, ``data/tasks/``) are always read from here, never from :func:`artifacts_root`.
    """
    if os.environ.get("SLMLAB_ROOT"):
        return Path(os.environ["SLMLAB_ROOT"]).resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "notebooks").is_dir():
            return folder
    return here


def artifacts_root(quick: bool | None = None) -> Path:
    """The folder that holds the generated ``data/``, ``adapters/`` and ``results/`` of one mode.

    Full mode: ``$SLMLAB_ARTIFACTS`` when set, else the checkout (:func:`project_root`), so ``data/``,
    ``adapters/`` and ``results/`` are the checkout's. Quick mode (``quick``, default ``SLMLAB_QUICK``): the
    ``quick/`` folder inside that, i.e. ``quick/data``, ``quick/adapters``, ``quick/results``, so a quick run
    never overwrites full-mode work.
    """
    moved = os.environ.get(ARTIFACTS_ENV, "").strip()
    base = Path(moved).expanduser().resolve() if moved else project_root()
    return base / QUICK_TREE if quick_mode(quick) else base


def data_dir(quick: bool | None = None) -> Path:
    """Generated training data (train/valid/test JSONL) of the mode: ``<artifacts_root>/data``."""
    return artifacts_root(quick) / "data"


def adapters_dir(*parts: str, quick: bool | None = None) -> Path:
    """Trained adapters of the mode: ``<artifacts_root>/adapters[/parts]`` (not created: training does that)."""
    return artifacts_root(quick) / "adapters" / Path(*parts)


def results_dir(*parts: str, quick: bool | None = None) -> Path:
    """A folder under the mode's ``<artifacts_root>/results``, created on demand."""
    path = artifacts_root(quick) / "results" / Path(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
