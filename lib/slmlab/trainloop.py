"""The training loop every trainer shares: resume, steps under a progress bar, evaluation, checkpoints, Ctrl+C.

A trainer brings a step function (and optionally an evaluation) and says what its checkpoints hold; the loop
reports through callbacks ``(event, state)`` with the events "step", "eval", "checkpoint" and "end".
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from slmlab.checkpoints import latest_checkpoint, read_checkpoint, resumable_checkpoint, write_checkpoint
from slmlab.io import atomic_write_json


@dataclass
class TrainState:
    """What the callbacks see, and (all but ``scalars``) what a checkpoint restores."""

    step: int = 0
    total_steps: int = 0
    train_loss: list[tuple[int, float]] = field(default_factory=list)
    valid_loss: list[tuple[int, float]] = field(default_factory=list)
    trained_tokens: int = 0
    seconds: float = 0.0
    scalars: dict[str, float] = field(default_factory=dict)  # what the latest step of this call returned

    @property
    def tokens_per_second(self) -> float:
        return self.trained_tokens / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The saved part of the state, as plain JSON values."""
        saved = dataclasses.asdict(self)
        del saved["scalars"]
        return saved

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainState:
        known = {f.name for f in dataclasses.fields(cls)} - {"scalars"}
        state = cls(**{key: value for key, value in data.items() if key in known})
        state.train_loss = [tuple(pair) for pair in state.train_loss]
        state.valid_loss = [tuple(pair) for pair in state.valid_loss]
        return state


IGNORE_INDEX = -100  # the label value causal-LM losses skip (prompt tokens, padding): transformers' and torch's default


def training_metrics(state: TrainState, config: Any, **extra: Any) -> dict[str, Any]:
    """What every trainer writes to ``training_metrics.json`` at the end of a run: steps, final losses, tokens,
    seconds and speed, then the trainer's ``extra`` figures, then the loss curves and the config (a dataclass)."""
    final = {
        name: points[-1][1] if points else math.nan for name, points in (("train", state.train_loss), ("valid", state.valid_loss))
    }
    return {
        "steps": state.step,
        "final_train_loss": final["train"],
        "final_valid_loss": final["valid"],
        "trained_tokens": state.trained_tokens,
        "train_seconds": round(state.seconds, 2),
        "tokens_per_second": round(state.tokens_per_second, 1),
        **extra,
        "train_loss": state.train_loss,
        "valid_loss": state.valid_loss,
        "config": dataclasses.asdict(config),
    }


Callback = Callable[[str, TrainState], None]  # (event, state); events: "step", "eval", "checkpoint", "end"


class StopRequested(KeyboardInterrupt):
    """Raised by a callback to end a run cleanly (a notebook's Stop button): the loop checkpoints, as on Ctrl+C."""


def stop_when(event: threading.Event) -> Callback:
    """A callback that stops the run after the step during which ``event`` was set (from another thread)."""

    def check(name: str, state: TrainState) -> None:
        if name == "step" and event.is_set():
            raise StopRequested(f"stopped at step {state.step}")

    return check


StepFunction = Callable[[int], Mapping[str, float]]  # trains 0-based step i; returns {"loss", optional "tokens", ...}


@dataclass(frozen=True)
class Checkpointing:
    """Where a trainer's checkpoints go, what they hold besides the state, and which settings must match."""

    run_dir: Path
    settings: Mapping[str, Any]
    save_files: Callable[[Path], None]  # write the trainer's tensors (weights, optimizer, RNG) into a folder
    load_files: Callable[[Path], None]  # and read them back
    keep: int = 2
    ignore: tuple[str, ...] = ()  # settings that do not change what is trained: not compared on resume
    run_files: tuple[str, ...] = ()  # the run's logs, removed with the checkpoints on a fresh start

    def save(self, state: TrainState) -> Path:
        return write_checkpoint(self.run_dir, state.step, state.to_dict(), dict(self.settings), self.save_files, self.keep)

    def restore(self, resume: bool) -> TrainState | None:
        """The state of the checkpoint to continue from (its files loaded), or None for a fresh start."""
        checkpoint = resumable_checkpoint(self.run_dir, self.settings, resume, self.ignore, self.run_files)
        if checkpoint is None:
            return None
        self.load_files(checkpoint)
        return TrainState.from_dict(read_checkpoint(checkpoint)[0])


@dataclass
class LoopResult:
    state: TrainState
    resumed_from: int
    checkpoint: Path | None  # the newest checkpoint after the run
    metrics_path: Path | None
    stopped: bool = False  # ended early by StopRequested (a Stop button): ``state`` is the newest checkpoint's


def train_loop(
    step: StepFunction,
    total_steps: int,
    checkpointing: Checkpointing,
    evaluate: Callable[[], float] | None = None,
    eval_every: int = 0,
    save_every: int = 0,
    callbacks: Sequence[Callback] = (),
    resume: bool = True,
    progress: bool = True,
    desc: str = "train",
    save_on_interrupt: bool = True,
    finish: Callable[[TrainState], None] | None = None,
    metrics: Callable[[TrainState], dict] | None = None,
    metrics_path: Path | None = None,
    on_stop: Callable[[TrainState], None] | None = None,
) -> LoopResult:
    """Train up to global step ``total_steps``, continuing from the run folder's newest checkpoint.

    Evaluates every ``eval_every`` steps and checkpoints every ``save_every`` steps (0: never), and both at the
    last step. Ctrl+C (KeyboardInterrupt, also when a callback raises it) writes a checkpoint of the steps done,
    unless ``save_on_interrupt`` is off, and is raised again. At the end ``finish(state)`` writes the trainer's
    artifacts and ``metrics(state)`` goes to ``metrics_path`` as JSON, atomically, before the "end" event.

    A clean stop (:class:`StopRequested`, from a callback) with ``on_stop`` given is not raised: ``on_stop`` gets the
    state of the newest checkpoint (what a later call resumes from) to write what the run has so far, and the result
    says ``stopped``.
    """
    state = checkpointing.restore(resume) or TrainState()
    state.total_steps = total_steps
    resumed_from = saved_at = state.step
    bar = tqdm(total=total_steps, initial=min(state.step, total_steps), desc=desc, unit="step", disable=not progress)
    try:
        while state.step < total_steps:
            _take_step(step, state, bar)
            _emit(callbacks, "step", state)
            if evaluate is not None and _due(state.step, eval_every, total_steps):
                state.valid_loss.append((state.step, float(evaluate())))
                _emit(callbacks, "eval", state)
            if _due(state.step, save_every, total_steps):
                checkpointing.save(state)
                saved_at = state.step
                _emit(callbacks, "checkpoint", state)
    except KeyboardInterrupt as interrupt:
        if save_on_interrupt and state.step != saved_at:
            checkpointing.save(state)
        if on_stop is None or not isinstance(interrupt, StopRequested):
            raise
        stopped = state_of_latest(checkpointing.run_dir)
        on_stop(stopped)
        return LoopResult(stopped, resumed_from, latest_checkpoint(checkpointing.run_dir), None, stopped=True)
    finally:
        bar.close()
    if finish is not None:
        finish(state)
    if metrics is not None and metrics_path is not None:
        atomic_write_json(metrics_path, metrics(state))
    _emit(callbacks, "end", state)
    return LoopResult(state, resumed_from, latest_checkpoint(checkpointing.run_dir), metrics_path)


def state_of_latest(run_dir: Path) -> TrainState:
    """The state saved in a run folder's newest checkpoint (a fresh state when it has none)."""
    checkpoint = latest_checkpoint(run_dir)
    return TrainState.from_dict(read_checkpoint(checkpoint)[0]) if checkpoint else TrainState()


def _take_step(step: StepFunction, state: TrainState, bar) -> None:
    start = time.perf_counter()
    scalars = dict(step(state.step))
    state.seconds += time.perf_counter() - start
    state.step += 1
    state.scalars = scalars
    state.trained_tokens += int(scalars.get("tokens", 0))
    state.train_loss.append((state.step, float(scalars["loss"])))
    bar.update(1)
    postfix = {"loss": f"{scalars['loss']:.3f}"}
    if state.trained_tokens:
        postfix["tok_s"] = f"{state.tokens_per_second:.0f}"
    bar.set_postfix(postfix)


def _due(step: int, every: int, total_steps: int) -> bool:
    return step == total_steps or (every > 0 and step % every == 0)


def _emit(callbacks: Sequence[Callback], event: str, state: TrainState) -> None:
    for callback in callbacks:
        callback(event, state)
