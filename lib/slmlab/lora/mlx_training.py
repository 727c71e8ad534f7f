"""The MLX side of chapter 03: LoRA trained with mlx-lm's pieces in the shared loop, saved in mlx-lm's stock layout.

Reached through :func:`slmlab.lora.training.train_lora` with backend "mlx" (the default on Apple silicon).
Each step is the one mlx-lm's ``train()`` takes (its batches, ``default_loss``, a compiled value-and-grad and
optimizer update), run inside :func:`slmlab.trainloop.train_loop`. A checkpoint holds the adapter weights and
the optimizer state (which carries the learning-rate schedule's step); a resumed run skips the batches already
trained on, so it continues where it stopped, as the torch path does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from functools import partial
from itertools import islice
from pathlib import Path
from types import SimpleNamespace

from slmlab.adapters import CONFIG_FILE, MLX_WEIGHTS
from slmlab.io import atomic_write_folder
from slmlab.lora.spec import NOT_TRAJECTORY, TrainConfig, training_metrics_in
from slmlab.models import resolve_model
from slmlab.trainloop import Callback, Checkpointing, LoopResult, train_loop, training_metrics

OPTIMIZER_STATE_FILE = "optimizer.safetensors"  # a checkpoint's optimizer state (it carries the schedule's step)


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


def _mlx_adapter_config(config: TrainConfig, num_layers: int, base_dir: Path, data_dir: Path) -> dict:
    """adapter_config.json as ``mlx_lm.lora`` writes it (what ``mlx_lm.load(adapter_path=...)`` reads), keys in its
    order."""
    return dict(
        fine_tune_type="lora",
        num_layers=num_layers,
        lora_parameters=lora_parameters(config),
        model=str(base_dir),
        data=str(data_dir),  # mlx-lm's own key: the data folder the adapter was trained on
        iters=config.steps,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        max_seq_length=config.max_length,
        seed=config.seed,
        mask_prompt=True,
    )


def _own_numpy_rng(batches: Iterator) -> Iterator:
    """Run a batch generator that draws from numpy's global RNG (mlx-lm's ``iterate_batches``) on a private copy
    of that RNG, so that nothing else drawing from it (mlx-lm's ``evaluate``) changes the batch order."""
    import numpy as np

    mine = None
    while True:
        outer = np.random.get_state()
        if mine is not None:
            np.random.set_state(mine)
        try:
            batch = next(batches)
        finally:
            mine = np.random.get_state()
            np.random.set_state(outer)
        yield batch


def _compiled_step(model, optimizer):
    """One optimizer step on a batch, compiled, as in mlx-lm's ``train()``: returns (loss, target tokens)."""
    import mlx.core as mx
    import mlx.nn as nn
    from mlx_lm.tuner.trainer import default_loss

    loss_value_and_grad = nn.value_and_grad(model, default_loss)
    state = [model.state, optimizer.state, mx.random.state]

    @partial(mx.compile, inputs=state, outputs=state)
    def step(batch, lengths):
        (loss, tokens), grad = loss_value_and_grad(model, batch, lengths)
        optimizer.update(model, grad)
        return loss, tokens

    return step, state


def train_lora_mlx(
    data_dir: str | Path,
    out_dir: str | Path,
    model_name: str,
    config: TrainConfig,
    resume: bool = True,
    callbacks: Sequence[Callback] = (),
    progress: bool = True,
) -> LoopResult:
    """Train with mlx-lm on the same data and settings as the torch path; resumable. Returns the loop's result
    (:func:`slmlab.lora.training.train_lora` turns it into its own)."""
    import mlx.core as mx
    import mlx.optimizers as optim
    import mlx_lm
    from mlx.utils import tree_flatten, tree_unflatten
    from mlx_lm.tuner.datasets import CacheDataset, load_dataset
    from mlx_lm.tuner.trainer import evaluate, iterate_batches
    from mlx_lm.tuner.utils import linear_to_lora_layers
    from mlx_lm.utils import maybe_set_recommended_wired_limit

    out_dir, data_dir = Path(out_dir), Path(data_dir)
    base_dir = resolve_model(model_name)
    model, tokenizer = mlx_lm.load(str(base_dir))
    model.freeze()
    mx.random.seed(config.seed)  # LoRA's A matrices start random
    num_layers = min(config.num_layers or len(model.layers), len(model.layers))
    linear_to_lora_layers(model, num_layers, lora_parameters(config))
    optimizer = optim.AdamW(learning_rate=_schedule(config))
    # the arguments mlx-lm's load_dataset reads from its command line
    data_args = SimpleNamespace(data=str(data_dir), train=True, test=False, hf_dataset=None, mask_prompt=True)
    train_set, valid_set, _ = (CacheDataset(split) for split in load_dataset(data_args, tokenizer))
    maybe_set_recommended_wired_limit()
    compiled = {}  # built at the first step: after a resume has replaced the optimizer state

    def train_step(index: int) -> dict[str, float]:
        if not compiled:
            compiled["step"], compiled["state"] = _compiled_step(model, optimizer)
            # the seeded batch order of an uninterrupted run, minus the batches already trained on
            batches = iterate_batches(train_set, config.batch_size, config.max_length, loop=True, seed=config.seed)
            compiled["batches"] = islice(_own_numpy_rng(batches), index, None)
            model.train()
        loss, tokens = compiled["step"](*next(compiled["batches"]))
        mx.eval(compiled["state"], loss, tokens)
        return {"loss": loss.item(), "tokens": int(tokens.item())}

    def valid_loss() -> float:
        loss = evaluate(model, valid_set, config.batch_size, num_batches=-1, max_seq_length=config.max_length)
        model.train()
        return loss

    def save_files(folder: Path) -> None:  # adapter weights + optimizer state (which carries the schedule's step)
        mx.save_safetensors(str(folder / MLX_WEIGHTS), dict(tree_flatten(model.trainable_parameters())))
        mx.save_safetensors(str(folder / OPTIMIZER_STATE_FILE), dict(tree_flatten(optimizer.state)))

    def load_files(folder: Path) -> None:
        model.load_weights(str(folder / MLX_WEIGHTS), strict=False)
        optimizer.init(model.trainable_parameters())
        optimizer.state = tree_unflatten(list(mx.load(str(folder / OPTIMIZER_STATE_FILE)).items()))

    def save_adapter(folder: Path) -> None:  # what mlx_lm.lora leaves: adapters.safetensors + adapter_config.json
        mx.save_safetensors(str(folder / MLX_WEIGHTS), dict(tree_flatten(model.trainable_parameters())))
        (folder / CONFIG_FILE).write_text(
            json.dumps(_mlx_adapter_config(config, num_layers, base_dir, data_dir), indent=2) + "\n", encoding="utf-8"
        )

    checkpointing = Checkpointing(
        out_dir, asdict(config), save_files, load_files, keep=config.keep_checkpoints, ignore=NOT_TRAJECTORY
    )
    return train_loop(
        train_step,
        config.steps,
        checkpointing,
        evaluate=valid_loss,
        eval_every=config.eval_every,
        save_every=config.save_every,
        callbacks=callbacks,
        resume=resume,
        progress=progress,
        desc="LoRA (mlx)",
        save_on_interrupt=False,  # as mlx-lm's own trainer: an interrupted run resumes from its last regular checkpoint
        finish=lambda state: atomic_write_folder(out_dir, save_adapter, merge=True),
        metrics=lambda state: training_metrics(
            state, config, model=model_name, base_model_dir=str(base_dir), backend="mlx", truncated_rows=0
        ),
        metrics_path=training_metrics_in(out_dir),
    )
