"""Chapter 08 on the command line: ``slmlab rl tasks`` lists (or generates) the coding tasks, ``slmlab rl check``
scores one program, given by path, against one task in the sandbox (one JSON line) and ``slmlab rl eval`` measures a
model's greedy pass@1 per family.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from slmlab.models.registry import DEFAULT_MODEL

HUMANEVAL = "humaneval"  # the --tasks value that selects HumanEval's 164 problems


def default_tasks_dir() -> Path:
    """The committed task sets: ``data/tasks/rl/`` (``train/`` and ``heldout/``) of the checkout."""
    from slmlab.settings import project_root

    return project_root() / "data" / "tasks" / "rl"


def _tasks_of(args: argparse.Namespace):
    from slmlab.rl.tasks import load_humaneval, load_tasks, select_tasks

    if args.tasks == HUMANEVAL:
        tasks = load_humaneval()
        return select_tasks(tasks, args.task, "HumanEval") if args.task else tasks
    return load_tasks(args.tasks or default_tasks_dir(), select=args.task)


def _list(args: argparse.Namespace) -> int:
    if args.generate:
        return _generate(args)
    tasks = _tasks_of(args)
    for task in tasks:
        tests = "check()" if task.kind == "check" else f"{len(task.tests)} tests"
        print(f"{task.name:32s} {task.family or '-':20s} {task.kind:8s} {tests}")
    print(f"{len(tasks)} tasks")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from slmlab.rl.tasks import generate_families, validate_task, write_tasks

    out = Path(args.generate)
    train, held_out = generate_families(seed=args.seed)
    for task in train + held_out:
        validate_task(task)  # every reference passes its own tests before a file is written
    for split, tasks in (("train", train), ("heldout", held_out)):
        write_tasks(tasks, out / split)
    print(f"wrote {len(train)} train and {len(held_out)} held-out tasks to {out}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from slmlab.rl.scoring import score_json, score_program
    from slmlab.rl.tasks import TaskNotFoundError

    args.task = args.task_name
    tasks = _tasks_of(args)
    if len(tasks) != 1:
        raise TaskNotFoundError(f"'{args.task_name}' names {len(tasks)} tasks; check scores one (give its exact name)")
    code = Path(args.code_file).read_bytes()
    print(score_json(score_program(tasks[0], code)))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from slmlab.models import load_model
    from slmlab.rl.evaluate import EvalSettings, by_family, pass_at_1
    from slmlab.settings import results_dir

    if args.tasks is None:
        args.tasks = str(default_tasks_dir() / "heldout")
    tasks = _tasks_of(args)[: args.limit or None]
    settings = EvalSettings(max_new_tokens=args.max_new_tokens) if args.max_new_tokens else EvalSettings()
    results = pass_at_1(load_model(args.model, backend="torch"), tasks, settings, progress=True)
    out = Path(args.out) if args.out else results_dir("rl") / "eval.csv"
    from slmlab.io import save_table

    save_table(results, out)
    print(by_family(results).to_string(float_format=lambda value: f"{value:.3f}"))
    print(f"per-task results: {out}")
    return 0


def add_rl_commands(commands) -> None:
    """``slmlab rl ...`` under the top-level parser's subcommands."""
    rl = commands.add_parser("rl", help="chapter 08: learning to code from execution feedback")
    verbs = rl.add_subparsers(dest="rl_command", required=True)
    where = f"task folder or file, or '{HUMANEVAL}' (default: data/tasks/rl)"

    tasks = verbs.add_parser("tasks", help="list the coding tasks (or --generate the seeded families)")
    tasks.add_argument("--tasks", default=None, help=where)
    tasks.add_argument("--task", default=None, help="a task name, a glob over names or a path")
    tasks.add_argument("--generate", default=None, metavar="FOLDER", help="write the generated families here")
    tasks.add_argument("--seed", type=int, default=0, help="family generator seed (default: 0)")
    tasks.set_defaults(run=_list)

    check = verbs.add_parser("check", help="score one program against one task; prints one JSON line")
    check.add_argument("task_name", metavar="TASK", help="a task name (or path to a task file)")
    check.add_argument("code_file", metavar="CODE_FILE", help="the program, a Python file")
    check.add_argument("--tasks", default=None, help=where)
    check.set_defaults(run=_check)

    evaluate = verbs.add_parser("eval", help="greedy pass@1 of a model on tasks, per family (held-out by default)")
    evaluate.add_argument("--model", default=DEFAULT_MODEL, help="model name or folder (default: %(default)s)")
    evaluate.add_argument("--tasks", default=None, help=f"task folder or file, or '{HUMANEVAL}' (default: data/tasks/rl/heldout)")
    evaluate.add_argument("--task", default=None, help="a task name, a glob over names or a path")
    evaluate.add_argument("--limit", type=int, default=0, help="only the first N tasks (0: all)")
    evaluate.add_argument("--max-new-tokens", type=int, default=None, help="reply length (default: EvalSettings)")
    evaluate.add_argument("--out", default=None, help="per-task CSV (default: results/rl/eval.csv)")
    evaluate.set_defaults(run=_eval)

