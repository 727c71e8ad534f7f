"""The MLX side of chapter 03: LoRA with mlx-lm's trainer, saved in mlx-lm's stock adapter layout.

Reached through :func:`slmlab.lora.training.train_lora` with backend "mlx" (the default on Apple silicon).
mlx-lm's own checkpoints hold adapter weights only; here each checkpoint also keeps the optimizer state
(which carries the learning-rate schedule's step) and the run's progress, and a resumed run skips the
batches already trained on, so it continues where it stopped, as the torch path does.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from slmlab.io import atomic_write_json
from slmlab.lora.training import (
    TrainConfig,
    TrainResult,
    TrainState,
    _emit,
    read_train_state,
    resumable_checkpoint,
    training_metrics,
    write_checkpoint,
)
from slmlab.models import resolve_model

ADAPTER_FILE = "adapters.safetensors"


def lora_parameters(config: TrainConfig) -> dict:
    """mlx-lm's ``lora_parameters`` for these settings (its ``scale`` is PEFT's alpha / r)."""
    keys = [f"mlp.{m}" if m in ("gate_proj", "up_proj", "down_proj") else f"self_attn.{m}" for m in config.target_modules]
    return {"rank": config.rank, "scale": config.alpha / config.rank, "dropout": config.dropout, "keys": keys}


def _schedule(config: TrainConfig):
    """Linear warm-up then cosine decay, like the torch path's scheduler."""
    import mlx.optimizers as optim

    warmup = min(config.warmup_steps, config.steps - 1)
    decay = optim.cosine_decay(config.learning_rate, max(config.steps - warmup, 1))
    if warmup <= 0:
        return decay
    return optim.join_schedules([optim.linear_schedule(0.0, config.learning_rate, warmup), decay], [warmup])


def _save_checkpoint(out_dir: Path, model, optimizer, state: TrainState, config: TrainConfig) -> Path:
    """Adapter weights + optimizer state (which carries the schedule's step), as one checkpoint."""
    import mlx.core as mx
    from mlx.utils import tree_flatten

    def write_weights(folder: Path) -> None:
        mx.save_safetensors(str(folder / ADAPTER_FILE), dict(tree_flatten(model.trainable_parameters())))
        mx.save_safetensors(str(folder / "optimizer.safetensors"), dict(tree_flatten(optimizer.state)))

    return write_checkpoint(out_dir, state, config, write_weights)


def _restore(checkpoint: Path, model, optimizer) -> TrainState:
    import mlx.core as mx
    from mlx.utils import tree_unflatten

    model.load_weights(str(checkpoint / ADAPTER_FILE), strict=False)
    optimizer.init(model.trainable_parameters())
    optimizer.state = tree_unflatten(list(mx.load(str(checkpoint / "optimizer.safetensors")).items()))
    return read_train_state(checkpoint)


def _mlx_adapter_config(config: TrainConfig, num_layers: int, base_dir: Path, data_dir: Path) -> dict:
    """adapter_config.json as ``mlx_lm.lora`` writes it (what ``mlx_lm.load(adapter_path=...)`` reads)."""
    return {
        "fine_tune_type": "lora", "num_layers": num_layers, "lora_parameters": lora_parameters(config),
        "model": str(base_dir), "data": str(data_dir), "iters": config.steps, "batch_size": config.batch_size,
        "learning_rate": config.learning_rate, "max_seq_length": config.max_length, "seed": config.seed,
        "mask_prompt": True,
    }


def train_lora_mlx(data_dir, out_dir, model_name, config: TrainConfig, resume=True, callbacks: Sequence = (), progress=True):
    """Train with mlx-lm's ``train`` on the same data and settings as the torch path; resumable."""
    import mlx.core as mx
    import mlx.optimizers as optim
    import mlx_lm
    from mlx_lm.tuner.callbacks import TrainingCallback
    from mlx_lm.tuner.datasets import CacheDataset, load_dataset
    from mlx_lm.tuner.trainer import TrainingArgs, iterate_batches, train
    from mlx_lm.tuner.utils import linear_to_lora_layers

    out_dir, data_dir = Path(out_dir), Path(data_dir)
    base_dir = resolve_model(model_name)
    model, tokenizer = mlx_lm.load(str(base_dir))
    model.freeze()
    mx.random.seed(config.seed)  # LoRA's A matrices start random
    num_layers = min(config.num_layers or len(model.layers), len(model.layers))
    linear_to_lora_layers(model, num_layers, lora_parameters(config))
    optimizer = optim.AdamW(learning_rate=_schedule(config))

    state = TrainState(total_steps=config.steps)
    checkpoint = resumable_checkpoint(out_dir, config, resume)
    if checkpoint is not None:
        state = _restore(checkpoint, model, optimizer)
    start = state.step
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "adapter_config.json", _mlx_adapter_config(config, num_layers, base_dir, data_dir))

    data_args = type("DataArgs", (), {"data": str(data_dir), "train": True, "test": False, "hf_dataset": None,
                                      "mask_prompt": True})()
    train_set, valid_set, _ = load_dataset(data_args, tokenizer)

    def resumed_batches(dataset, batch_size, max_seq_length, loop=False, seed=None, comm_group=None):
        # training (loop=True): the seeded batch order of an uninterrupted run, minus the batches already
        # trained on; validation (loop=False) passes straight through
        if not loop:
            yield from iterate_batches(dataset, batch_size, max_seq_length, loop=False, seed=seed, comm_group=comm_group)
            return
        batches = iterate_batches(dataset, batch_size, max_seq_length, loop=True, seed=config.seed, comm_group=comm_group)
        for _ in range(start):
            next(batches)
        yield from batches

    class Progress(TrainingCallback):
        def on_train_loss_report(self, info: dict) -> None:
            state.step = start + info["iteration"]
            state.train_loss.append((state.step, float(info["train_loss"])))
            state.trained_tokens += int(info["trained_tokens"]) - self.reported
            self.reported = int(info["trained_tokens"])
            rate = info.get("tokens_per_second") or 0
            state.seconds = state.trained_tokens / rate if rate else state.seconds
            if state.step % config.save_every == 0 or state.step == config.steps:
                _save_checkpoint(out_dir, model, optimizer, state, config)
                _emit(callbacks, "checkpoint", state)
            _emit(callbacks, "step", state)

        def on_val_loss_report(self, info: dict) -> None:
            if info["iteration"] > 0:
                state.valid_loss.append((start + info["iteration"], float(info["val_loss"])))
                _emit(callbacks, "eval", state)

    if start < config.steps:
        progress_callback = Progress()
        progress_callback.reported = 0
        args = TrainingArgs(
            batch_size=config.batch_size, iters=config.steps - start, val_batches=-1, steps_per_report=1,
            steps_per_eval=config.eval_every, steps_per_save=10**9, max_seq_length=config.max_length,
            adapter_file=str(out_dir / ADAPTER_FILE),
        )
        train(model, optimizer, CacheDataset(train_set), CacheDataset(valid_set), args=args,
              iterate_batches=resumed_batches, training_callback=progress_callback)
    else:
        shutil.copyfile(checkpoint / ADAPTER_FILE, out_dir / ADAPTER_FILE)
    metrics = training_metrics(state, config, model_name, base_dir, "mlx", truncated=0)
    metrics_path = atomic_write_json(out_dir / "training_metrics.json", metrics)
    _emit(callbacks, "end", state)
    return TrainResult(out_dir, state, start, 0, metrics_path)
