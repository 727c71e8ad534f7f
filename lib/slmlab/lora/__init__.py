"""Chapters 01–04: teaching the model through its weights — patterns → data → LoRA → evaluation.

Entry points, one per chapter: :func:`load_patterns` (01, YAML patterns with file/line/field errors),
:func:`generate_dataset` (02, train/valid/test JSONL), :func:`train_lora` (03, PEFT on torch, mlx-lm on
MLX) and :func:`compare_models` (04, baseline vs tuned, shown by :func:`summary_table` and
:func:`per_category_table`). Plots and widgets live in :mod:`slmlab.lora.views`.
"""

from slmlab.lora.datagen import DataConfig, build_rows, dataset_stats, find_leaks, generate_dataset, load_split
from slmlab.lora.evaluation import before_after_table, compare_models, per_category_table, summary_table
from slmlab.lora.patterns import PatternError, check_patterns_cli, load_patterns, pattern_counts, patterns_table
from slmlab.lora.training import TrainConfig, benchmark_summary, default_adapter_dir, train_lora

__all__ = [
    "DataConfig",
    "PatternError",
    "TrainConfig",
    "before_after_table",
    "benchmark_summary",
    "build_rows",
    "check_patterns_cli",
    "compare_models",
    "dataset_stats",
    "default_adapter_dir",
    "find_leaks",
    "generate_dataset",
    "load_patterns",
    "load_split",
    "pattern_counts",
    "patterns_table",
    "per_category_table",
    "summary_table",
    "train_lora",
]
