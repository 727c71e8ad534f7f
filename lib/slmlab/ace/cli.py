"""``slmlab ace ...``: chapter 05 from the command line (runs, summaries, grids, task sets, playbook files).
A run here writes the same files as :func:`slmlab.ace.runs.run_ace` in the notebook."""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path

from slmlab.ace.playbook import read_playbook, write_playbook
from slmlab.ace.runs import AceConfig, run_ace
from slmlab.ace.spec import MODES, results_dir, run_dir
from slmlab.ace.tasks import build_task_sets, build_transfer_sets
from slmlab.grid_cli import add_grid_options
from slmlab.settings import artifacts_root
from slmlab.spec import shown, task_sets_dir

DEFAULT = " (default: %(default)s)"  # appended to a help text: argparse fills in the option's default
ARTIFACTS = Path("<artifacts>")  # stands for the artifacts tree in help texts (see slmlab.settings.artifacts_root)
SETTINGS = (  # AceConfig fields given on the command line under the same name
    "reflector_model",
    "task",
    "mode",
    "epochs",
    "limit",
    "seed",
    "train_task",
    "batch_size",
    "top_k",
    "token_budget",
    "dedup_threshold",
    "backend",
    "playbook",
)


def config_of(args: argparse.Namespace) -> AceConfig:
    """The :class:`AceConfig` that ``slmlab ace run`` options describe."""
    return AceConfig(model_id=args.model, use_labels=not args.no_labels, **{name: getattr(args, name) for name in SETTINGS})


def _run(args: argparse.Namespace) -> int:
    # lazy: slmlab.ace.report loads pandas, which `slmlab --help` and every other command do without
    from slmlab.ace.report import load_results, summarize, to_markdown

    results = run_ace(config_of(args), args.out)
    print(to_markdown(summarize(load_results(results))))
    print(f"results: {results}")
    return 0


def _summarize(args: argparse.Namespace) -> int:
    # lazy: slmlab.ace.report loads pandas, which `slmlab --help` and every other command do without
    from slmlab.ace.report import baseline_vs_ace_by_split, load_results, split_summary, to_markdown, write_summary

    table = split_summary(load_results(args.paths or [results_dir(artifacts_root())]))
    print(to_markdown(table))
    cells = baseline_vs_ace_by_split(table)
    if not cells.empty:
        print("\n" + to_markdown(cells))
    if args.out:
        for path in write_summary(table, args.out):
            print(f"wrote {path}")
    return 0


def _tasks(args: argparse.Namespace) -> int:
    written = {**build_task_sets(args.out, seed=args.seed), **build_transfer_sets(args.out, seed=args.seed)}
    for name, path in written.items():
        print(f"{name}: {path}")
    return 0


def _playbook(args: argparse.Namespace) -> int:
    playbook = read_playbook(args.file)
    for problem in playbook.problems:
        print(f"warning: {problem}")
    if args.to:
        target = write_playbook(playbook, args.to)
        print(f"wrote {target} ({len(playbook)} bullets)")
    else:
        print(playbook.to_text(), end="")
    return 0


def add_ace_commands(commands) -> None:
    """Register ``slmlab ace`` and its verbs on the main parser's subcommands."""
    ace = commands.add_parser("ace", help="chapter 05: ACE playbook runs, summaries, grids, task sets")
    verbs = ace.add_subparsers(dest="ace_command", required=True)
    _add_run(verbs)

    summary = verbs.add_parser("summarize", help="exact match, token F1, semantic similarity, parse failures per split")
    summary.add_argument(
        "paths", nargs="*", default=[], help=f"run folders or results files (default: {shown(results_dir(ARTIFACTS))})"
    )
    summary.add_argument("--out", default=None, help="also write OUT.md and OUT.csv")
    summary.set_defaults(run=_summarize)

    # the core's grid runner under the chapter's name: `slmlab ace grid FILE` is `slmlab grid FILE`
    grid = verbs.add_parser("grid", help="the same as `slmlab grid FILE`, e.g. grids/ace_models_tasks.yaml (model × task × mode)")
    add_grid_options(grid)

    task_seed = inspect.signature(build_task_sets).parameters["seed"].default
    tasks = verbs.add_parser("tasks", help="regenerate the finance, medical and IoT task sets (train, test, transfer)")
    tasks.add_argument("--out", default=None, help=f"output folder (default: {shown(task_sets_dir(Path()))} of the checkout)")
    tasks.add_argument("--seed", type=int, default=task_seed, help="generator seed" + DEFAULT)
    tasks.set_defaults(run=_tasks)

    playbook = verbs.add_parser("playbook", help="show a playbook, or convert JSONL <-> ace-agent text (.txt/.md)")
    playbook.add_argument("file")
    playbook.add_argument("--to", default=None, help="write to this file (.jsonl, or .txt/.md for the text format)")
    playbook.set_defaults(run=_playbook)


def _add_run(verbs) -> None:
    defaults = AceConfig()
    run = verbs.add_parser("run", help="one run: baseline, ace (offline) or ace-online, over epochs; resumes")
    run.add_argument(
        "--task", default=defaults.task, help="finance, medical, iot, a registry name or a JSON/JSONL path" + DEFAULT
    )
    run.add_argument("--mode", default=defaults.mode, choices=MODES, help="what adapts between epochs" + DEFAULT)
    run.add_argument("--epochs", type=int, default=defaults.epochs, help="adaptation epochs (epoch 0 is the baseline)" + DEFAULT)
    run.add_argument("--limit", type=int, default=defaults.limit, help="first N samples of each split (default: all)")
    run.add_argument("--seed", type=int, default=defaults.seed, help="run seed" + DEFAULT)
    run.add_argument("--model", default=defaults.model_id, help="model name" + DEFAULT)
    run.add_argument(
        "--reflector-model",
        default=defaults.reflector_model,
        metavar="NAME_OR_FOLDER",
        help="model of the Reflector and the Curator: a registry name or a folder (default: --model)",
    )
    run.add_argument("--backend", default=defaults.backend, help="auto, torch or mlx" + DEFAULT)
    run.add_argument("--train-task", default=defaults.train_task, help="adaptation set when --task is a single file")
    run.add_argument("--no-labels", action="store_true", help="the Reflector judges answers without gold labels")
    run.add_argument("--batch-size", type=int, default=defaults.batch_size, help="questions per batch" + DEFAULT)
    run.add_argument("--top-k", type=int, default=defaults.top_k, help="bullets shown per question" + DEFAULT)
    run.add_argument("--token-budget", type=int, default=defaults.token_budget, help="largest playbook, in tokens" + DEFAULT)
    run.add_argument(
        "--dedup-threshold", type=float, default=defaults.dedup_threshold, help="cosine similarity that merges bullets" + DEFAULT
    )
    run.add_argument(
        "--playbook",
        "--playbook-path",
        default=defaults.playbook,
        metavar="FILE",
        help="start from this saved playbook: JSONL, or ace-agent text (.txt/.md); epoch 0 answers with it (default: empty)",
    )
    where = shown(run_dir(ARTIFACTS, "<model>", "<task>", "<mode>"))
    run.add_argument("--out", default=None, help=f"run folder (default: {where})")
    run.set_defaults(run=_run)
