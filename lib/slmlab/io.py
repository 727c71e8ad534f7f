"""Atomic file writes: every artifact is written to a temporary sibling and renamed into place.

A crash, a full disk or Ctrl+C mid-write leaves the previous file intact, never a half-written one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)``, then rename the temporary file onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the permissions open() would
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | Path, data: object) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def save_table(frame, path: str | Path) -> Path:
    """Write a pandas DataFrame as CSV, atomically."""
    return atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))


def save_figure(figure, path: str | Path, dpi: int = 120) -> Path:
    """Save a matplotlib figure as PNG, atomically."""
    return atomic_write(path, lambda tmp: figure.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png"))
