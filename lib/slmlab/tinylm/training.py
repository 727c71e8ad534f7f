"""Chapter 07's trainer: pre-train the tiny decoder from zero on a prepared token folder, on one process or
data-parallel under ``torchrun`` (DDP), with the shared loop's checkpoints, resume and clean stop.

Entry point: :func:`train_lm`. The run folder is itself a model folder (``slmlab.load_model(run_dir)``) and holds
``checkpoints/step-NNNNNN/`` (each one a loadable model folder plus ``optimizer.pt``), ``metrics.jsonl``,
``tensorboard/`` and ``training_metrics.json``. AdamW with decoupled weight decay on the matrices only, linear
warmup then cosine decay to ``min_lr_ratio`` of the peak, gradient clipping; the gradient norm (before clipping)
and the learning rate are logged every step.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import get_cosine_with_min_lr_schedule_with_warmup

from slmlab.backends import torch_device
from slmlab.checkpoints import OPTIMIZER_FILE, latest_checkpoint, load_training_state, read_checkpoint, save_training_state
from slmlab.environment import peak_rss_mb
from slmlab.runlog import RUN_FILES, RunLog
from slmlab.settings import artifacts_root
from slmlab.spec import TRAINING_METRICS_FILE
from slmlab.tinylm import distributed, spec
from slmlab.tinylm.model import build_model, count_parameters, load_weights, save_model, save_model_files
from slmlab.tinylm.prepare import PreparedData, default_data_dir
from slmlab.tinylm.spec import NOT_TRAJECTORY as NOT_TRAJECTORY
from slmlab.tinylm.spec import PRECISIONS as PRECISIONS
from slmlab.tinylm.spec import LMTrainConfig as LMTrainConfig
from slmlab.tinylm.spec import ModelConfig as ModelConfig
from slmlab.tinylm.tokens import TokenLoader
from slmlab.trainloop import IGNORE_INDEX, Callback, Checkpointing, TrainState, stop_when, train_loop, training_metrics

LOGGED = {"loss": "loss/train", "perplexity": "perplexity/train", "lr": "lr", "grad_norm": "grad_norm"}
RECIPE = LMTrainConfig()  # the default recipe; frozen, so one instance is a safe default argument


@dataclass
class LMTrainResult:
    run_dir: Path
    state: TrainState
    resumed_from: int
    stopped: bool  # ended by a stop request (the newest checkpoint holds the steps done)
    parameters: int
    metrics_path: Path | None

    @property
    def final_valid_loss(self) -> float:
        return self.state.valid_loss[-1][1] if self.state.valid_loss else math.nan


def default_run_dir(quick: bool | None = None) -> Path:
    """``adapters/lm`` (``quick/adapters/lm`` in quick mode)."""
    return spec.run_dir(artifacts_root(quick))


def compiled(model):
    """``torch.compile(model)``; on a CPU without a vector ISA torch knows (or ``ATEN_CPU_CAPABILITY=default``), with
    inductor's C++ kernels kept scalar: torch 2.13's inductor still writes ``at::vec`` code there for a reduction that
    reads the token embedding by index, which then fails to build, while scalar code is what such a CPU runs anyway."""
    if torch.backends.cpu.get_cpu_capability() == "DEFAULT":
        import torch._inductor.config as inductor

        inductor.cpp.simdlen = 1
    return torch.compile(model)


def train_lm(
    data_dir: str | Path | None = None,
    run_dir: str | Path | None = None,
    config: LMTrainConfig = RECIPE,
    resume: bool = True,
    callbacks: Sequence[Callback] = (),
    progress: bool = True,
    stop: threading.Event | None = None,
    device: str | None = None,
    tensorboard: bool = True,
) -> LMTrainResult:
    """Pre-train the decoder on the token folder ``data_dir`` (see :mod:`slmlab.tinylm.prepare`) into ``run_dir``.

    Continues from the run folder's newest checkpoint when it was made with the same settings (``resume``).
    Setting ``stop`` (from another thread, e.g. a notebook button) ends the run after the current step with a
    checkpoint; Ctrl+C does the same and is raised again. Under ``torchrun`` every process trains on its share of
    each step's batch and rank 0 writes the files.
    """
    context = distributed.setup(device)
    data = PreparedData(Path(data_dir) if data_dir else default_data_dir())
    run_dir = Path(run_dir) if run_dir else default_run_dir()
    tokenizer = data.tokenizer(model_max_length=config.model.context_length)
    loader = data.loader("train", config.model.context_length, config.batch_size, config.sampling, config.seed)
    if config.batch_size % context.world_size:
        raise ValueError(f"batch_size {config.batch_size} must divide by the {context.world_size} processes")
    model = build_model(config.model, tokenizer, config.seed).to(context.device)
    model.train()
    trained = _data_parallel(model, context)
    if config.compile:
        trained = compiled(trained)  # the first step compiles (seconds); later ones run fused kernels
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config)
    valid = data.loader("valid", config.model.context_length, config.batch_size, "sequential", config.seed, shuffle=False)

    def train_step(index: int) -> dict[str, float]:
        batch = {key: value.to(context.device) for key, value in loader.batch(index, context.rank, context.world_size).items()}
        lr = scheduler.get_last_lr()[0]  # the rate this step uses
        with autocast(context.device, config.precision):
            loss = trained(**batch).loss
        loss.backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip))  # before clipping
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        mean_loss = distributed.mean_over_ranks(loss.item(), context)
        tokens = int(batch["attention_mask"].sum()) * context.world_size
        return {
            "loss": mean_loss,
            "perplexity": math.exp(min(mean_loss, 50.0)),
            "lr": lr,
            "grad_norm": grad_norm,
            "tokens": tokens,
        }

    checkpointing = _checkpointing(run_dir, config, data, model, tokenizer, optimizer, scheduler, context)
    log = RunLog(run_dir, LOGGED, tensorboard=tensorboard, eval_tag="loss/valid", enabled=context.is_main)
    hooks = [log, *callbacks] + ([stop_when(stop)] if stop is not None else [])

    def keep_model(state: TrainState) -> None:  # rank 0 writes the model folder, at the end or at a clean stop
        if context.is_main:
            save_model(model, tokenizer, run_dir)

    try:
        run = train_loop(
            train_step,
            config.steps,
            checkpointing,
            evaluate=lambda: validation_loss(model, valid, config.eval_batches, context),
            eval_every=config.eval_every,
            save_every=config.save_every,
            callbacks=hooks,
            resume=resume,
            progress=progress and context.is_main,
            desc="tiny LM",
            save_on_interrupt=not context.enabled,
            finish=keep_model,
            metrics=lambda state: _metrics(state, config, data, model, context),
            metrics_path=run_dir / TRAINING_METRICS_FILE if context.is_main else None,
            on_stop=keep_model,  # a clean stop: the loop has checkpointed; the run folder gets the weights so far
        )
    finally:
        log.close()
        model.eval()
        distributed.teardown(context)
    metrics_path = None if run.stopped else run_dir / TRAINING_METRICS_FILE
    return LMTrainResult(run_dir, run.state, run.resumed_from, run.stopped, count_parameters(model), metrics_path)


def train_data_parallel(
    nproc: int,
    data_dir: str | Path,
    run_dir: str | Path,
    config: LMTrainConfig = RECIPE,
    resume: bool = True,
    tensorboard: bool = True,
) -> LMTrainResult:
    """:func:`train_lm` on ``nproc`` processes started by ``torchrun`` (``slmlab lm train --nproc``), from a
    notebook or script: the processes cannot live inside a Jupyter kernel, so they are launched and waited for."""
    arguments = ["lm", "train", "--data", str(data_dir), "--run-dir", str(run_dir), *config_arguments(config)]
    arguments += ([] if resume else ["--fresh"]) + ([] if tensorboard else ["--no-tensorboard"])
    status = distributed.launch(nproc, arguments)
    if status != 0:
        raise RuntimeError(f"torchrun exited with status {status}; its output above names the failing process")
    metrics_path = Path(run_dir) / TRAINING_METRICS_FILE
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    state = TrainState(
        step=metrics["steps"],
        total_steps=config.steps,
        trained_tokens=metrics["trained_tokens"],
        seconds=metrics["train_seconds"],
        train_loss=[tuple(p) for p in metrics["train_loss"]],
        valid_loss=[tuple(p) for p in metrics["valid_loss"]],
    )
    return LMTrainResult(Path(run_dir), state, -1, False, metrics["parameters"], metrics_path)


def config_arguments(config: LMTrainConfig) -> list[str]:
    """The ``slmlab lm train`` options that reproduce ``config`` (every field, model shape included)."""
    values = {key: value for key, value in asdict(config).items() if key != "model"} | asdict(config.model)
    arguments = []
    for key, value in values.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            arguments.append(flag if value else "--no-" + flag[2:])
        else:
            arguments += [flag, str(value)]
    return arguments


def overfit_one_batch(
    data_dir: str | Path | None = None,
    config: LMTrainConfig = RECIPE,
    steps: int = 200,
    learning_rate: float = 3e-3,
    device: str | None = None,
) -> list[float]:
    """The shape check before a long run: train a fresh model on the first batch only and return its losses.

    Model, data and loss are wired up right when the loss falls to near zero (the model memorises the batch); a
    loss that stays near ln(vocabulary) means the labels, masks or optimiser are not connected.
    """
    device = device or torch_device()
    data = PreparedData(Path(data_dir) if data_dir else default_data_dir())
    tokenizer = data.tokenizer(model_max_length=config.model.context_length)
    loader = data.loader("train", config.model.context_length, config.batch_size, config.sampling, config.seed)
    batch = {key: value.to(device) for key, value in loader.batch(0).items()}
    model = build_model(config.model, tokenizer, config.seed).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    curve = []
    for _ in range(steps):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        curve.append(loss.item())
    return curve


def autocast(device: str, precision: str):
    """The forward pass's precision: bfloat16 autocast for "bf16" (matrix products in bf16, weights and optimizer
    state in fp32), nothing for "fp32"."""
    return torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=precision == "bf16")


def make_optimizer(model: torch.nn.Module, config: LMTrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on the weight matrices (and embeddings) only, not on the norms."""
    params = {id(p): p for p in model.parameters() if p.requires_grad}.values()  # a tied matrix once
    decayed = [p for p in params if p.dim() >= 2]
    plain = [p for p in params if p.dim() < 2]
    groups = [{"params": decayed, "weight_decay": config.weight_decay}, {"params": plain, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.learning_rate, betas=(config.beta1, config.beta2))


def make_scheduler(optimizer, config: LMTrainConfig):
    """Linear warmup to the peak rate, then cosine decay to ``min_lr_ratio`` of it at ``steps``."""
    return get_cosine_with_min_lr_schedule_with_warmup(
        optimizer, config.warmup_steps, config.steps, min_lr_rate=config.min_lr_ratio
    )


def validation_loss(model: torch.nn.Module, loader: TokenLoader, batches: int, context=distributed.Distributed()) -> float:
    """Mean loss in nats per predicted token over the first ``batches`` sequential validation batches.

    Under data-parallel each process scores every ``world_size``-th batch and the sums are combined.
    """
    was_training = model.training
    model.eval()
    nats = tokens = 0.0
    with torch.inference_mode():
        for index in range(context.rank, min(batches, max(1, len(loader))), context.world_size):
            batch = {key: value.to(context.device) for key, value in loader.batch(index).items()}
            predicted = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
            nats += float(model(**batch).loss) * predicted
            tokens += predicted
    model.train(was_training)
    nats, tokens = distributed.sum_over_ranks([nats, tokens], context)
    return nats / tokens if tokens else math.nan


def _metrics(state: TrainState, config: LMTrainConfig, data: PreparedData, model, context) -> dict:
    """``training_metrics.json``: the shared figures, curves and settings, with the model's size, the perplexity, the
    processes, the device, the peak memory and the token folder."""
    final_valid = state.valid_loss[-1][1] if state.valid_loss else math.nan
    return training_metrics(
        state,
        config,
        parameters=count_parameters(model),
        final_valid_perplexity=math.exp(final_valid) if final_valid == final_valid else math.nan,
        processes=context.world_size,
        device=context.device,
        peak_rss_mb=round(peak_rss_mb(), 1),
        data_dir=str(data.folder),
    )


# --- internals ------------------------------------------------------------------------------------


def _data_parallel(model, context):
    if not context.enabled:
        return model
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[context.local_rank] if context.device.startswith("cuda") else None
    )


@dataclass(frozen=True)
class _RankCheckpointing(Checkpointing):
    """Checkpoints of a data-parallel run: rank 0 writes and decides; the others read what it decided."""

    context: distributed.Distributed = distributed.Distributed()

    def save(self, state: TrainState) -> Path | None:
        path = super().save(state) if self.context.is_main else None
        distributed.barrier(self.context)
        return path

    def restore(self, resume: bool) -> TrainState | None:
        if self.context.is_main:
            restored = super().restore(resume)
            distributed.barrier(self.context)
            return restored
        distributed.barrier(self.context)  # rank 0 has removed a stale run or picked the checkpoint
        checkpoint = latest_checkpoint(self.run_dir) if resume else None
        if checkpoint is None:
            return None
        self.load_files(checkpoint)
        return TrainState.from_dict(read_checkpoint(checkpoint)[0])


def _checkpointing(run_dir, config, data, model, tokenizer, optimizer, scheduler, context) -> Checkpointing:
    def save_files(folder: Path) -> None:  # a loadable model folder + optimizer, schedule and RNG
        save_model_files(model, tokenizer, folder)
        save_training_state(folder / OPTIMIZER_FILE, optimizer, scheduler)

    def load_files(folder: Path) -> None:
        load_weights(model, folder)
        load_training_state(folder / OPTIMIZER_FILE, optimizer, scheduler)

    settings = asdict(config) | {spec.DATA_SETTING: data.fingerprint()}
    return _RankCheckpointing(
        run_dir,
        settings,
        save_files,
        load_files,
        keep=config.keep_checkpoints,
        ignore=NOT_TRAJECTORY,
        run_files=RUN_FILES,
        context=context,
    )
