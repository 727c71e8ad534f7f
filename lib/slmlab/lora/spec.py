"""Chapters 01–04 on one screen: the notebooks, the command-line verbs, the data and training settings, and every
artifact the chapters write or read, each path a function of the artifacts root. Light: no torch, no pandas; the
report, the demos, the grid and the CLI read it instead of repeating names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from slmlab.spec import TRAINING_METRICS_FILE, adapters_path, benchmark_file, chapter_results, data_path, results_path

KEY = "lora"
NOTEBOOKS = ("01_patterns", "02_data_generation", "03_lora_training", "04_pattern_eval")
PATTERNS, DATAGEN, TRAINING, EVALUATION = NOTEBOOKS
COMMANDS = ("patterns", "data", "train", "eval")  # ``slmlab <verb>``
PATTERNS_COMMAND, DATA_COMMAND, TRAIN_COMMAND, EVAL_COMMAND = COMMANDS
ADAPTER_NAME = "patterns-lora"  # the adapter chapter 03 trains and chapter 04 evaluates
SPLITS = ("train", "valid", "test")
MANIFEST_FILE = "manifest.json"  # beside the splits: counts, the data config, patterns and augmented rows
COUNTS_FILE = "counts.csv"  # chapter 01: patterns and paraphrases per category
PATTERNS_TABLE_FILE = "patterns.csv"  # chapter 01: every pattern, one row each
COUNTS_FIGURE_FILE = "counts.png"
STATS_FILE = "stats.csv"  # chapter 02: rows per category and split
STATS_FIGURE_FILE = "stats.png"
LOSS_FIGURE_FILE = "loss.png"  # chapter 03: train and valid loss against step
COMPARISON_FILE = "comparison.json"  # chapter 04: baseline vs tuned, overall and per category
PREDICTIONS_FILE = "predictions.csv"  # chapter 04: every test row's reply from both models
COMPARISON_FIGURE_FILE = "comparison.png"
BENCHMARK = "lora"  # benchmarks/lora.py: slmlab's training step against TRL's, same run
BENCHMARK_COMMAND = f"python benchmarks/{BENCHMARK}.py"

TITLE = "LoRA: patterns → adapter (chapters 03–04)"
TAUGHT_THROUGH = "weights"
QUICK_EVAL_ROWS = 8  # test rows chapter 04 evaluates in quick mode


# --- settings -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DataConfig:
    """How much augmentation to do. Defaults give ≥ 200 training rows from 60 patterns."""

    variants_per_prompt: int = 2  # augmented copies of each training prompt
    valid_fraction: float = 0.2
    completion_fraction: float = 0.25  # share of rows in completion framing
    # knowledge augmentation (slmlab.lora.augmentation): a template file ("" for none; a relative path is read
    # from the working folder, else from the project root) and how many of its phrasings each fact gets
    augmentation_file: str = "patterns/augmentation/facts.yaml"
    phrasings_per_fact: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        valid = {
            "variants_per_prompt": self.variants_per_prompt >= 0,
            "valid_fraction": 0 <= self.valid_fraction < 1,
            "completion_fraction": 0 <= self.completion_fraction <= 1,
            "phrasings_per_fact": self.phrasings_per_fact >= 0,
        }
        _refuse_out_of_range(self, valid)


# settings that do not change what is trained; a checkpoint that differs only in these is resumed
NOT_TRAJECTORY = ("eval_every", "save_every", "keep_checkpoints", "fast_step")


@dataclass(frozen=True)
class TrainConfig:
    """LoRA and optimisation settings; the defaults train the 135M default model in minutes on 2 cores."""

    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    # attention and MLP projections: facts are learned far better with the MLP ones (same steps, ~5 % slower)
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    num_layers: int | None = 16  # LoRA on the last N transformer layers (None: all), as mlx-lm does
    learning_rate: float = 2e-3
    warmup_steps: int = 10
    steps: int = 250
    batch_size: int = 8
    max_length: int = 256
    grad_clip: float = 1.0
    eval_every: int = 25
    save_every: int = 25
    keep_checkpoints: int = 2
    fast_step: bool = True  # run the frozen layers and the shared prompt prefix once (slmlab.lora.fast_step)
    seed: int = 0

    def __post_init__(self) -> None:
        positive = ("rank", "alpha", "learning_rate", "steps", "batch_size", "max_length", "grad_clip", "keep_checkpoints")
        valid = {name: getattr(self, name) > 0 for name in positive}
        valid |= {name: getattr(self, name) >= 0 for name in ("warmup_steps", "eval_every", "save_every")}
        valid["dropout"] = 0 <= self.dropout < 1
        valid["num_layers"] = self.num_layers is None or self.num_layers > 0
        valid["target_modules"] = bool(self.target_modules)
        _refuse_out_of_range(self, valid)

    @classmethod
    def quick(cls, seed: int = 0) -> TrainConfig:
        """Quick mode's run: 8 steps, evaluated and saved every 4 (chapter 03 under test, ``slmlab train --steps 8``)."""
        return cls(steps=8, eval_every=4, save_every=4, seed=seed)


def _refuse_out_of_range(config: object, valid: dict[str, bool]) -> None:
    """A ValueError naming every field (and its value) whose check failed."""
    wrong = [name for name, ok in valid.items() if not ok]
    if wrong:
        values = ", ".join(f"{name}={getattr(config, name)!r}" for name in wrong)
        raise ValueError(f"{type(config).__name__}: out of range: {values}")


RUN_COMMAND = "slmlab data && slmlab train && slmlab eval"  # what makes this spec's results (the report names it)
QUICK_RUN_COMMAND = (  # the notebooks' quick sizes
    f"slmlab data && slmlab train --steps {TrainConfig.quick().steps} && slmlab eval --limit {QUICK_EVAL_ROWS}"
)


# --- paths ----------------------------------------------------------------------------------------------------
def split_file(data_dir: Path, split: str) -> Path:
    """``<data dir>/<split>.jsonl`` (mlx-lm's data layout)."""
    return Path(data_dir) / f"{split}.jsonl"


def data_dir(root: Path) -> Path:
    """Chapter 02's output and chapters 03–04's input: ``data/`` with ``train/valid/test.jsonl``."""
    return data_path(root)


def manifest_in(data_dir: Path) -> Path:
    """``<data dir>/manifest.json``: beside the splits of any data folder."""
    return Path(data_dir) / MANIFEST_FILE


def manifest_file(root: Path) -> Path:
    return manifest_in(data_dir(root))


def adapter_dir(root: Path) -> Path:
    """``adapters/patterns-lora``: a PEFT (or mlx-lm) adapter folder."""
    return adapters_path(root, ADAPTER_NAME)


def training_metrics_in(adapter: Path) -> Path:
    """``<adapter folder>/training_metrics.json``: what the trainer measured, beside the adapter."""
    return Path(adapter) / TRAINING_METRICS_FILE


def training_metrics_file(root: Path) -> Path:
    return training_metrics_in(adapter_dir(root))


def counts_file(root: Path) -> Path:
    return chapter_results(root, PATTERNS) / COUNTS_FILE


def patterns_table_file(root: Path) -> Path:
    return chapter_results(root, PATTERNS) / PATTERNS_TABLE_FILE


def counts_figure(root: Path) -> Path:
    return chapter_results(root, PATTERNS) / COUNTS_FIGURE_FILE


def stats_file(root: Path) -> Path:
    return chapter_results(root, DATAGEN) / STATS_FILE


def stats_figure(root: Path) -> Path:
    return chapter_results(root, DATAGEN) / STATS_FIGURE_FILE


def loss_figure(root: Path) -> Path:
    return chapter_results(root, TRAINING) / LOSS_FIGURE_FILE


def comparison_in(results: Path) -> Path:
    """``<results folder>/comparison.json``: chapter 04's headline in any results folder."""
    return Path(results) / COMPARISON_FILE


def predictions_in(results: Path) -> Path:
    """``<results folder>/04_pattern_eval/predictions.csv``."""
    return Path(results) / EVALUATION / PREDICTIONS_FILE


def comparison_file(root: Path) -> Path:
    """``results/comparison.json``: chapter 04's headline."""
    return comparison_in(results_path(root))


def predictions_file(root: Path) -> Path:
    return predictions_in(results_path(root))


def comparison_figure(root: Path) -> Path:
    return chapter_results(root, EVALUATION) / COMPARISON_FIGURE_FILE


def benchmark_results(root: Path) -> Path:
    """``results/benchmarks/lora.json``: the training benchmark's same-run comparison."""
    return benchmark_file(root, BENCHMARK)
