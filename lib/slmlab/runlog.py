"""A training run's step log: one JSON line per step in ``metrics.jsonl``, the same scalars in TensorBoard and,
when asked for, in Weights & Biases.

:class:`RunLog` is a :func:`slmlab.trainloop.train_loop` callback; a resumed run first drops what a killed run
logged past its last checkpoint, so the file and the event files hold each step once. W&B is an optional sink
(``pip install slmlab[wandb]``; ``SLMLAB_WANDB=1`` or a trainer's ``--wandb``): it logs into ``<run>/wandb`` in
whatever mode W&B is set to (``WANDB_MODE=offline`` keeps the run on disk for a later ``wandb sync``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from slmlab.errors import SlmLabError
from slmlab.io import atomic_write_text
from slmlab.settings import env_flag
from slmlab.trainloop import TrainState

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
WANDB_DIR = "wandb"  # W&B's own folder inside the run folder (``wandb/offline-run-*`` in offline mode)
WANDB_ENV = "SLMLAB_WANDB"
WANDB_PROJECT = "slmlab"
RUN_FILES = (TENSORBOARD_DIR, METRICS_FILE)  # what a fresh start removes (Checkpointing.run_files)


def add_wandb_option(parser) -> None:
    """``--wandb`` on a training command: its run log also goes to W&B (:func:`use_wandb_option` applies it)."""
    parser.add_argument(
        "--wandb", action="store_true", help=f"also log to Weights & Biases (as {WANDB_ENV}=1; pip install 'slmlab[wandb]')"
    )


def use_wandb_option(args) -> None:
    """Turn W&B logging on for this process and the ones it starts (torchrun workers) when ``--wandb`` was given."""
    if getattr(args, "wandb", False):
        os.environ[WANDB_ENV] = "1"


def wandb_wanted(flag: bool | None = None) -> bool:
    """Whether runs log to W&B: ``flag`` (a ``--wandb`` option) when given, else ``SLMLAB_WANDB``."""
    return env_flag(WANDB_ENV) if flag is None else bool(flag)


def start_wandb(run_dir: Path, step: int, config: Mapping | None = None):
    """A W&B run logging into ``run_dir/wandb``, named after the run folder; a clear error when W&B is missing."""
    try:
        import wandb  # optional: the run log never needs it unless asked for
    except ImportError as exc:
        raise SlmLabError(
            f"W&B logging was asked for ({WANDB_ENV}=1 or --wandb) but wandb is not installed: pip install 'slmlab[wandb]'"
        ) from exc
    folder = run_dir / WANDB_DIR
    folder.mkdir(parents=True, exist_ok=True)
    name = run_dir.resolve().name + (f"-from-{step}" if step else "")  # a resumed run is a second W&B run
    return wandb.init(project=WANDB_PROJECT, dir=str(folder), name=name, config=dict(config or {}), reinit="create_new")


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
    Rank 0 of a data-parallel run logs; the others pass ``enabled=False``. With ``wandb`` (default:
    :func:`wandb_wanted`) every scalar also goes to W&B under the same tag and step, ``config`` as the run's config.
    """

    def __init__(
        self,
        out_dir: str | Path,
        logged: Mapping[str, str],
        tensorboard: bool = True,
        eval_tag: str | None = None,
        enabled: bool = True,
        wandb: bool | None = None,
        config: Mapping | None = None,
    ):
        self.out_dir = Path(out_dir)
        self.metrics_path, self.tensorboard_dir = self.out_dir / METRICS_FILE, self.out_dir / TENSORBOARD_DIR
        self.logged, self.eval_tag, self.enabled = dict(logged), eval_tag, enabled
        self.tensorboard, self.file, self.writer = tensorboard, None, None
        self.wandb, self.config, self.wandb_run = wandb_wanted(wandb), config, None

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
        if self.wandb_run is not None:
            self.wandb_run.log({tag: record[key] for key, tag in tags.items() if key in record}, step=record["step"])

    def _open(self, step: int) -> None:
        self.metrics_path.parent.mkdir(parents=True, exist_ok=True)
        truncate_metrics(self.metrics_path, step)
        self.file = self.metrics_path.open("a", encoding="utf-8")
        if self.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops events a killed run logged after its last checkpoint (they will be logged again)
            self.writer = SummaryWriter(log_dir=str(self.tensorboard_dir), purge_step=step + 1 if step else None)
        if self.wandb:
            self.wandb_run = start_wandb(self.out_dir, step, self.config)

    def close(self) -> None:
        for handle in (self.file, self.writer):
            if handle is not None:
                handle.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()
        self.file = self.writer = self.wandb_run = None
