"""Chapter 06 on the command line: ``slmlab mcts selfplay|train|evaluate|run`` and ``slmlab serve``.

Defaults are the library's: the server's and the MCTS controller's from :mod:`slmlab.mcts.spec`; the run's sizes
from :class:`slmlab.mcts.spec.ChapterSettings` (its quick sizes with ``--quick``), so the parser names it instead of
printing numbers that depend on the mode, and an option left out is not passed on. Imported by ``slmlab`` at every
start, this module loads neither torch nor fastapi: each command imports what it runs.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import replace
from pathlib import Path

from slmlab import models
from slmlab.mcts import spec
from slmlab.mcts.spec import ChapterSettings, CodeComparisonConfig
from slmlab.models.registry import DEFAULT_MODEL
from slmlab.rl import spec as rl_spec
from slmlab.runlog import add_wandb_option
from slmlab.settings import artifacts_root, quick_mode
from slmlab.spec import shown

CONTROLLER_NAMES = spec.CONTROLLERS
DEFAULT = " (default: %(default)s)"  # appended to a help text: argparse fills in the option's default
FROM_SETTINGS = " (default: ChapterSettings, or its quick sizes with --quick)"
SETTINGS_FIELDS = (
    "seed",
    "simulations",
    "parallel_leaves",
    "budget",
    "span_tokens",
    "n_train",
    "n_test",
    "rounds",
    "episodes_per_round",
    "steps_per_round",
    "best_of",
)  # options named as ChapterSettings' fields


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _load(args: argparse.Namespace):
    return models.load_model(args.model, backend="torch")  # the search reuses transformers' KV cache


def _given(args: argparse.Namespace, names) -> dict:
    """The options among ``names`` that were given on the command line (the others keep the library's default)."""
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def _quick(args: argparse.Namespace) -> bool:
    """--quick, or SLMLAB_QUICK like every other command."""
    return quick_mode(True if args.quick else None)


def chapter_settings(args: argparse.Namespace) -> ChapterSettings:
    """The :class:`~slmlab.mcts.spec.ChapterSettings` of a parsed ``slmlab mcts ...`` command line (the quick
    sizes with ``--quick`` or ``SLMLAB_QUICK``, changed by the options given); also fills in the default run folder."""
    from slmlab.mcts.runs import default_run_dir  # lazy: torch loads only when a command runs

    quick = _quick(args)
    if args.run_dir is None:
        args.run_dir = str(default_run_dir(quick=quick))
    base = ChapterSettings.quick() if quick else ChapterSettings()
    return replace(base, **_given(args, SETTINGS_FIELDS))


# --- slmlab mcts ... ------------------------------------------------------------------------------------
def _selfplay(args: argparse.Namespace) -> int:
    from slmlab.mcts.runs import chapter_items, topic_drift_embedder  # lazy: torch loads only when a command runs
    from slmlab.mcts.selfplay import self_play  # lazy: torch loads only when a command runs

    settings = chapter_settings(args)
    train_items, _ = chapter_items(settings, args.qa)
    embedder = topic_drift_embedder(**_given(args, ("topic_drift",)))
    report = self_play(
        _load(args), train_items, args.run_dir, args.episodes, settings.selfplay(), embedder, progress=not args.debug, log=print
    )
    if args.debug:
        for episode in report.episodes:
            print(f"  question: {episode.question}\n  gold: {episode.gold}\n  answer: {episode.visible_text!r}")
            for step in episode.trace:
                print("   ", json.dumps(step))
    print(
        f"{len(report.episodes)} episodes, {report.positions} positions added; replay buffer holds "
        f"{report.buffer_size}; mean reward {report.mean_reward:.3f}"
    )
    return 0


def _train(args: argparse.Namespace) -> int:
    from slmlab.mcts.selfplay import train_round  # lazy: torch loads only when a command runs

    settings = chapter_settings(args)
    training = replace(settings.training(settings.rounds - 1), steps=args.steps, schedule_steps=None)
    report = train_round(args.run_dir, _load(args), settings.selfplay(), training)
    print(
        f"trained to step {report.step} (policy {report.policy_loss:.4f}, value {report.value_loss:.4f}); "
        f"network: {report.network_path}"
    )
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from slmlab.mcts.evaluate import METHODS, summarize_evaluation  # lazy: torch loads only when a command runs
    from slmlab.mcts.runs import chapter_items, evaluate_run  # lazy: torch loads only when a command runs

    settings = chapter_settings(args)
    _, test_items = chapter_items(settings, args.qa)
    methods = args.methods.split(",") if args.methods else list(METHODS)
    frame = evaluate_run(_load(args), args.run_dir, settings, test_items, methods, **_given(args, ("topic_drift",)))
    print(summarize_evaluation(frame).to_markdown(index=False))
    return 0


def _run(args: argparse.Namespace) -> int:
    from slmlab.mcts.evaluate import METHODS  # lazy: torch loads only when a command runs
    from slmlab.mcts.runs import run_chapter  # lazy: torch loads only when a command runs

    settings = chapter_settings(args)
    summary = run_chapter(_load(args), args.run_dir, settings, qa_file=args.qa, methods=METHODS, **_given(args, ("topic_drift",)))
    print(Path(args.run_dir, spec.EVAL_SUMMARY_FILE).read_text(encoding="utf-8"))
    print(f"mean self-play reward by round: {summary['mean_reward_by_round']}")
    return 0


def code_comparison_config(args: argparse.Namespace) -> CodeComparisonConfig:
    """The :class:`~slmlab.mcts.spec.CodeComparisonConfig` of ``slmlab mcts code``: its quick sizes with ``--quick``
    (or ``SLMLAB_QUICK``), then the options given."""
    base = CodeComparisonConfig().quick() if _quick(args) else CodeComparisonConfig()
    search = replace(base.search, **_given(args, ("simulations",)))
    limits = {} if args.limit is None else {"heldout_limit": args.limit, "humaneval_limit": args.limit}
    sets = {"task_sets": tuple(args.tasks.split(","))} if args.tasks else {}
    return replace(base, search=search, adapter=not args.no_adapter, **limits, **sets)


def _code(args: argparse.Namespace) -> int:
    from slmlab.mcts.code_compare import compare_code  # lazy: torch loads only when a command runs

    root = artifacts_root(_quick(args))  # quick runs write the quick tree
    record = compare_code(args.model, root, code_comparison_config(args), args.adapter)
    print(record["reading"])
    return 0


def _add_code(sub) -> None:
    code = sub.add_parser(
        "code", help="part two: greedy vs sampling + filtering vs MCTS on code, valued by visible tests, scored on hidden"
    )
    code.add_argument("--model", default=DEFAULT_MODEL, help="model name" + DEFAULT)
    code.add_argument("--quick", action="store_true", help="a few tasks and a smaller search (CodeComparisonConfig.quick)")
    code.add_argument(
        "--tasks", default=None, help=f"comma-separated task sets among {', '.join(spec.CODE_TASK_SETS)} (default: all)"
    )
    code.add_argument("--limit", type=_positive, default=None, help="the first N tasks of each set (default: all; quick: a few)")
    code.add_argument(
        "--sims", dest="simulations", type=_positive, help="search simulations per task (default: CodeSearchConfig)"
    )
    code.add_argument("--adapter", default=None, help=f"chapter 08's adapter (default: {shown(rl_spec.adapter_dir)})")
    code.add_argument("--no-adapter", action="store_true", help="compare with the base model only")
    code.set_defaults(run=_code)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model name" + DEFAULT)
    parser.add_argument(
        "--run",
        dest="run_dir",
        default=None,
        help="run folder: replay buffer, episodes, network, results "
        f"(default: {shown(spec.run_dir)} of the full or, with --quick, the quick artifacts tree)",
    )
    parser.add_argument("--qa", default=None, help="a task file in chapter 05's schema instead of the generated QA")
    parser.add_argument("--seed", type=int, help="run seed" + FROM_SETTINGS)
    parser.add_argument("--quick", action="store_true", help="the smoke-run sizes of the notebook's quick mode")
    parser.add_argument("--sims", dest="simulations", type=_positive, help="simulations per macro-action" + FROM_SETTINGS)
    parser.add_argument(
        "--leaves",
        dest="parallel_leaves",
        type=_positive,
        help="simulations per batched round (virtual loss; their states decoded in one batch)" + FROM_SETTINGS,
    )
    parser.add_argument("--budget", type=_positive, help="token budget of an answer, thoughts included" + FROM_SETTINGS)
    parser.add_argument("--span-tokens", type=_positive, help="tokens per CONTINUE / RESAMPLE span" + FROM_SETTINGS)
    parser.add_argument("--n-train", type=_positive, help="self-play items" + FROM_SETTINGS)
    parser.add_argument("--n-test", type=_positive, help="held-out test items" + FROM_SETTINGS)


def _topic_drift_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-topic-drift",
        dest="topic_drift",
        action="store_false",
        default=None,  # left out: the library's default (MiniLM topic drift on)
        help="leave the topic-drift feature 0 instead of embedding prompt and answer with the packaged MiniLM; "
        "a run folder keeps the choice its self-play was made with",
    )


def add_mcts_commands(commands) -> None:
    """Register ``slmlab mcts ...`` and ``slmlab serve`` on the main parser's subcommands."""
    mcts = commands.add_parser("mcts", help="chapter 06: MCTS self-play, training and evaluation")
    sub = mcts.add_subparsers(dest="mcts_command", required=True)

    selfplay = sub.add_parser("selfplay", help="play self-play episodes into the run's replay buffer")
    _common(selfplay)
    selfplay.add_argument("--episodes", type=_positive, default=1, help="episodes to play" + DEFAULT)
    selfplay.add_argument("--debug", action="store_true", help="print each episode's question, answer and macro trace")
    _topic_drift_option(selfplay)
    selfplay.set_defaults(run=_selfplay)

    train = sub.add_parser("train", help="train the policy-value network on the replay buffer")
    add_wandb_option(train)
    _common(train)
    train.add_argument("--steps", type=_positive, default=100, help="global step to train up to (resumes)" + DEFAULT)
    train.set_defaults(run=_train)

    evaluate = sub.add_parser("evaluate", help="MCTS controller vs greedy vs best-of-n on held-out QA")
    _common(evaluate)
    evaluate.add_argument(
        "--methods", default=None, help="comma-separated (default: every method of slmlab.mcts.evaluate.METHODS)"
    )
    evaluate.add_argument("--best-of", type=_positive, help="samples of best-of-n" + FROM_SETTINGS)
    _topic_drift_option(evaluate)
    evaluate.set_defaults(run=_evaluate)

    run = sub.add_parser("run", help="the whole chapter: self-play rounds, training, evaluation")
    add_wandb_option(run)
    _common(run)
    run.add_argument("--rounds", type=_positive, help="self-play and training rounds" + FROM_SETTINGS)
    run.add_argument("--episodes-per-round", type=_positive, help="self-play episodes per round" + FROM_SETTINGS)
    run.add_argument("--steps-per-round", type=_positive, help="training steps per round" + FROM_SETTINGS)
    run.add_argument("--best-of", type=_positive, help="samples of best-of-n" + FROM_SETTINGS)
    _topic_drift_option(run)
    run.set_defaults(run=_run)

    _add_code(sub)
    _add_serve(commands)


# --- slmlab serve ---------------------------------------------------------------------------------------
def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from slmlab.mcts.serve import CONTROLLERS, create_app  # lazy: fastapi loads for `slmlab serve` only

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    mcts_options = {"network": args.network, **_given(args, ("simulations", "topic_drift"))}
    options = mcts_options if args.controller == "mcts" else {}
    # load before listening: a missing model is a one-line CLI error, not a failing first request
    backend = "torch" if args.controller == "mcts" else args.backend  # the search reuses transformers' KV cache
    controller = CONTROLLERS[args.controller](models.load_model(args.model, backend=backend), **options)
    app = create_app(lambda: controller, max_budget=args.max_budget)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def _add_serve(commands) -> None:
    serve = commands.add_parser("serve", help="chapter 06: serve a macro-action controller over HTTP")
    serve.add_argument("--model", default=DEFAULT_MODEL, help="model name" + DEFAULT)
    serve.add_argument("--backend", default="auto", help="auto, torch or mlx; the mcts controller always uses torch" + DEFAULT)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on; 0.0.0.0 exposes it to the network" + DEFAULT)
    serve.add_argument("--port", type=int, default=8000, help="port to listen on" + DEFAULT)
    serve.add_argument(
        "--max-budget", type=_positive, default=spec.MAX_BUDGET, help="largest token budget a request may ask for" + DEFAULT
    )
    serve.add_argument(
        "--controller",
        default=CONTROLLER_NAMES[0],
        choices=CONTROLLER_NAMES,
        help="the policy that picks macro-actions" + DEFAULT,
    )
    serve.add_argument("--network", default=None, help=f"mcts: a trained network (e.g. {shown(spec.network_file)})")
    _topic_drift_option(serve)  # mcts: a network from a run made with --no-topic-drift
    serve.add_argument(
        "--sims", dest="simulations", type=_positive, help=f"mcts: simulations per move (default: {spec.SIMULATIONS})"
    )
    serve.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"), help="log level" + DEFAULT)
    serve.set_defaults(run=_serve)
