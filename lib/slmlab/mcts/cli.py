"""``slmlab serve``: chapter 06's controller behind HTTP (``POST /generate``, ``GET /health``)."""

from __future__ import annotations

import argparse
import logging

from slmlab.models.registry import DEFAULT_MODEL

CONTROLLER_NAMES = ("scripted",)  # keep in step with slmlab.mcts.serve.CONTROLLERS (checked by a test)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from slmlab.mcts.serve import CONTROLLERS, create_app
    from slmlab.models import load_model

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # load before listening: a missing model is a one-line CLI error, not a failing first request
    controller = CONTROLLERS[args.controller](load_model(args.model, backend=args.backend))
    app = create_app(lambda: controller, max_budget=args.max_budget)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_mcts_commands(commands) -> None:
    """Register ``slmlab serve`` on the main parser's subcommands."""
    serve = commands.add_parser("serve", help="chapter 06: serve a macro-action controller over HTTP")
    serve.add_argument("--model", default=DEFAULT_MODEL)
    serve.add_argument("--backend", default="auto", help="auto, torch or mlx")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 exposes it to the network)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--max-budget", type=_positive, default=512, help="largest token budget a request may ask for")
    serve.add_argument("--controller", default="scripted", choices=CONTROLLER_NAMES,
                       help="the policy that picks macro-actions")
    serve.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    serve.set_defaults(run=_serve)
