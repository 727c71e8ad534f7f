"""Training the policy-value network on self-play positions from a :class:`~slmlab.mcts.replay.ReplayBuffer`.

Entry point: :func:`train_network`. Loss = cross-entropy of the masked policy against the visit-count
targets + ``value_weight`` × MSE of the value; AdamW, gradient clipping, warmup then cosine or linear
decay. A run folder holds:

- ``checkpoints/step-NNNNNN/`` — ``network.pt``, ``optimizer.pt`` (optimizer, scheduler, torch RNG) and
  ``trainer_state.json``, written atomically (:func:`slmlab.lora.training.write_checkpoint`); a later call
  continues from the newest one;
- ``metrics.jsonl`` — one JSON line per step: step, policy_loss, value_loss, total_loss, lr, grad_norm
  (the TensorBoard tags are loss/policy, loss/value, loss/total, lr, grad_norm);
- ``tensorboard/`` — TensorBoard event files;
- ``network.pt`` — the trained network (:func:`~slmlab.mcts.network.load_network` reads it).

The batch of step ``t`` is drawn with ``np.random.default_rng([seed, t])``: it depends on the seed, the
step and the buffer's contents only, so a resumed run draws the batches an uninterrupted one would.
"""

from __future__ import annotations

import json
import math
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from slmlab.io import atomic_write_text
from slmlab.lora.training import latest_checkpoint, write_checkpoint
from slmlab.mcts.network import PolicyValueNet, masked_log_policy, save_network
from slmlab.mcts.replay import ReplayBuffer

SCHEDULES = ("cosine", "linear", "constant")
# settings that only say how long to train or how often to save; any other difference forbids a resume
_NOT_TRAJECTORY = ("steps", "schedule_steps", "checkpoint_every", "keep_checkpoints")


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings for :func:`train_network`.

    ``steps`` is the global step to train up to (a resumed run only adds the missing ones). The learning
    rate warms up linearly over ``warmup_steps``, then decays (``schedule``) to 0 at ``schedule_steps``
    (default: ``steps``). To grow a run in stages — e.g. train between self-play rounds — set
    ``schedule_steps`` to the final total and raise ``steps`` from call to call: every stage then follows
    the one schedule, exactly as a single uninterrupted run would.
    """

    steps: int = 500
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    warmup_steps: int = 20
    schedule: str = "cosine"
    schedule_steps: int | None = None
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    seed: int = 0
    value_weight: float = 1.0

    def __post_init__(self) -> None:
        checks = {
            "steps": self.steps >= 0,
            "batch_size": self.batch_size >= 1,
            "learning_rate": self.learning_rate > 0,
            "weight_decay": self.weight_decay >= 0,
            "grad_clip": self.grad_clip > 0,
            "warmup_steps": self.warmup_steps >= 0,
            "schedule": self.schedule in SCHEDULES,
            "schedule_steps": self.schedule_steps is None or self.schedule_steps >= self.steps,
            "checkpoint_every": self.checkpoint_every >= 1,
            "keep_checkpoints": self.keep_checkpoints >= 1,
            "value_weight": self.value_weight >= 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"TrainSettings.{name} is out of range: {getattr(self, name)!r}")

    @property
    def horizon(self) -> int:
        """The step at which the learning rate reaches the end of its decay."""
        return self.schedule_steps if self.schedule_steps is not None else self.steps


def lr_factor(settings: TrainSettings) -> Callable[[int], float]:
    """The multiplier of the base learning rate for the 0-based step about to be taken."""

    def factor(step: int) -> float:
        if step < settings.warmup_steps:
            return (step + 1) / settings.warmup_steps  # the first step already learns a little
        progress = min(max((step - settings.warmup_steps) / max(1, settings.horizon - settings.warmup_steps), 0.0), 1.0)
        if settings.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0 - progress if settings.schedule == "linear" else 1.0

    return factor


def policy_value_loss(net: PolicyValueNet, batch: dict[str, torch.Tensor], value_weight: float = 1.0) -> dict[str, torch.Tensor]:
    """policy (cross-entropy against the targets, illegal logits excluded), value (MSE) and total."""
    logits, value = net(batch["features"])
    target = batch["policy"] * batch["mask"]  # no target mass may sit where the policy has none
    policy = -(target * masked_log_policy(logits, batch["mask"])).sum(dim=-1).mean()
    value_loss = torch.nn.functional.mse_loss(value, batch["value"])
    return {"policy": policy, "value": value_loss, "total": policy + value_weight * value_loss}


@dataclass
class LoopState:
    """What a checkpoint records besides the tensors."""

    step: int = 0
    seconds: float = 0.0
    network: dict[str, Any] = field(default_factory=dict)  # the net's config, checked on resume


@dataclass
class TrainReport:
    """The outcome of :func:`train_network`; losses are NaN when no step ran in this call."""

    step: int
    resumed_from: int
    steps_run: int
    policy_loss: float
    value_loss: float
    total_loss: float
    seconds: float
    network_path: Path
    metrics_path: Path
    tensorboard_dir: Path | None
    checkpoint: Path | None


# --- checkpoints --------------------------------------------------------------------------------


def _trajectory(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings that shape the weights' path, with the schedule horizon resolved."""
    horizon = settings["schedule_steps"] if settings.get("schedule_steps") is not None else settings["steps"]
    return {k: v for k, v in settings.items() if k not in _NOT_TRAJECTORY} | {"horizon": horizon}


def _resumable(out_dir: Path, settings: TrainSettings, net: PolicyValueNet, resume: bool) -> Path | None:
    """The checkpoint to continue from, or None (after clearing the folder's old run) for a fresh start."""
    checkpoint = latest_checkpoint(out_dir) if resume else None
    if checkpoint is not None:
        saved = json.loads((checkpoint / "trainer_state.json").read_text())
        same_net = saved["state"]["network"] == json.loads(json.dumps(asdict(net.config)))
        if not same_net or _trajectory(saved["config"]) != _trajectory(json.loads(json.dumps(asdict(settings)))):
            warnings.warn(f"{checkpoint} was made with another network or other training settings; "
                          "starting a new run", stacklevel=3)
            checkpoint = None
    if checkpoint is None:  # one run per folder, so old curves and checkpoints cannot mix with the new
        shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
        shutil.rmtree(out_dir / "tensorboard", ignore_errors=True)
        (out_dir / "metrics.jsonl").unlink(missing_ok=True)
    return checkpoint


def _save_checkpoint(out_dir: Path, net, optimizer, scheduler, state: LoopState, settings: TrainSettings) -> Path:
    def write_weights(folder: Path) -> None:
        save_network(net, folder / "network.pt")
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng},
                   folder / "optimizer.pt")

    return write_checkpoint(out_dir, state, settings, write_weights)


def _restore_checkpoint(checkpoint: Path, net, optimizer, scheduler) -> LoopState:
    device = next(net.parameters()).device
    weights = torch.load(checkpoint / "network.pt", map_location=device, weights_only=True)
    net.load_state_dict(weights["state_dict"])
    saved = torch.load(checkpoint / "optimizer.pt", map_location="cpu", weights_only=True)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    torch.set_rng_state(saved["rng"]["torch"])
    if "cuda" in saved["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(saved["rng"]["cuda"])
    return LoopState(**json.loads((checkpoint / "trainer_state.json").read_text())["state"])


# --- metrics ---------------------------------------------------------------------------------------


def read_metrics(path: str | Path) -> list[dict[str, float]]:
    """The records of a ``metrics.jsonl`` (or of the run folder holding one), in step order."""
    path = Path(path)
    path = path / "metrics.jsonl" if path.is_dir() else path
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    return [json.loads(line) for line in lines if line.strip()]


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop lines past ``step``: a run killed after its last checkpoint logged steps that will run again."""
    if path.exists():
        kept = [json.dumps(r) + "\n" for r in read_metrics(path) if r["step"] <= step]
        atomic_write_text(path, "".join(kept))


# --- the loop -----------------------------------------------------------------------------------


def train_network(
    net: PolicyValueNet,
    buffer: ReplayBuffer,
    settings: TrainSettings = TrainSettings(),
    out_dir: str | Path = "results/mcts/network",
    tensorboard: bool = True,
    progress: bool = True,
    resume: bool = True,
) -> TrainReport:
    """Train ``net`` in place on batches from ``buffer`` up to ``settings.steps`` and save it to
    ``out_dir/network.pt``.

    With ``resume`` (the default) a folder holding a checkpoint of the same network and settings continues
    from its newest one — weights, optimizer, schedule and RNG — so the result equals an uninterrupted run's
    (given the same buffer contents). Ctrl+C writes a checkpoint before stopping.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if buffer.feature_dim != net.config.feature_dim or buffer.num_actions != net.config.num_actions:
        raise ValueError(f"buffer rows ({buffer.feature_dim} features, {buffer.num_actions} actions) do not fit the "
                         f"network ({net.config.feature_dim}, {net.config.num_actions})")
    device = next(net.parameters()).device
    optimizer = torch.optim.AdamW(net.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(settings))
    checkpoint = _resumable(out_dir, settings, net, resume)
    if checkpoint is not None:
        state = _restore_checkpoint(checkpoint, net, optimizer, scheduler)
    else:
        torch.manual_seed(settings.seed)  # dropout draws from torch's global generator
        state = LoopState(network=asdict(net.config))
    resumed_from = state.step
    metrics_path = out_dir / "metrics.jsonl"
    _truncate_metrics(metrics_path, state.step)
    writer = _summary_writer(out_dir / "tensorboard", state.step) if tensorboard else None

    was_training, last = net.training, {}
    net.train()
    bar = tqdm(total=settings.steps, initial=min(state.step, settings.steps), desc="policy-value net",
               unit="step", disable=not progress)
    try:
        with metrics_path.open("a", encoding="utf-8") as log:
            while state.step < settings.steps:
                start = time.perf_counter()
                last = _train_step(net, buffer, optimizer, scheduler, settings, state.step, device)
                state.step += 1
                state.seconds += time.perf_counter() - start
                _log(log, writer, state.step, last)
                bar.update(1)
                bar.set_postfix(loss=f"{last['total_loss']:.3f}")
                if state.step % settings.checkpoint_every == 0 or state.step == settings.steps:
                    checkpoint = _save_checkpoint(out_dir, net, optimizer, scheduler, state, settings)
    except KeyboardInterrupt:
        if state.step > resumed_from:
            _save_checkpoint(out_dir, net, optimizer, scheduler, state, settings)
        raise
    finally:
        bar.close()
        if writer is not None:
            writer.close()
        net.train(was_training)

    network_path = save_network(net, out_dir / "network.pt")
    nan = float("nan")
    return TrainReport(
        step=state.step, resumed_from=resumed_from, steps_run=state.step - resumed_from,
        policy_loss=last.get("policy_loss", nan), value_loss=last.get("value_loss", nan),
        total_loss=last.get("total_loss", nan), seconds=state.seconds, network_path=network_path,
        metrics_path=metrics_path, tensorboard_dir=out_dir / "tensorboard" if tensorboard else None,
        checkpoint=latest_checkpoint(out_dir),
    )


def _train_step(net, buffer: ReplayBuffer, optimizer, scheduler, settings: TrainSettings, step: int, device) -> dict[str, float]:
    """One optimiser step on the batch of 0-based ``step``; returns its scalars."""
    batch = buffer.sample(settings.batch_size, np.random.default_rng([settings.seed, step]))
    batch = {name: tensor.to(device) for name, tensor in batch.items()}
    lr = scheduler.get_last_lr()[0]  # the rate this step uses
    losses = policy_value_loss(net, batch, settings.value_weight)
    optimizer.zero_grad(set_to_none=True)
    losses["total"].backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(net.parameters(), settings.grad_clip)  # the norm before clipping
    optimizer.step()
    scheduler.step()
    return {
        "policy_loss": losses["policy"].item(), "value_loss": losses["value"].item(),
        "total_loss": losses["total"].item(), "lr": lr, "grad_norm": float(grad_norm),
    }


def _summary_writer(log_dir: Path, step: int):
    from torch.utils.tensorboard import SummaryWriter

    # purge_step drops events a killed run logged after its last checkpoint (they will be logged again)
    return SummaryWriter(log_dir=str(log_dir), purge_step=step + 1 if step else None)


def _log(log, writer, step: int, scalars: dict[str, float]) -> None:
    log.write(json.dumps({"step": step, **scalars}) + "\n")
    log.flush()  # a notebook may plot the file while training runs
    if writer is not None:
        for key, tag in (("policy_loss", "loss/policy"), ("value_loss", "loss/value"), ("total_loss", "loss/total"),
                         ("lr", "lr"), ("grad_norm", "grad_norm")):
            writer.add_scalar(tag, scalars[key], step)
