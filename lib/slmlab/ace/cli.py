"""``slmlab ace ...``: chapter 05 from the command line (runs, epochs, summaries, grids, task sets,
playbook files). A run here writes the same files as :func:`slmlab.ace.runs.run_ace` in the notebook."""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path

from slmlab.ace.runs import MODES, AceConfig
from slmlab.ace.tasks import build_task_sets, build_transfer_sets

DEFAULT = " (default: %(default)s)"  # appended to a help text: argparse fills in the option's default


def _run(args: argparse.Namespace) -> int:
    from slmlab.ace.report import load_results, summarize, to_markdown
    from slmlab.ace.runs import run_ace

    config = AceConfig(
        model_id=args.model,
        reflector_model=args.reflector_model,
        task=args.task,
        mode=args.mode,
        epochs=args.epochs,
        limit=args.limit,
        seed=args.seed,
        train_task=args.train_task,
        use_labels=not args.no_labels,
        batch_size=args.batch_size,
        top_k=args.top_k,
        token_budget=args.token_budget,
        dedup_threshold=args.dedup_threshold,
        backend=args.backend,
    )
    results = run_ace(config, args.out)
    print(to_markdown(summarize(load_results(results))))
    print(f"results: {results}")
    return 0


def _summarize(args: argparse.Namespace) -> int:
    from slmlab.ace.report import baseline_vs_ace_by_split, load_results, split_summary, to_markdown, write_summary

    table = split_summary(load_results(args.paths))
    print(to_markdown(table))
    cells = baseline_vs_ace_by_split(table)
    if not cells.empty:
        print("\n" + to_markdown(cells))
    if args.out:
        for path in write_summary(table, args.out):
            print(f"wrote {path}")
    return 0


def _grid(args: argparse.Namespace) -> int:
    from slmlab.ace.report import plan_grid, run_grid

    cells = plan_grid(args.file, limit=args.limit, model_ids=args.model_id, root=args.root)
    for cell in cells:
        print(cell.describe())
    if not args.dry_run:
        run_grid(cells)
    return 0


def _tasks(args: argparse.Namespace) -> int:
    written = {**build_task_sets(args.out, seed=args.seed), **build_transfer_sets(args.out, seed=args.seed)}
    for name, path in written.items():
        print(f"{name}: {path}")
    return 0


def _playbook(args: argparse.Namespace) -> int:
    from slmlab.ace.playbook import Playbook

    source = Path(args.file)
    if source.suffix in (".txt", ".md"):
        playbook = Playbook.from_text(source.read_text(encoding="utf-8"), str(source))
    else:
        playbook = Playbook.load(source)
    for problem in playbook.problems:
        print(f"warning: {problem}")
    if args.to:
        target = Path(args.to)
        if target.suffix in (".txt", ".md"):
            from slmlab.io import atomic_write_text

            atomic_write_text(target, playbook.to_text())
        else:
            playbook.save(target)
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
    summary.add_argument("paths", nargs="*", default=["results/ace"], help="run folders or results.csv files" + DEFAULT)
    summary.add_argument("--out", default=None, help="also write OUT.md and OUT.csv")
    summary.set_defaults(run=_summarize)

    grid = verbs.add_parser("grid", help="run model × task × mode from a YAML file, skipping finished cells")
    grid.add_argument("file")
    grid.add_argument("--dry-run", action="store_true", help="list the cells and whether they would run")
    grid.add_argument("--limit", type=int, default=None, help="first N samples of each split (default: all)")
    grid.add_argument("--model-id", action="append", default=[], help="only this model (repeatable)")
    grid.add_argument("--root", default=None, help="results root (default: the file's 'out' or results/ace)")
    grid.set_defaults(run=_grid)

    task_seed = inspect.signature(build_task_sets).parameters["seed"].default
    tasks = verbs.add_parser("tasks", help="regenerate the finance, medical and IoT task sets (train, test, transfer)")
    tasks.add_argument("--out", default="data/tasks", help="output folder" + DEFAULT)
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
    run.add_argument("--out", default=None, help="run folder (default results/ace/<model>/<task>/<mode>)")
    run.set_defaults(run=_run)
