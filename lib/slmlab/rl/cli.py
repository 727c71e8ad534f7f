"""Chapter 08 on the command line: ``slmlab rl tasks`` lists (or generates) the coding tasks, ``slmlab rl check``
scores one program, given by path, against one task in the sandbox (one JSON line), ``slmlab rl train`` runs
REINFORCE with a live panel and measures pass@1 before and after, and ``slmlab rl eval`` measures a model's greedy
pass@1 per family.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from slmlab.execution.scoring import score_json, score_program, validate_task
from slmlab.execution.tasks import TaskNotFoundError, load_code_tasks, load_humaneval, select_tasks, write_tasks
from slmlab.io import save_table
from slmlab.models import load_model
from slmlab.models.registry import DEFAULT_MODEL
from slmlab.rl.evaluate import PassAtOneSettings, by_family, pass_at_1
from slmlab.rl.spec import HELD_OUT, RLConfig, adapter_dir, eval_table_file, run_dir, tasks_dir
from slmlab.rl.tasks import default_tasks_dir, generate_families
from slmlab.runlog import add_wandb_option
from slmlab.settings import artifacts_root
from slmlab.spec import shown

HUMANEVAL = "humaneval"  # the --tasks value that selects HumanEval's 164 problems


def _tasks_of(args: argparse.Namespace):
    if args.tasks == HUMANEVAL:
        tasks = load_humaneval()
        return select_tasks(tasks, args.task, "HumanEval") if args.task else tasks
    return load_code_tasks(args.tasks or default_tasks_dir(), select=args.task)


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
    out = Path(args.generate)
    train, held_out = generate_families(seed=args.seed)
    for task in train + held_out:
        validate_task(task)  # every reference passes its own tests before a file is written
    for split, tasks in (("train", train), ("heldout", held_out)):
        write_tasks(tasks, out / split)
    print(f"wrote {len(train)} train and {len(held_out)} held-out tasks to {out}")
    return 0


def _check(args: argparse.Namespace) -> int:
    args.task = args.task_name
    tasks = _tasks_of(args)
    if len(tasks) != 1:
        raise TaskNotFoundError(f"'{args.task_name}' names {len(tasks)} tasks; check scores one (give its exact name)")
    code = Path(args.code_file).read_bytes()
    print(score_json(score_program(tasks[0], code)))
    return 0


def _eval(args: argparse.Namespace) -> int:
    if args.tasks is None:
        args.tasks = str(default_tasks_dir() / HELD_OUT)
    tasks = _tasks_of(args)[: args.limit or None]
    settings = PassAtOneSettings(max_new_tokens=args.max_new_tokens) if args.max_new_tokens else PassAtOneSettings()
    lm = load_model(args.model, backend="torch", adapter=args.adapter)
    results = pass_at_1(lm, tasks, settings, progress=True)
    out = Path(args.out) if args.out else eval_table_file(artifacts_root())
    save_table(results, out)
    print(by_family(results).to_string(float_format=lambda value: f"{value:.3f}"))
    print(f"per-task results: {out}")
    return 0


def _config_of(args: argparse.Namespace):

    config = RLConfig.quick() if args.quick else RLConfig()
    changes = {name: getattr(args, name) for name in TRAIN_OPTIONS if getattr(args, name) is not None}
    return config.with_(seed=args.seed, **changes)


def _train(args: argparse.Namespace) -> int:
    # lazy: the monitor and the learner load pandas, which importing slmlab.cli must not
    from slmlab.rl.monitor import LivePanel, attempts_frame, attempts_table
    from slmlab.rl.runs import train_and_measure  # lazy: as above

    config = _config_of(args)
    sets = [] if args.no_eval else [HELD_OUT] + ([HUMANEVAL] if args.humaneval else [])
    panel = LivePanel(config.steps)
    folder = Path(args.run_dir) if args.run_dir else run_dir(artifacts_root())
    try:
        chapter = train_and_measure(
            config, args.model, sets, folder, limit=args.limit, resume=not args.fresh, progress=False, callbacks=[panel]
        )
    finally:
        panel.stop()
    print(attempts_table(attempts_frame(folder)).to_string(float_format=lambda value: f"{value:.2f}"))
    for name, item in chapter.measurements.items():
        print(f"\n{name} pass@1 before -> after (points):")
        print(item.change().to_string(float_format=lambda value: f"{value:.3f}"))
    run = chapter.run
    print(f"\n{run.steps} steps, {run.completions} programs, {run.completions_per_s:.2f} programs/s; run folder {folder}")
    return 0


# RLConfig fields with a command-line option (its default is the config's, shown in --help).
TRAIN_OPTIONS = (
    "steps",
    "tasks_per_step",
    "samples_per_task",
    "max_new_tokens",
    "temperature",
    "learning_rate",
    "entropy_weight",
    "kl_weight",
    "replay_weight",
)


def _add_train(verbs) -> None:

    train = verbs.add_parser("train", help="REINFORCE on the train families; pass@1 before and after (held-out)")
    add_wandb_option(train)
    train.add_argument(
        "--model",
        default=None,
        help=f"model to put a LoRA adapter on, or 'tiny' to train one from scratch (default: {DEFAULT_MODEL})",
    )
    for name in TRAIN_OPTIONS:
        kind = type(getattr(RLConfig, name))
        train.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None, help=f"(default: {getattr(RLConfig, name)})")
    train.add_argument("--seed", type=int, default=RLConfig.seed, help="(default: %(default)s)")
    train.add_argument("--quick", action="store_true", help="a few short steps (RLConfig.quick())")
    train.add_argument("--run-dir", default=None, help=f"run folder (default: {shown(run_dir)})")
    train.add_argument("--fresh", action="store_true", help="start over instead of resuming the run folder")
    train.add_argument("--humaneval", action="store_true", help="also measure HumanEval before and after")
    train.add_argument("--no-eval", action="store_true", help="train only")
    train.add_argument("--limit", type=int, default=0, help="measure only the first N tasks of each set (0: all)")
    train.set_defaults(run=_train)


def add_rl_commands(commands) -> None:
    """``slmlab rl ...`` under the top-level parser's subcommands."""
    rl = commands.add_parser("rl", help="chapter 08: learning to code from execution feedback")
    verbs = rl.add_subparsers(dest="rl_command", required=True)
    where = f"task folder or file, or '{HUMANEVAL}' (default: {shown(tasks_dir)})"

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
    evaluate.add_argument(
        "--tasks", default=None, help=f"task folder or file, or '{HUMANEVAL}' (default: {shown(tasks_dir)}/{HELD_OUT})"
    )
    evaluate.add_argument("--task", default=None, help="a task name, a glob over names or a path")
    evaluate.add_argument("--limit", type=int, default=0, help="only the first N tasks (0: all)")
    evaluate.add_argument("--max-new-tokens", type=int, default=None, help="reply length (default: PassAtOneSettings)")
    evaluate.add_argument("--adapter", default=None, help=f"a PEFT adapter folder, e.g. {shown(adapter_dir)}")
    evaluate.add_argument("--out", default=None, help=f"per-task CSV (default: {shown(eval_table_file)})")
    evaluate.set_defaults(run=_eval)
    _add_train(verbs)
