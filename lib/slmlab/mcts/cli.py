"""Chapter 06 on the command line: ``slmlab mcts selfplay|train|evaluate|run`` and ``slmlab serve``."""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import replace

from slmlab.models.registry import DEFAULT_MODEL

CONTROLLER_NAMES = ("scripted", "mcts")  # keep in step with slmlab.mcts.serve.CONTROLLERS (checked by a test)
DEFAULT_RUN = "results/mcts"  # --quick runs go to results/mcts-quick, so the two sizes never share a folder


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _load(args: argparse.Namespace):
    from slmlab.models import load_model

    return load_model(args.model, backend="torch")  # the search reuses transformers' KV cache


def _settings(args: argparse.Namespace):
    from slmlab.mcts.runs import ChapterSettings

    if args.run_dir is None:
        args.run_dir = DEFAULT_RUN + ("-quick" if args.quick else "")
    base = ChapterSettings.quick(args.seed) if args.quick else ChapterSettings(seed=args.seed)
    changes = {name: getattr(args, name) for name in ("simulations", "budget", "span_tokens", "n_train", "n_test",
                                                      "rounds", "episodes_per_round", "steps_per_round", "best_of")
               if getattr(args, name, None) is not None}
    return replace(base, **changes)


# --- slmlab mcts ... ------------------------------------------------------------------------------------
def _selfplay(args: argparse.Namespace) -> int:
    from slmlab.mcts.runs import chapter_items
    from slmlab.mcts.selfplay import self_play

    settings = _settings(args)
    train_items, _ = chapter_items(settings, args.qa)
    report = self_play(_load(args), train_items, args.run_dir, args.episodes, settings.selfplay(), progress=not args.debug,
                       log=print)
    if args.debug:
        for episode in report.episodes:
            print(f"  question: {episode.question}\n  gold: {episode.gold}\n  answer: {episode.visible_text!r}")
            for step in episode.trace:
                print("   ", json.dumps(step))
    print(f"{len(report.episodes)} episodes, {report.positions} positions added; replay buffer holds "
          f"{report.buffer_size}; mean reward {report.mean_reward:.3f}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from slmlab.mcts.selfplay import train_round

    settings = _settings(args)
    training = replace(settings.training(settings.rounds - 1), steps=args.steps, schedule_steps=None)
    report = train_round(args.run_dir, _load(args), settings.selfplay(), training)
    print(f"trained to step {report.step} (policy {report.policy_loss:.4f}, value {report.value_loss:.4f}); "
          f"network: {report.network_path}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from slmlab.mcts.evaluate import summarize_evaluation
    from slmlab.mcts.runs import chapter_items, evaluate_run

    settings = _settings(args)
    _, test_items = chapter_items(settings, args.qa)
    frame = evaluate_run(_load(args), args.run_dir, settings, test_items, args.methods.split(","))
    print(summarize_evaluation(frame).to_markdown(index=False))
    return 0


def _run(args: argparse.Namespace) -> int:
    from slmlab.mcts.runs import run_chapter

    settings = _settings(args)
    summary = run_chapter(_load(args), args.run_dir, settings, qa_file=args.qa)
    print(open(f"{args.run_dir}/eval_summary.md", encoding="utf-8").read())
    print(f"mean self-play reward by round: {summary['mean_reward_by_round']}")
    return 0


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--run", dest="run_dir", default=None, help="run folder (replay buffer, episodes, network, results)")
    parser.add_argument("--qa", default=None, help="a task file in chapter 05's schema instead of the generated QA")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="the smoke-run sizes of the notebook's quick mode")
    parser.add_argument("--sims", dest="simulations", type=_positive, help="simulations per macro-action")
    parser.add_argument("--budget", type=_positive, help="token budget of an answer (thoughts included)")
    parser.add_argument("--span-tokens", type=_positive, help="tokens per CONTINUE / RESAMPLE span")
    parser.add_argument("--n-train", type=_positive, help="self-play items")
    parser.add_argument("--n-test", type=_positive, help="held-out test items")


def add_mcts_commands(commands) -> None:
    """Register ``slmlab mcts ...`` and ``slmlab serve`` on the main parser's subcommands."""
    mcts = commands.add_parser("mcts", help="chapter 06: MCTS self-play, training and evaluation")
    sub = mcts.add_subparsers(dest="mcts_command", required=True)

    selfplay = sub.add_parser("selfplay", help="play self-play episodes into the run's replay buffer")
    _common(selfplay)
    selfplay.add_argument("--episodes", type=_positive, default=1)
    selfplay.add_argument("--debug", action="store_true", help="print each episode's question, answer and macro trace")
    selfplay.set_defaults(run=_selfplay)

    train = sub.add_parser("train", help="train the policy-value network on the replay buffer")
    _common(train)
    train.add_argument("--steps", type=_positive, default=100, help="global step to train up to (resumes)")
    train.set_defaults(run=_train)

    evaluate = sub.add_parser("evaluate", help="MCTS controller vs greedy vs best-of-n on held-out QA")
    _common(evaluate)
    evaluate.add_argument("--methods", default="greedy,best-of-n,mcts")
    evaluate.add_argument("--best-of", type=_positive)
    evaluate.set_defaults(run=_evaluate)

    run = sub.add_parser("run", help="the whole chapter: self-play rounds, training, evaluation")
    _common(run)
    run.add_argument("--rounds", type=_positive)
    run.add_argument("--episodes-per-round", type=_positive)
    run.add_argument("--steps-per-round", type=_positive)
    run.add_argument("--best-of", type=_positive)
    run.set_defaults(run=_run)

    _add_serve(commands)


# --- slmlab serve ---------------------------------------------------------------------------------------
def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from slmlab.mcts.serve import CONTROLLERS, create_app
    from slmlab.models import load_model

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    options = {"network": args.network, "simulations": args.simulations} if args.controller == "mcts" else {}
    # load before listening: a missing model is a one-line CLI error, not a failing first request
    backend = "torch" if args.controller == "mcts" else args.backend  # the search reuses transformers' KV cache
    controller = CONTROLLERS[args.controller](load_model(args.model, backend=backend), **options)
    app = create_app(lambda: controller, max_budget=args.max_budget)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def _add_serve(commands) -> None:
    serve = commands.add_parser("serve", help="chapter 06: serve a macro-action controller over HTTP")
    serve.add_argument("--model", default=DEFAULT_MODEL)
    serve.add_argument("--backend", default="auto", help="auto, torch or mlx (the mcts controller always uses torch)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 exposes it to the network)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--max-budget", type=_positive, default=512, help="largest token budget a request may ask for")
    serve.add_argument("--controller", default="scripted", choices=CONTROLLER_NAMES,
                       help="the policy that picks macro-actions")
    serve.add_argument("--network", default=None, help="mcts: a trained network (e.g. results/mcts/network/network.pt)")
    serve.add_argument("--sims", dest="simulations", type=_positive, default=8, help="mcts: simulations per move")
    serve.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    serve.set_defaults(run=_serve)
