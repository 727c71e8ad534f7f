"""Chapters 01–04: teaching the model through its weights — patterns → data → LoRA → evaluation.

Entry points, one per chapter: :func:`load_patterns` (01, YAML patterns with file/line/field errors),
:func:`generate_dataset` (02, train/valid/test JSONL), :func:`train_lora` (03, PEFT on torch, mlx-lm on
MLX) and :func:`compare_models` (04, baseline vs tuned, shown by :func:`summary_table` and
:func:`per_category_table`). Where each chapter's files go is :mod:`slmlab.lora.spec`'s (re-exported here for the
notebooks); plots and widgets live in :mod:`slmlab.lora.views`.
"""

from slmlab.lora.datagen import build_rows, dataset_stats, find_leaks, generate_dataset, load_split
from slmlab.lora.evaluation import before_after_table, compare_models, per_category_table, summary_table
from slmlab.lora.patterns import PatternError, check_patterns_cli, load_patterns, pattern_counts, patterns_table
from slmlab.lora.spec import (
    QUICK_EVAL_ROWS,
    DataConfig,
    TrainConfig,
    comparison_figure,
    counts_figure,
    counts_file,
    loss_figure,
    patterns_table_file,
    stats_figure,
    stats_file,
)
from slmlab.lora.training import benchmark_summary, default_adapter_dir, train_lora

__all__ = [
    "QUICK_EVAL_ROWS",
    "DataConfig",
    "PatternError",
    "TrainConfig",
    "before_after_table",
    "benchmark_summary",
    "build_rows",
    "check_patterns_cli",
    "compare_models",
    "comparison_figure",
    "counts_figure",
    "counts_file",
    "dataset_stats",
    "default_adapter_dir",
    "find_leaks",
    "generate_dataset",
    "load_patterns",
    "load_split",
    "loss_figure",
    "pattern_counts",
    "patterns_table",
    "patterns_table_file",
    "per_category_table",
    "stats_figure",
    "stats_file",
    "summary_table",
    "train_lora",
]
