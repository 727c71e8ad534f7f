"""LoRA training throughput: slmlab's loop against TRL's SFTTrainer + PEFT on the same data and settings.
Writes results/benchmarks/lora.json (tokens/s of each, the ratios, and whether the 3x goal is met).

Run: ``.venv/bin/python benchmarks/lora.py [--steps N] [--quick]``

Both sides train the offline default model with the same LoRA (rank, alpha, modules, layers), learning rate,
schedule, batch size, maximum length and answer-only loss, on the rows chapter 02 generates. Tokens are the
real (non-padding) tokens of the batches trained on; seconds are the summed wall time of the training steps
(data collation included, model loading and evaluation excluded). slmlab runs twice: with its default fast
step (frozen layers and the shared prompt prefix computed once, :mod:`slmlab.lora.fast_step`; a row's frozen
layers run inside the step that first uses it) and with ``fast_step=False``, to show what each part buys.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

from slmlab.environment import environment_report
from slmlab.io import atomic_write_json, created_now
from slmlab.lora.datagen import DataConfig, generate_dataset, load_split
from slmlab.lora.patterns import load_patterns
from slmlab.lora.training import TrainConfig, peft_lora_config, train_lora
from slmlab.models import DEFAULT_MODEL, resolve_model
from slmlab.settings import project_root, results_dir
from trainer_timing import step_timer

GOAL = 3.0


def run_slmlab(data_dir: Path, config: TrainConfig) -> dict:
    with tempfile.TemporaryDirectory() as out:
        result = train_lora(data_dir, Path(out) / "lora", DEFAULT_MODEL, config, backend="torch", resume=False)
    state = result.state
    return {
        "tokens": state.trained_tokens,
        "seconds": round(state.seconds, 2),
        "tokens_per_s": round(state.tokens_per_second, 1),
        "final_loss": state.train_loss[-1][1],
    }


def run_trl(data_dir: Path, config: TrainConfig) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    base_dir = resolve_model(DEFAULT_MODEL)
    rows = load_split(data_dir, "train")
    dataset = Dataset.from_list([{"prompt": r["messages"][:-1], "completion": r["messages"][-1:]} for r in rows])
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    lora = peft_lora_config(config, model.config.num_hidden_layers)

    timer = step_timer()

    with tempfile.TemporaryDirectory() as out:
        args = SFTConfig(
            output_dir=out,
            per_device_train_batch_size=config.batch_size,
            max_steps=config.steps,
            learning_rate=config.learning_rate,
            lr_scheduler_type="cosine",
            warmup_steps=config.warmup_steps,
            max_grad_norm=config.grad_clip,
            max_length=config.max_length,
            completion_only_loss=True,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            seed=config.seed,
            use_cpu=True,
            dataloader_num_workers=0,
            disable_tqdm=False,
        )
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=dataset,
            processing_class=AutoTokenizer.from_pretrained(base_dir),
            peft_config=lora,
            callbacks=[timer],
        )
        trainer.train()
    tokens = int(trainer._total_train_tokens)  # TRL's own count: attention-mask sum of the trained batches
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    return {
        "tokens": tokens,
        "seconds": round(timer.seconds, 2),
        "tokens_per_s": round(tokens / timer.seconds, 1),
        "final_loss": losses[-1] if losses else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps",
        type=int,
        default=TrainConfig().steps,
        help="steps of each run (default: the chapter's; the fast step reuses a row's frozen layers "
        "from its second epoch on, so short runs show less of it)",
    )
    parser.add_argument("--quick", action="store_true", help="4 steps each: checks the script, not the speed")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    steps = 4 if args.quick else args.steps
    config = TrainConfig(steps=steps, eval_every=10**9, save_every=10**9, warmup_steps=min(10, steps // 2), seed=args.seed)
    with tempfile.TemporaryDirectory() as data:
        generate_dataset(load_patterns(project_root() / "patterns"), data, DataConfig(seed=args.seed))
        ours = run_slmlab(Path(data), config)
        plain = run_slmlab(Path(data), replace(config, fast_step=False))
        trl = run_trl(Path(data), config)
    ratio = ours["tokens_per_s"] / trl["tokens_per_s"]
    report = {
        "benchmark": "lora_training",
        "created": created_now(),
        "command": "python benchmarks/lora.py" + (" --quick" if args.quick else f" --steps {steps}"),
        "model": DEFAULT_MODEL,
        "settings": {k: v for k, v in config.__dict__.items() if k not in ("eval_every", "save_every", "keep_checkpoints")},
        "environment": environment_report(),
        "slmlab": ours,
        "slmlab_plain_step": plain,
        "trl_sfttrainer_peft": trl,
        "ratio": round(ratio, 2),
        "plain_step_ratio": round(plain["tokens_per_s"] / trl["tokens_per_s"], 2),
        "fast_step_speedup": round(ours["tokens_per_s"] / plain["tokens_per_s"], 2),
        "goal": {"ratio": GOAL, "met": ratio >= GOAL},
        "why": "slmlab groups rows of similar length into batches (little padding), projects only answer "
        "positions onto the 49k-word vocabulary, runs the layers below the adapter once per row and the "
        "chat template's shared system turn once per batch; TRL pads each random batch to its longest row, "
        "runs every layer on every token of every step and computes logits, entropy and accuracy for "
        "every position.",
    }
    path = atomic_write_json(results_dir("benchmarks") / "lora.json", report)
    print(
        f"slmlab {ours['tokens_per_s']} tokens/s (plain step {plain['tokens_per_s']}), TRL {trl['tokens_per_s']} "
        f"tokens/s: {ratio:.2f}x -> {path}"
    )


if __name__ == "__main__":
    main()
