"""Training the policy-value network on self-play positions from a :class:`~slmlab.mcts.replay.ReplayBuffer`.

Entry point: :func:`train_network`. Loss = cross-entropy of the masked policy against the visit-count
targets + ``value_weight`` × MSE of the value; AdamW, gradient clipping, warmup then cosine or linear
decay. A run folder holds:

- ``checkpoints/step-NNNNNN/`` — ``network.pt``, ``optimizer.pt`` (optimizer, scheduler, torch RNG) and
  ``trainer_state.json``, written atomically (:mod:`slmlab.checkpoints`); a later call continues from the
  newest one (the loop is :func:`slmlab.trainloop.train_loop`);
- ``metrics.jsonl`` — one JSON line per step: step, policy_loss, value_loss, total_loss, lr, grad_norm
  (the TensorBoard tags are loss/policy, loss/value, loss/total, lr, grad_norm);
- ``tensorboard/`` — TensorBoard event files;
- ``network.pt`` — the trained network (:func:`~slmlab.mcts.network.load_network` reads it).

The batch of step ``t`` is drawn with ``np.random.default_rng([seed, t])``: it depends on the seed, the
step and the buffer's contents only, so a resumed run draws the batches an uninterrupted one would.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from slmlab.checkpoints import OPTIMIZER_FILE, load_training_state, save_training_state
from slmlab.mcts.network import PolicyValueNet, masked_log_policy, save_network
from slmlab.mcts.replay import ReplayBuffer
from slmlab.mcts.spec import NETWORK_FILE, TrainSettings, network_dir
from slmlab.mcts.spec import SCHEDULES as SCHEDULES  # kept importable here
from slmlab.runlog import RUN_FILES, RunLog
from slmlab.settings import artifacts_root
from slmlab.trainloop import Checkpointing, train_loop

# settings that only say how long to train or how often to save; any other difference forbids a resume
_NOT_TRAJECTORY = ("steps", "schedule_steps", "checkpoint_every", "keep_checkpoints")
_LOGGED = {
    "policy_loss": "loss/policy",
    "value_loss": "loss/value",
    "total_loss": "loss/total",
    "lr": "lr",
    "grad_norm": "grad_norm",
}  # metrics.jsonl key -> TensorBoard tag


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


def _checkpointing(out_dir: Path, settings: TrainSettings, net: PolicyValueNet, optimizer, scheduler) -> Checkpointing:
    """Network + optimizer + scheduler + RNG per checkpoint; resumed only for the same network and the same
    settings, where the length of the run may differ but not the schedule's horizon."""

    def save_files(folder: Path) -> None:
        save_network(net, folder / NETWORK_FILE)
        save_training_state(folder / OPTIMIZER_FILE, optimizer, scheduler)

    def load_files(folder: Path) -> None:
        device = next(net.parameters()).device
        net.load_state_dict(torch.load(folder / NETWORK_FILE, map_location=device, weights_only=True)["state_dict"])
        load_training_state(folder / OPTIMIZER_FILE, optimizer, scheduler)

    record = asdict(settings) | {"horizon": settings.horizon, "network": asdict(net.config)}
    return Checkpointing(
        out_dir, record, save_files, load_files, keep=settings.keep_checkpoints, ignore=_NOT_TRAJECTORY, run_files=RUN_FILES
    )


# --- the loop -----------------------------------------------------------------------------------


def train_network(
    net: PolicyValueNet,
    buffer: ReplayBuffer,
    settings: TrainSettings = TrainSettings(),
    out_dir: str | Path | None = None,
    tensorboard: bool = True,
    progress: bool = True,
    resume: bool = True,
) -> TrainReport:
    """Train ``net`` in place on batches from ``buffer`` up to ``settings.steps`` and save it to
    ``out_dir/network.pt`` (``out_dir`` defaults to :func:`slmlab.mcts.spec.network_dir` of the mode's artifacts
    tree).

    With ``resume`` (the default) a folder holding a checkpoint of the same network and settings continues
    from its newest one — weights, optimizer, schedule and RNG — so the result equals an uninterrupted run's
    (given the same buffer contents). Ctrl+C writes a checkpoint before stopping.
    """
    out_dir = Path(out_dir) if out_dir is not None else network_dir(artifacts_root())
    out_dir.mkdir(parents=True, exist_ok=True)
    if buffer.feature_dim != net.config.feature_dim or buffer.num_actions != net.config.num_actions:
        raise ValueError(
            f"buffer rows ({buffer.feature_dim} features, {buffer.num_actions} actions) do not fit the "
            f"network ({net.config.feature_dim}, {net.config.num_actions})"
        )
    device = next(net.parameters()).device
    optimizer = torch.optim.AdamW(net.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(settings))
    torch.manual_seed(settings.seed)  # dropout draws from torch's global generator; a resume restores it
    log = RunLog(out_dir, _LOGGED, tensorboard)
    was_training = net.training
    net.train()
    try:
        run = train_loop(
            lambda step: _train_step(net, buffer, optimizer, scheduler, settings, step, device),
            settings.steps,
            _checkpointing(out_dir, settings, net, optimizer, scheduler),
            save_every=settings.checkpoint_every,
            callbacks=[log],
            resume=resume,
            progress=progress,
            desc="policy-value net",
        )
    finally:
        log.close()
        net.train(was_training)

    network_path = save_network(net, out_dir / NETWORK_FILE)
    last, nan = run.state.scalars, float("nan")
    return TrainReport(
        step=run.state.step,
        resumed_from=run.resumed_from,
        steps_run=run.state.step - run.resumed_from,
        policy_loss=last.get("policy_loss", nan),
        value_loss=last.get("value_loss", nan),
        total_loss=last.get("total_loss", nan),
        seconds=run.state.seconds,
        network_path=network_path,
        metrics_path=log.metrics_path,
        tensorboard_dir=log.tensorboard_dir if tensorboard else None,
        checkpoint=run.checkpoint,
    )


def _train_step(net, buffer: ReplayBuffer, optimizer, scheduler, settings: TrainSettings, step: int, device) -> dict[str, float]:
    """One optimiser step on the batch of 0-based ``step``; returns its scalars ("loss" is the total loss)."""
    batch = buffer.sample(settings.batch_size, np.random.default_rng([settings.seed, step]))
    batch = {name: tensor.to(device) for name, tensor in batch.items()}
    lr = scheduler.get_last_lr()[0]  # the rate this step uses
    losses = policy_value_loss(net, batch, settings.value_weight)
    optimizer.zero_grad(set_to_none=True)
    losses["total"].backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(net.parameters(), settings.grad_clip)  # the norm before clipping
    optimizer.step()
    scheduler.step()
    total = losses["total"].item()
    return {
        "loss": total,
        "policy_loss": losses["policy"].item(),
        "value_loss": losses["value"].item(),
        "total_loss": total,
        "lr": lr,
        "grad_norm": float(grad_norm),
    }
