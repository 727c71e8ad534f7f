"""Checkpoint folders of a training run: ``<run>/checkpoints/step-NNNNNN/`` with the trainer's files and a
``trainer_state.json`` (state + settings), written atomically, rotated, and checked before a resume.

A folder without ``trainer_state.json`` (or a temporary one) is never listed, so a crash mid-save can only
lose the checkpoint being written. Rotation keeps the last ``keep`` checkpoints plus the one with the best
validation loss, when the state records one (``valid_loss: [[step, loss], ...]``).
"""

from __future__ import annotations

import json
import re
import shutil
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from slmlab.io import atomic_folder, remove_stale_temps

STATE_FILE = "trainer_state.json"
_NAME = re.compile(r"step-(\d+)")


def checkpoints_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """The complete checkpoints of a run folder, oldest first."""
    folder = checkpoints_dir(run_dir)
    found = [p for p in folder.iterdir() if _NAME.fullmatch(p.name) and (p / STATE_FILE).is_file()] if folder.is_dir() else []
    return sorted(found, key=checkpoint_step)


def checkpoint_step(checkpoint: Path) -> int:
    return int(_NAME.fullmatch(checkpoint.name).group(1))


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a run folder, or None."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def read_checkpoint(checkpoint: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(state, settings)`` as saved in a checkpoint's ``trainer_state.json``."""
    saved = json.loads((checkpoint / STATE_FILE).read_text(encoding="utf-8"))
    return saved["state"], saved.get("settings", {})


def write_checkpoint(
    run_dir: str | Path,
    step: int,
    state: Mapping[str, Any],
    settings: Mapping[str, Any],
    write_files: Callable[[Path], None],
    keep: int = 2,
) -> Path:
    """Write ``checkpoints/step-NNNNNN/`` atomically: the trainer's files (``write_files(folder)``) plus
    ``trainer_state.json``; then rotate the run's checkpoints (:func:`rotate_checkpoints`)."""
    final = checkpoints_dir(run_dir) / f"step-{step:06d}"
    with atomic_folder(final) as folder:
        write_files(folder)
        text = json.dumps({"state": state, "settings": settings}, default=str)
        (folder / STATE_FILE).write_text(text, encoding="utf-8")
    rotate_checkpoints(run_dir, keep)
    return final


def rotate_checkpoints(run_dir: str | Path, keep: int) -> list[Path]:
    """Remove all checkpoints but the last ``keep`` and the best by validation loss; return the removed ones."""
    found = list_checkpoints(run_dir)
    kept = set(found[-keep:]) if keep > 0 else set()
    scored = [(loss, path) for path in found if (loss := validation_loss(path)) is not None]
    if scored:
        kept.add(min(scored, key=lambda pair: pair[0])[1])
    removed = [path for path in found if path not in kept]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    remove_stale_temps(checkpoints_dir(run_dir) / "step-*")  # folders a killed save left behind
    return removed


def validation_loss(checkpoint: Path) -> float | None:
    """The validation loss measured at a checkpoint's own step, if its state records one."""
    state, _ = read_checkpoint(checkpoint)
    step = checkpoint_step(checkpoint)
    losses = [loss for at, loss in state.get("valid_loss") or () if at == step]
    return losses[-1] if losses else None


def settings_changes(saved: Mapping[str, Any], current: Mapping[str, Any], ignore: Iterable[str] = ()) -> dict[str, tuple]:
    """``{key: (saved, current)}`` for every setting that differs, compared as JSON (tuples equal lists)."""
    saved, current = _as_json(saved), _as_json(current)
    skip = set(ignore)
    missing = object()
    return {
        key: (saved.get(key, missing), current.get(key, missing))
        for key in sorted(saved.keys() | current.keys())
        if key not in skip and saved.get(key, missing) != current.get(key, missing)
    }


def describe_changes(changes: Mapping[str, tuple]) -> str:
    """``"learning_rate: 0.001 -> 0.002, seed: 0 -> 1"``; a key one side lacks shows as ``(none)``."""

    def show(value: Any) -> str:
        return "(none)" if not isinstance(value, (str, int, float, bool, list, dict, type(None))) else json.dumps(value)

    return ", ".join(f"{key}: {show(old)} -> {show(new)}" for key, (old, new) in changes.items())


def resumable_checkpoint(
    run_dir: str | Path,
    settings: Mapping[str, Any],
    resume: bool = True,
    ignore: Iterable[str] = (),
    run_files: Iterable[str] = (),
) -> Path | None:
    """The checkpoint a run should continue from, or None for a fresh start.

    A checkpoint made with other settings (``ignore`` lists those that do not change what is trained, such as
    how long to train or how often to save) is not resumed: a warning names the settings that differ. A fresh
    start removes the folder's old checkpoints and ``run_files`` (logs of the old run), so one run folder
    holds one run.
    """
    run_dir = Path(run_dir)
    checkpoint = latest_checkpoint(run_dir) if resume else None
    if checkpoint is not None:
        changes = settings_changes(read_checkpoint(checkpoint)[1], settings, ignore)
        if changes:
            warnings.warn(
                f"{checkpoint} was made with other training settings ({describe_changes(changes)}); starting a new run",
                stacklevel=2,
            )
            checkpoint = None
    if checkpoint is None:
        shutil.rmtree(checkpoints_dir(run_dir), ignore_errors=True)
        for name in run_files:
            target = run_dir / name
            if target.is_dir():
                shutil.rmtree(target, ignore_errors=True)
            else:
                target.unlink(missing_ok=True)
    return checkpoint


def _as_json(data: Mapping[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(dict(data), default=str))


# --- the optimizer, schedule and random state every trainer saves beside its weights ------------------------------
OPTIMIZER_FILE = "optimizer.pt"


def rng_state() -> dict[str, Any]:
    """torch's random state: the CPU generator's and, where CUDA is up, every device's."""
    import torch

    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    """Put back what :func:`rng_state` returned (the CUDA part only where CUDA is up here too)."""
    import torch

    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_training_state(path: str | Path, optimizer, scheduler=None, **extra: Any) -> None:
    """What a resumed run needs besides its weights, in one file: the optimizer's and scheduler's state dicts, the
    random state (:func:`rng_state`) and ``extra`` state dicts of the trainer's own (plain values and tensors only,
    so that :func:`load_training_state` can read it with ``weights_only``)."""
    import torch

    torch.save(
        {
            "optimizer": optimizer.state_dict(),
            "scheduler": None if scheduler is None else scheduler.state_dict(),
            "rng": rng_state(),
            "extra": extra,
        },
        Path(path),
    )


def load_training_state(path: str | Path, optimizer, scheduler=None) -> dict[str, Any]:
    """Restore what :func:`save_training_state` wrote into ``optimizer``, ``scheduler`` and torch's random state, and
    return the ``extra`` state dicts. Read with ``weights_only`` (no code runs) onto the CPU; the optimizer moves its
    state to its parameters' device. Files of earlier versions (``torch_rng`` and extras at the top) load too."""
    import torch

    saved = torch.load(Path(path), map_location="cpu", weights_only=True)
    optimizer.load_state_dict(saved["optimizer"])
    schedule = saved.get("scheduler", saved.get("plateau"))
    if scheduler is not None:
        scheduler.load_state_dict(schedule)
    restore_rng(saved["rng"] if "rng" in saved else {"torch": saved["torch_rng"]})
    if "extra" in saved:
        return dict(saved["extra"])
    return {key: value for key, value in saved.items() if key not in ("optimizer", "scheduler", "plateau", "torch_rng")}
