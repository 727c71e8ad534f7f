"""The ``slmlab`` command: a thin dispatcher over the library's entry points.

    slmlab course [--chapters 00-03] [--quick] [--seed N] [--model NAME] [-p KEY=VALUE ...]
    slmlab models                      registry names and where each comes from
    slmlab prepare [NAME]              resolve (convert or download) a model ahead of time
    slmlab generate "PROMPT" [...]     one reply, any strategy, either backend
    slmlab env                         versions, device and memory
"""

from __future__ import annotations

import argparse
import ast
import json
import sys

from slmlab.errors import SlmLabError
from slmlab.generation import STRATEGIES
from slmlab.models.registry import DEFAULT_MODEL


def _parameter(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` with VALUE read as a Python literal when it is one (numbers, True, lists)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got '{text}'")
    try:
        return key, ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return key, raw


def _course(args: argparse.Namespace) -> int:
    from slmlab.course import run_course

    report = run_course(
        chapters=args.chapters, parameters=dict(args.parameter), quick=True if args.quick else None,
        seed=args.seed, model=args.model, kernel_name=args.kernel,
    )
    print(report.table())
    return 0


def _models(args: argparse.Namespace) -> int:
    from slmlab.models.registry import REGISTRY

    for spec in REGISTRY.values():
        source = f"packaged ({spec.package})" if spec.offline else f"hub {spec.hf_id}"
        default = "  [default]" if spec.name == DEFAULT_MODEL else ""
        print(f"{spec.name:24} {source:40} {spec.description}{default}")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from slmlab.models import resolve_model

    print(resolve_model(args.model))
    return 0


def _generate(args: argparse.Namespace) -> int:
    from slmlab.generation import DecodingConfig
    from slmlab.models import load_model

    config = DecodingConfig(
        strategy=args.strategy, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
        top_k=args.top_k, top_p=args.top_p, num_beams=args.beams, seed=args.seed,
    )
    model = load_model(args.model, backend=args.backend)
    print(model.chat(args.prompt, config))
    return 0


def _env(args: argparse.Namespace) -> int:
    from slmlab.environment import environment_report

    print(json.dumps(environment_report(), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slmlab", description="SLM Lab: teach a small language model new tricks.")
    commands = parser.add_subparsers(dest="command", required=True)

    course = commands.add_parser("course", help="run the numbered notebooks headless with papermill")
    course.add_argument("--chapters", default=None, help="e.g. 00-03,05 (default: all)")
    course.add_argument("--quick", action="store_true", help="small data and few steps (also SLMLAB_QUICK=1)")
    course.add_argument("--seed", type=int, default=None)
    course.add_argument("--model", default=None, help=f"model name (default {DEFAULT_MODEL})")
    course.add_argument("--kernel", default=None, help="Jupyter kernel name (default: the notebook's)")
    course.add_argument("-p", "--parameter", type=_parameter, action="append", default=[], metavar="KEY=VALUE")
    course.set_defaults(run=_course)

    commands.add_parser("models", help="list the model registry").set_defaults(run=_models)

    prepare = commands.add_parser("prepare", help="convert or download a model so later runs start at once")
    prepare.add_argument("model", nargs="?", default=DEFAULT_MODEL)
    prepare.set_defaults(run=_prepare)

    generate = commands.add_parser("generate", help="generate one reply")
    generate.add_argument("prompt")
    generate.add_argument("--model", default=DEFAULT_MODEL)
    generate.add_argument("--backend", default="auto", help="auto, torch or mlx")
    generate.add_argument("--strategy", default="greedy", choices=STRATEGIES)
    generate.add_argument("--max-new-tokens", type=int, default=64)
    generate.add_argument("--temperature", type=float, default=0.7)
    generate.add_argument("--top-k", type=int, default=0)
    generate.add_argument("--top-p", type=float, default=1.0)
    generate.add_argument("--beams", type=int, default=4)
    generate.add_argument("--seed", type=int, default=0)
    generate.set_defaults(run=_generate)

    commands.add_parser("env", help="print versions, device and memory").set_defaults(run=_env)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (SlmLabError, ValueError) as problem:
        print(f"slmlab: error: {problem}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("slmlab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
