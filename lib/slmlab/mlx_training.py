"""The MLX side of chapter 03: LoRA through mlx-lm's own trainer, saved in mlx-lm's stock layout.

Reached through :func:`slmlab.training.train_lora` with backend "mlx" (the default on Apple silicon).
mlx-lm checkpoints adapter weights only, so a resumed MLX run continues from the last saved weights with
a fresh optimizer; the torch path restores the optimizer and scheduler too.
"""

from __future__ import annotations

import re
import shutil
import types
from collections.abc import Sequence
from pathlib import Path

from slmlab.io import atomic_write_json
from slmlab.models import resolve_model


def _latest_mlx_checkpoint(out_dir: Path) -> tuple[int, Path] | None:
    found = []
    for path in out_dir.glob("*_adapters.safetensors"):
        match = re.fullmatch(r"(\d+)_adapters\.safetensors", path.name)
        if match:
            found.append((int(match[1]), path))
    return max(found) if found else None


def train_lora_mlx(data_dir, out_dir, model_name, config, resume=True, callbacks: Sequence = (), progress=True):
    """Train with mlx-lm's ``train_model`` on the same data and settings as the torch path."""
    import mlx_lm
    from mlx_lm.lora import CONFIG_DEFAULTS, train_model
    from mlx_lm.tuner.callbacks import TrainingCallback
    from mlx_lm.tuner.datasets import load_dataset

    from slmlab.training import TrainResult, TrainState, _emit, training_metrics

    out_dir, data_dir = Path(out_dir), Path(data_dir)
    base_dir = resolve_model(model_name)
    model, tokenizer = mlx_lm.load(str(base_dir))
    done = _latest_mlx_checkpoint(out_dir) if resume else None
    if not resume:
        shutil.rmtree(out_dir, ignore_errors=True)
    start_step = done[0] if done else 0
    state = TrainState(step=start_step, total_steps=config.steps)
    if start_step >= config.steps:
        raise ValueError(f"{out_dir} already holds a finished run of {start_step} steps; pass resume=False to start over")

    args = types.SimpleNamespace(**{**CONFIG_DEFAULTS, **{
        "model": str(base_dir), "data": str(data_dir), "train": True, "seed": config.seed,
        "num_layers": min(config.num_layers or len(model.layers), len(model.layers)), "batch_size": config.batch_size, "iters": config.steps - start_step,
        "val_batches": -1, "learning_rate": config.learning_rate, "steps_per_report": 1,
        "steps_per_eval": config.eval_every, "save_every": config.save_every, "adapter_path": str(out_dir),
        "resume_adapter_file": str(done[1]) if done else None, "max_seq_length": config.max_length,
        "mask_prompt": True, "optimizer": "adamw",
        "lora_parameters": {"rank": config.rank, "dropout": config.dropout, "scale": config.alpha / config.rank,
                            "keys": [f"self_attn.{m}" if m.endswith(("q_proj", "k_proj", "v_proj", "o_proj")) else f"mlp.{m}"
                                     for m in config.target_modules]},
    }})
    train_set, valid_set, _ = load_dataset(args, tokenizer)

    class Report(TrainingCallback):
        def on_train_loss_report(self, info: dict) -> None:
            state.step = start_step + info["iteration"]
            state.train_loss.append((state.step, float(info["train_loss"])))
            state.trained_tokens = int(info.get("trained_tokens", state.trained_tokens))
            rate = info.get("tokens_per_second") or 0
            state.seconds = state.trained_tokens / rate if rate else state.seconds
            _emit(callbacks, "step", state)

        def on_val_loss_report(self, info: dict) -> None:
            if info["iteration"] > 0:
                state.valid_loss.append((start_step + info["iteration"], float(info["val_loss"])))
                _emit(callbacks, "eval", state)

    train_model(args, model, train_set, valid_set, Report())
    state.step = config.steps
    metrics = training_metrics(state, config, model_name, base_dir, "mlx", truncated=0)
    metrics_path = atomic_write_json(out_dir / "training_metrics.json", metrics)
    _emit(callbacks, "end", state)
    return TrainResult(out_dir, state, start_step, 0, metrics_path)
