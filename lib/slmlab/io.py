"""Atomic writes of files and folders: every artifact is built as a temporary sibling and renamed into place.

A crash, a full disk or Ctrl+C mid-write leaves the previous file or folder intact, never a half-written one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

TEMP_SUFFIX = ".tmp"  # temporary siblings are named ".<name>.<random>.tmp"


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


@contextlib.contextmanager
def atomic_folder(path: str | Path, merge: bool = False) -> Iterator[Path]:
    """Yield an empty temporary sibling folder to fill; when the block ends without error, rename it onto ``path``.

    An existing folder at ``path`` is replaced as a whole (moved aside, and put back if the rename fails), or,
    with ``merge``, kept: each built file is renamed into it, replacing a file of the same name and leaving the
    rest alone (for a run folder that also holds checkpoints). On an error or Ctrl+C the temporary folder is
    removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; give the folder the permissions mkdir would
    try:
        yield tmp
        if merge:
            _merge_into(tmp, path)
        else:
            _replace_folder(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_folder(path: str | Path, write: Callable[[Path], None], merge: bool = False) -> Path:
    """Call ``write(tmp_folder)``, then rename the temporary folder onto ``path`` (see :func:`atomic_folder`)."""
    with atomic_folder(path, merge=merge) as tmp:
        write(tmp)
    return Path(path)


def remove_stale_temps(path: str | Path) -> None:
    """Remove temporary siblings of ``path`` (its name may be a glob pattern) left by a killed process.

    Only safe while nothing else is writing there.
    """
    path = Path(path)
    for stale in path.parent.glob(f".{path.name}.*{TEMP_SUFFIX}"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def _replace_folder(tmp: Path, path: Path) -> None:
    old = tmp.with_name(tmp.name + ".old")
    if path.exists():
        os.replace(path, old)
    try:
        os.replace(tmp, path)
    except BaseException:
        if old.exists():
            os.replace(old, path)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


def _merge_into(tmp: Path, path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    for item in sorted(tmp.iterdir()):
        target = path / item.name
        if item.is_dir() and target.is_dir():
            _replace_folder(item, target)
        else:
            os.replace(item, target)


def created_now() -> str:
    """The ``created`` stamp every results file carries: now, in UTC, ISO 8601 to the second."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


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
