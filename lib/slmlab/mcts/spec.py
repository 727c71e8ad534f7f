"""Chapter 06 on one screen: the notebook, the command-line verbs, the controller's default sizes and the files of a
run folder, each path a function of the artifacts root. Light (no torch, no fastapi): the report, the demos, the grid
and the command line read it."""

from __future__ import annotations

from pathlib import Path

from slmlab.spec import results_path

KEY = "mcts"
NOTEBOOKS = ("06_mcts_controller",)
COMMANDS = ("mcts run", "mcts selfplay", "mcts train", "mcts eval", "serve")
TITLE = "MCTS controller (chapter 06)"
TAUGHT_THROUGH = "decoding"
RUN_COMMAND = "slmlab mcts run"
QUICK_RUN_COMMAND = "slmlab mcts run --quick"
CONTROLLERS = ("scripted", "mcts")  # ``slmlab serve --controller``: a fixed policy (the default) or the search

# The controller's sizes, written once: every settings class of the chapter (ChapterSettings, EvalSettings,
# SelfPlayConfig, SearchSettings, EnvConfig, MacroState), both controllers and the server's requests default to them.
BUDGET = 48  # tokens an answer may use, thoughts included
SPAN_TOKENS = 8  # tokens per CONTINUE / RESAMPLE span
SIMULATIONS = 8  # search simulations per macro-action
PARALLEL_LEAVES = 4  # simulations per batched round of the search (virtual loss); 1 = one at a time
BEST_OF = 4  # samples of best-of-n and of majority vote
MAX_BUDGET = 512  # the largest budget a request to ``slmlab serve`` may ask for

RESULTS = "mcts"
LONG_RUN_NAME = "mcts-long"  # the long self-play run, beside the chapter's run folder
SUMMARY_FILE = "summary.json"  # the chapter's headline: each method's accuracy and tokens, reward by round
EVAL_FILE = "eval.csv"  # every test item's answer per method
EVAL_RECORD_FILE = "eval.json"  # what eval.csv was made with (settings, methods, items, network digest)
EVAL_SUMMARY_FILE = "eval_summary.md"  # the comparison table, also as .csv
EVAL_SUMMARY_CSV_FILE = "eval_summary.csv"

# inside any run folder (the chapter's, the long run's, or one ``--run`` names)
CONFIG_FILE = "config.json"  # the SelfPlayConfig the folder was made with
EPISODES_FILE = "episodes.jsonl"  # one line per finished self-play episode
REPLAY_DIR = "replay"  # the replay buffer: four .npy arrays and their header
REPLAY_HEADER_FILE = "header.json"
NETWORK_DIR = "network"  # the policy-value network's training folder: checkpoints, metrics, TensorBoard
NETWORK_FILE = "network.pt"  # the trained network, in the network folder and in each checkpoint


def run_dir(root: Path) -> Path:
    """``results/mcts``: the chapter's run folder."""
    return results_path(root, RESULTS)


def long_run_dir(root: Path) -> Path:
    """``results/mcts-long``: the long self-play run the notebook draws when it exists."""
    return results_path(root, LONG_RUN_NAME)


def summary_file(root: Path) -> Path:
    return run_dir(root) / SUMMARY_FILE


def eval_file(root: Path) -> Path:
    return run_dir(root) / EVAL_FILE


def eval_summary_file(root: Path) -> Path:
    return run_dir(root) / EVAL_SUMMARY_CSV_FILE


def network_dir(root: Path) -> Path:
    """``results/mcts/network``: where the chapter's run trains its policy-value network."""
    return run_dir(root) / NETWORK_DIR


def network_file(root: Path) -> Path:
    """``results/mcts/network/network.pt``: the chapter's trained network (``slmlab serve --network``)."""
    return network_dir(root) / NETWORK_FILE


COMPARISON_TABLE_FILE = "comparison.csv"  # the notebook's copy of the comparison, beside its figure
COMPARISON_FIGURE_FILE = "comparison.png"
