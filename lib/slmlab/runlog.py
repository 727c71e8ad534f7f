"""A training run's step log: one JSON line per step in ``metrics.jsonl`` and the same scalars in TensorBoard.

:class:`RunLog` is a :func:`slmlab.trainloop.train_loop` callback; a resumed run first drops what a killed run
logged past its last checkpoint, so the file and the event files hold each step once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from slmlab.io import atomic_write_text
from slmlab.trainloop import TrainState

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
RUN_FILES = (TENSORBOARD_DIR, METRICS_FILE)  # what a fresh start removes (Checkpointing.run_files)


def read_metrics(path: str | Path) -> list[dict[str, float]]:
    """The records of a ``metrics.jsonl`` (or of the run folder holding one), in step order."""
    path = Path(path)
    path = path / METRICS_FILE if path.is_dir() else path
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    return [json.loads(line) for line in lines if line.strip()]


def truncate_metrics(path: Path, step: int) -> None:
    """Drop lines past ``step``: a run killed after its last checkpoint logged steps that will run again."""
    if path.exists():
        kept = [json.dumps(r) + "\n" for r in read_metrics(path) if r["step"] <= step]
        atomic_write_text(path, "".join(kept))


class RunLog:
    """The loop callback that appends each step's scalars to ``metrics.jsonl`` and TensorBoard.

    ``logged`` maps a step-function scalar to its TensorBoard tag; with ``eval_tag`` each evaluation adds a
    line ``{"step", "valid_loss"}`` and that scalar. Opened at the first event, when the step the run continues
    from is known: lines a killed run logged past its last checkpoint are dropped (they will be logged again).
    Rank 0 of a data-parallel run logs; the others pass ``enabled=False``.
    """

    def __init__(
        self,
        out_dir: str | Path,
        logged: Mapping[str, str],
        tensorboard: bool = True,
        eval_tag: str | None = None,
        enabled: bool = True,
    ):
        out_dir = Path(out_dir)
        self.metrics_path, self.tensorboard_dir = out_dir / METRICS_FILE, out_dir / TENSORBOARD_DIR
        self.logged, self.eval_tag, self.enabled = dict(logged), eval_tag, enabled
        self.tensorboard, self.file, self.writer = tensorboard, None, None

    def __call__(self, event: str, state: TrainState) -> None:
        if not self.enabled:
            return
        if self.file is None:
            self._open(state.step - 1 if event == "step" else state.step)
        if event == "step":
            self._write(
                {"step": state.step, **{key: state.scalars[key] for key in self.logged if key in state.scalars}}, self.logged
            )
        elif event == "eval" and self.eval_tag is not None:
            self._write({"step": state.step, "valid_loss": state.valid_loss[-1][1]}, {"valid_loss": self.eval_tag})

    def _write(self, record: dict, tags: Mapping[str, str]) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()  # a notebook may plot the file while training runs
        if self.writer is not None:
            for key, tag in tags.items():
                if key in record:
                    self.writer.add_scalar(tag, record[key], record["step"])
            self.writer.flush()

    def _open(self, step: int) -> None:
        self.metrics_path.parent.mkdir(parents=True, exist_ok=True)
        truncate_metrics(self.metrics_path, step)
        self.file = self.metrics_path.open("a", encoding="utf-8")
        if self.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops events a killed run logged after its last checkpoint (they will be logged again)
            self.writer = SummaryWriter(log_dir=str(self.tensorboard_dir), purge_step=step + 1 if step else None)

    def close(self) -> None:
        for handle in (self.file, self.writer):
            if handle is not None:
                handle.close()
        self.file = self.writer = None
