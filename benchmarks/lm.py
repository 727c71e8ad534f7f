"""Chapter 07 benchmarks: the tiny LM's training loop against Hugging Face ``Trainer`` (tokens/s, same model, data,
batch and steps, one run), and quality per wall-clock: the default recipe's held-out bits per byte on an English text.
Writes results/benchmarks/lm.json.

Run: ``.venv/bin/python benchmarks/lm.py [--text PATH] [--quick]`` (run nothing else beside it: two cores are easily
saturated). Without ``--text`` the English prose every Python ships (``pydoc_data.topics``, about 0.47 MB once its
topics are joined) is written to a temporary file and used.

Throughput: both sides train a freshly initialised copy of the chapter's default model (same seed) with AdamW, the
same warmup + cosine schedule, clipping and batch size, first in fp32, then both with bf16 autocast and torch.compile;
``Trainer`` reads the same windows through a torch ``Dataset`` over the same token file. Seconds are the summed wall
time of the training steps (model building, data preparation and evaluation excluded on both sides).

Quality: ``prepare_corpus(text)`` (its last tenth held out) and ``train_lm`` with the defaults, then ``evaluate_lm`` on
the held-out tenth; the reference is nanoGPT's CPU recipe on this machine (2,000 iterations in 84 s: 2.72 bits per
byte; 4,200 iterations in 3.5 minutes: about 2.49).
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

from slmlab.environment import environment_report, peak_rss_mb
from slmlab.io import atomic_write_json, created_now
from slmlab.settings import results_dir
from slmlab.tinylm.evaluation import evaluate_lm
from slmlab.tinylm.model import ModelConfig, build_model
from slmlab.tinylm.prepare import PrepareConfig, PreparedData, prepare_corpus
from slmlab.tinylm.tokenizer import min_vocab_size
from slmlab.tinylm.training import LMTrainConfig, make_optimizer, make_scheduler, train_lm
from trainer_timing import step_timer

THROUGHPUT_GOAL = 1.5  # slmlab's loop vs Trainer, tokens/s
QUALITY_GOAL = {"bits_per_byte": 2.4, "train_seconds": 180}
NANOGPT = {"iterations": 2000, "seconds": 84, "bits_per_byte": 2.72, "stretched": {"seconds": 210, "bits_per_byte": 2.49}}


def english_text(folder: Path) -> Path:
    """The prose of ``pydoc_data.topics`` (the interactive help's topics) as one text file."""
    from pydoc_data.topics import topics

    path = folder / "pydoc_topics.txt"
    path.write_text("\n\n".join(topics[name] for name in sorted(topics)), encoding="utf-8")
    return path


def run_slmlab(data: PreparedData, config: LMTrainConfig, out: Path) -> dict:
    result = train_lm(data.folder, out, config, resume=False, tensorboard=False)
    state = result.state
    return {
        "tokens": state.trained_tokens,
        "seconds": round(state.seconds, 2),
        "tokens_per_s": round(state.tokens_per_second, 1),
        "final_loss": round(state.train_loss[-1][1], 4),
    }


def run_trainer(data: PreparedData, config: LMTrainConfig, out: Path) -> dict:
    """The same training through ``transformers.Trainer``: same model init, optimiser, schedule, windows."""
    import torch
    from transformers import Trainer, TrainingArguments

    loader = data.loader("train", config.model.context_length, config.batch_size, config.sampling, config.seed)

    class Windows(torch.utils.data.Dataset):  # row i = row i % batch of the slmlab loader's batch i // batch
        def __len__(self):
            return config.steps * config.batch_size

        def __getitem__(self, index):
            batch = loader.batch(index // config.batch_size)
            return {key: value[index % config.batch_size] for key, value in batch.items()}

    timer = step_timer()

    model = build_model(config.model, data.tokenizer(), config.seed)
    optimizer = make_optimizer(model, config)
    args = TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=config.batch_size,
        max_steps=config.steps,
        max_grad_norm=config.grad_clip,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=config.seed,
        use_cpu=True,
        dataloader_num_workers=0,
        disable_tqdm=False,
        bf16=config.precision == "bf16",
        torch_compile=config.compile,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=Windows(),
        callbacks=[timer],
        optimizers=(optimizer, make_scheduler(optimizer, config)),
    )
    trainer.train()
    tokens = config.steps * config.batch_size * config.model.context_length  # every window is full in random mode
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    return {
        "tokens": tokens,
        "seconds": round(timer.seconds, 2),
        "tokens_per_s": round(tokens / timer.seconds, 1),
        "final_loss": round(losses[-1], 4) if losses else None,
    }


def throughput(data: PreparedData, steps: int, work: Path) -> dict:
    """Both loops with the same settings: fp32 eager (the chapter's default), then bf16 autocast + torch.compile."""
    rows = {}
    for name, changes in (("fp32", {}), ("bf16_compiled", {"precision": "bf16", "compile": True})):
        config = dataclasses.replace(LMTrainConfig(), steps=steps, eval_every=0, save_every=0, **changes)
        ours = run_slmlab(data, config, work / f"slmlab-{name}")
        reference = run_trainer(data, config, work / f"trainer-{name}")
        ratio = ours["tokens_per_s"] / reference["tokens_per_s"]
        rows[name] = {"slmlab": ours, "hf_trainer": reference, "ratio": round(ratio, 2)}
    fp32 = rows["fp32"]["slmlab"]["tokens_per_s"]
    return {
        "steps": steps,
        **rows,
        "ratio": rows["fp32"]["ratio"],
        "fast_over_fp32": round(rows["bf16_compiled"]["slmlab"]["tokens_per_s"] / fp32, 2),
        "goal": {"ratio": THROUGHPUT_GOAL, "met": rows["fp32"]["ratio"] >= THROUGHPUT_GOAL},
    }


def nanogpt_like_recipe(quick: bool) -> tuple[PrepareConfig, LMTrainConfig]:
    """nanoGPT's CPU recipe in this loop, on the same text: a byte-level vocabulary (no merges: 256 bytes + specials,
    the nearest thing to its characters), 4 layers, 4 heads, width 128, context 64, batch 12, 2,000 iterations at
    its learning rate (1e-3, beta2 0.99, warmup 100, decay to a tenth). The model is Llama-style (RMSNorm, RoPE,
    SwiGLU with the same 512 inner width) where nanoGPT's is GPT-2-style."""
    model = ModelConfig(hidden_size=128, layers=4, heads=4, kv_heads=4, intermediate_size=512, context_length=64)
    train = LMTrainConfig(
        model=model,
        batch_size=12,
        steps=20 if quick else 2000,
        learning_rate=1e-3,
        warmup_steps=10 if quick else 100,
        beta2=0.99,
        eval_every=0,
        save_every=0,
    )
    return PrepareConfig(vocab_size=min_vocab_size(), max_bytes=None), train


def quality(text: Path, work: Path, name: str, prepare: PrepareConfig, config: LMTrainConfig) -> dict:
    """Prepare ``text`` (its last tenth held out), train with ``config``, score the held-out tenth."""
    start = time.perf_counter()
    data = prepare_corpus(text, work / f"{name}-data", prepare, progress=False)
    prepare_seconds = time.perf_counter() - start
    result = train_lm(data.folder, work / f"{name}-run", config, resume=False, tensorboard=False)
    model = result_model(work / f"{name}-run")
    scores = evaluate_lm(model, data.tokenizer(), data.valid_documents(), config.model.context_length, batch_size=16)
    return {
        "text": str(text),
        "text_bytes": text.stat().st_size,
        "held_out": data.summary["bytes"]["valid"],
        "vocab_size": data.summary["vocab_size"],
        "bytes_per_token": data.summary["bytes_per_token"],
        "prepare_seconds": round(prepare_seconds, 1),
        "train_seconds": round(result.state.seconds, 1),
        "steps": result.state.step,
        "parameters": result.parameters,
        "held_out_bits_per_byte": round(scores.bits_per_byte, 3),
        "held_out_perplexity": round(scores.perplexity, 2),
        "recipe": {"prepare": dataclasses.asdict(prepare), "train": dataclasses.asdict(config)},
    }


def quality_rows(text: Path, work: Path, quick: bool) -> dict:
    """The chapter's default recipe against the goal, and nanoGPT's recipe in the same loop on the same text."""
    default = quality(text, work, "default", PrepareConfig(max_bytes=None), LMTrainConfig.quick() if quick else LMTrainConfig())
    reference = quality(text, work, "nanogpt-recipe", *nanogpt_like_recipe(quick))
    met = (
        default["held_out_bits_per_byte"] <= QUALITY_GOAL["bits_per_byte"]
        and default["train_seconds"] <= QUALITY_GOAL["train_seconds"]
    )
    return {
        "default_recipe": default,
        "nanogpt_recipe_same_text": reference,
        "nanogpt_on_its_own_text": NANOGPT,
        "goal": QUALITY_GOAL | {"met": met},
    }


def result_model(run_dir: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(run_dir).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text", default=None, help="an English text file (default: pydoc_data.topics' prose)")
    parser.add_argument("--steps", type=int, default=100, help="steps of each side of the throughput comparison")
    parser.add_argument("--quick", action="store_true", help="a few steps: checks the script, not the speed")
    args = parser.parse_args()
    steps = 4 if args.quick else args.steps
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        text = Path(args.text) if args.text else english_text(work)
        report = {
            "benchmark": "tiny_lm",
            "created": created_now(),
            "command": "python benchmarks/lm.py"
            + (" --quick" if args.quick else f" --steps {steps}")
            + (f" --text {args.text}" if args.text else ""),
            "environment": environment_report(),
            "quality": quality_rows(text, work, args.quick),
        }
        data = PreparedData(work / "default-data")
        report["throughput"] = throughput(data, steps, work)
    report["peak_rss_mb"] = round(peak_rss_mb(), 1)
    path = atomic_write_json(results_dir("benchmarks") / "lm.json", report)
    quality_row, speed = report["quality"]["default_recipe"], report["throughput"]
    reference = report["quality"]["nanogpt_recipe_same_text"]
    print(
        f"held-out {quality_row['held_out_bits_per_byte']} bits/byte after {quality_row['train_seconds']} s of training "
        f"(nanoGPT's recipe here: {reference['held_out_bits_per_byte']} after {reference['train_seconds']} s)"
    )
    print(
        f"slmlab vs Trainer: {speed['fp32']['ratio']}x in fp32, {speed['bf16_compiled']['ratio']}x with bf16 + compile "
        f"(slmlab bf16 + compile {speed['fast_over_fp32']}x its fp32) -> {path}"
    )


if __name__ == "__main__":
    main()
