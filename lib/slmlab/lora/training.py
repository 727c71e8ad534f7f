"""Chapter 03: LoRA fine-tuning with checkpoints that resume exactly (PEFT on torch; mlx-lm on MLX).

Entry point: :func:`train_lora`. The adapter lands in ``adapters/patterns-lora/`` (:func:`slmlab.lora.spec.adapter_dir`)
in its backend's stock format (PEFT folder, or mlx-lm ``adapters.safetensors``) with ``training_metrics.json`` beside it.
"""

from __future__ import annotations

import json
import random
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from slmlab.adapters import PEFT_WEIGHTS, quiet_peft_deprecation
from slmlab.backends import select_backend
from slmlab.checkpoints import OPTIMIZER_FILE, load_training_state, save_training_state
from slmlab.checkpoints import latest_checkpoint as latest_checkpoint  # re-exported: chapter 03 reads it from here
from slmlab.errors import BackendError
from slmlab.io import atomic_write_folder
from slmlab.lora import spec
from slmlab.lora.datagen import load_split
from slmlab.lora.mlx_training import train_lora_mlx
from slmlab.lora.spec import NOT_TRAJECTORY
from slmlab.lora.spec import TrainConfig as TrainConfig  # re-exported: its home before the spec held it
from slmlab.models import DEFAULT_MODEL, resolve_model
from slmlab.settings import artifacts_root
from slmlab.trainloop import IGNORE_INDEX, Callback, Checkpointing, TrainState, train_loop, training_metrics

if TYPE_CHECKING:
    import torch


# --- data ---------------------------------------------------------------------------------------


def encode_rows(tokenizer, rows: Sequence[dict], max_length: int) -> tuple[list[tuple[list[int], list[int]]], int]:
    """Token ids and labels (prompt masked) per row, plus how many rows were truncated to ``max_length``."""
    encoded, truncated = [], 0
    for row in rows:
        messages = row["messages"]
        full = tokenizer.apply_chat_template(messages, tokenize=False)
        prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
        ids = tokenizer(full, add_special_tokens=False)["input_ids"]
        n_prompt = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        # drop the template's trailing newline after the end-of-turn token: nothing to learn there
        while ids and ids[-1] != tokenizer.eos_token_id and len(ids) > n_prompt + 1:
            ids = ids[:-1]
        labels = [IGNORE_INDEX] * n_prompt + ids[n_prompt:]
        if len(ids) > max_length:
            truncated += 1
            ids, labels = ids[:max_length], labels[:max_length]
        encoded.append((ids, labels))
    return encoded, truncated


def length_grouped_batches(lengths: Sequence[int], batch_size: int, seed: int) -> list[list[int]]:
    """Batches of similar length (little padding), in a seeded random order.

    Written by hand: transformers' length grouping lives inside its Trainer's sampler and is not usable
    from a plain loop.
    """
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * 16
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def batch_schedule(lengths: Sequence[int], config: TrainConfig) -> list[list[int]]:
    """The batch of every step: epochs of length-grouped batches, each epoch reseeded; a pure function."""
    schedule: list[list[int]] = []
    epoch = 0
    while len(schedule) < config.steps:
        schedule += length_grouped_batches(lengths, config.batch_size, config.seed * 1000 + epoch)
        epoch += 1
    return schedule[: config.steps]


def collate(examples: Sequence[tuple[list[int], list[int]]], pad_id: int):
    """Right-padded tensors: input_ids, attention_mask, labels."""
    import torch

    width = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, (ids, labs) in enumerate(examples):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(labs)] = torch.tensor(labs)
        mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def completion_loss(model, batch) -> "torch.Tensor":
    """Mean cross-entropy over answer tokens, projecting only those positions onto the vocabulary.

    Written by hand: the stock causal-LM loss computes logits for every position, prompt and padding
    included; with a 49k vocabulary that output layer is a large share of each step on a CPU.
    """
    import torch.nn.functional as F

    network = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = network.get_decoder()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    targets = batch["labels"][:, 1:]
    keep = targets != IGNORE_INDEX
    logits = network.get_output_embeddings()(hidden[:, :-1][keep])
    return F.cross_entropy(logits.float(), targets[keep])


# --- the torch loop -----------------------------------------------------------------------------


class _PlainRows:
    """Padded batches of whole rows through the whole model: the step when ``fast_step`` is off or unusable."""

    def __init__(self, encoded, pad_id: int) -> None:
        self.encoded, self.pad_id = encoded, pad_id

    def loss(self, model, indices: Sequence[int]):
        return completion_loss(model, collate([self.encoded[i] for i in indices], self.pad_id))

    def batch_tokens(self, indices: Sequence[int]) -> int:
        return sum(len(self.encoded[i][0]) for i in indices)

    def answer_tokens(self, indices: Sequence[int]) -> int:
        return sum(label != IGNORE_INDEX for i in indices for label in self.encoded[i][1][1:])


def _batches_for(model, encoded, pad_id: int, config: TrainConfig):
    """What computes a batch's loss: the frozen-layer and prefix cache, or plain padded rows."""
    # lazy: fast_step imports torch at module level; slmlab.lora and the CLI stay free of torch until a run
    from slmlab.lora.fast_step import FrozenPrefixCache, supports_layer_slicing

    if config.fast_step and encoded and supports_layer_slicing(model):
        return FrozenPrefixCache(model, encoded)
    return _PlainRows(encoded, pad_id)


def _valid_loss(model, batches, rows: int, batch_size: int) -> float:
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, rows, batch_size):
            indices = list(range(start, min(start + batch_size, rows)))
            n = batches.answer_tokens(indices)
            total += float(batches.loss(model, indices)) * n
            count += n
    model.train()
    return total / max(count, 1)


def default_adapter_dir(quick: bool | None = None) -> Path:
    """``adapters/patterns-lora`` of the full or quick artifacts tree (:func:`~slmlab.settings.artifacts_root`;
    ``quick`` defaults to ``SLMLAB_QUICK``): where the notebooks and ``slmlab train`` / ``eval`` put it."""
    return spec.adapter_dir(artifacts_root(quick))


@dataclass
class TrainResult:
    adapter_dir: Path
    state: TrainState
    resumed_from: int
    truncated: int
    metrics_path: Path


def train_lora(
    data_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    model: str = DEFAULT_MODEL,
    config: TrainConfig | None = None,
    backend: str = "auto",
    resume: bool = True,
    callbacks: Sequence[Callback] = (),
    progress: bool = True,
) -> TrainResult:
    """Train a LoRA adapter on ``data_dir/{train,valid}.jsonl`` with ``config`` (None: the defaults) and save it to
    ``out_dir``.

    The folders default to ``data/`` and ``adapters/patterns-lora`` of the artifacts tree
    (:func:`~slmlab.settings.artifacts_root`). With ``resume`` (the default) a run folder holding checkpoints
    continues from the newest one, with the same optimizer, scheduler and data order, so an interrupted run ends
    where an uninterrupted one would have. ``backend`` "auto" picks mlx-lm on Apple silicon and PEFT on torch
    elsewhere.
    """
    chosen = select_backend(backend)
    if chosen == "llamacpp":
        raise BackendError(
            "The llamacpp backend is for inference only: train with backend='torch' (or 'mlx'), then "
            "load the adapter on llamacpp with load_model(..., backend='llamacpp', adapter=folder)."
        )
    data = Path(data_dir) if data_dir is not None else spec.data_dir(artifacts_root())
    out = Path(out_dir) if out_dir is not None else spec.adapter_dir(artifacts_root())
    config = config if config is not None else TrainConfig()
    if chosen == "mlx":
        run = train_lora_mlx(data, out, model, config, resume=resume, callbacks=callbacks, progress=progress)
        return TrainResult(out, run.state, run.resumed_from, 0, run.metrics_path)
    return _train_lora_torch(data, out, model, config, resume, callbacks, progress)


def peft_lora_config(config: TrainConfig, layers: int):
    """PEFT's LoraConfig for these settings, on the last ``config.num_layers`` of ``layers`` layers."""
    from peft import LoraConfig

    tail = min(config.num_layers or layers, layers)
    return LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=list(config.target_modules),
        task_type="CAUSAL_LM",
        layers_to_transform=list(range(layers - tail, layers)) if tail < layers else None,
    )


def _peft_model(base, config: TrainConfig):
    """PEFT's LoRA model on ``base``, without the FutureWarning PEFT triggers on transformers 5."""
    from peft import get_peft_model

    with quiet_peft_deprecation():
        return get_peft_model(base, peft_lora_config(config, base.config.num_hidden_layers))


def _train_lora_torch(data_dir, out_dir, model_name, config, resume, callbacks, progress) -> TrainResult:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, get_cosine_schedule_with_warmup

    torch.manual_seed(config.seed)
    base_dir = resolve_model(model_name)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    train_rows, valid_rows = load_split(data_dir, "train"), load_split(data_dir, "valid")
    train, truncated = encode_rows(tokenizer, train_rows, config.max_length)
    valid, _ = encode_rows(tokenizer, valid_rows, config.max_length)
    if truncated:
        warnings.warn(
            f"{truncated} of {len(train)} training rows were longer than max_length={config.max_length} "
            "tokens and were truncated",
            stacklevel=2,
        )

    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    model = _peft_model(base, config)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate)
    scheduler = get_cosine_schedule_with_warmup(optimizer, config.warmup_steps, config.steps)
    schedule = batch_schedule([len(ids) for ids, _ in train], config)
    train_batches, valid_batches = _batches_for(model, train, pad_id, config), _batches_for(model, valid, pad_id, config)

    def train_step(index: int) -> dict[str, float]:
        loss = train_batches.loss(model, schedule[index])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        return {"loss": loss.item(), "tokens": train_batches.batch_tokens(schedule[index])}

    def save_files(folder: Path) -> None:  # PEFT adapter + optimizer + scheduler + torch RNG
        model.save_pretrained(folder)
        save_training_state(folder / OPTIMIZER_FILE, optimizer, scheduler)

    def load_files(folder: Path) -> None:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(model, load_file(folder / PEFT_WEIGHTS))
        load_training_state(folder / OPTIMIZER_FILE, optimizer, scheduler)

    checkpointing = Checkpointing(
        out_dir, asdict(config), save_files, load_files, keep=config.keep_checkpoints, ignore=NOT_TRAJECTORY
    )
    run = train_loop(
        train_step,
        config.steps,
        checkpointing,
        evaluate=lambda: _valid_loss(model, valid_batches, len(valid), config.batch_size),
        eval_every=config.eval_every,
        save_every=config.save_every,
        callbacks=callbacks,
        resume=resume,
        progress=progress,
        desc="LoRA",
        finish=lambda state: atomic_write_folder(out_dir, model.save_pretrained, merge=True),  # the stock PEFT folder
        metrics=lambda state: training_metrics(
            state, config, model=model_name, base_model_dir=str(base_dir), backend="torch", truncated_rows=truncated
        ),
        metrics_path=spec.training_metrics_in(out_dir),
    )
    return TrainResult(out_dir, run.state, run.resumed_from, truncated, run.metrics_path)


def benchmark_summary(path: str | Path | None = None) -> dict:
    """The LoRA training benchmark's figures (``results/benchmarks/lora.json`` of the full artifacts tree), or the
    command that makes them when it has not run."""
    path = Path(path) if path else spec.benchmark_results(artifacts_root(quick=False))
    if not path.is_file():
        return {"benchmark": "not run", "command": spec.BENCHMARK_COMMAND}
    data = json.loads(path.read_text(encoding="utf-8"))
    return {
        "slmlab tokens/s": data["slmlab"]["tokens_per_s"],
        "plain step tokens/s": data.get("slmlab_plain_step", {}).get("tokens_per_s"),
        "TRL tokens/s": data["trl_sfttrainer_peft"]["tokens_per_s"],
        "ratio": data["ratio"],
        "goal": data["goal"]["ratio"],
        "steps": data["settings"]["steps"],
        "created": data["created"],
        "source": str(path),
    }
