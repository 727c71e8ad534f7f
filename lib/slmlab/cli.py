"""The ``slmlab`` command: a thin dispatcher over the library's entry points.

    slmlab course [--chapters 00-03] [--quick] [--seed N] [--model NAME] [-p KEY=VALUE ...]
    slmlab models                      registry names and where each comes from
    slmlab prepare [NAME]              resolve (convert or download) a model ahead of time
    slmlab generate "PROMPT" [...]     one reply, any strategy, either backend
    slmlab env                         versions, device and memory
    slmlab patterns validate [FOLDER]  validate pattern YAML (file, line and field of every problem)
    slmlab data [--patterns DIR] [--out DIR] [--seed N]
    slmlab train [--data DIR] [--out DIR] [--steps N] [--backend B] [--fresh]
    slmlab eval [--adapter DIR] [--data DIR] [--limit N]
    slmlab adapter convert SRC OUT --to mlx|peft [--base DIR]
    slmlab report [--quick] [--latex] [--screens]   chapter 09: report, figures, video script, paper tables
    slmlab demo [lora|ace|mcts|lm|rl|all]            each lever's before/after in the terminal
    slmlab grid FILE.yaml [--dry-run] [--address HOST:PORT]   a parameter sweep as Ray tasks

Option defaults are read from the library's config dataclasses and signatures, so each is written once.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import sys
from collections.abc import Callable

from slmlab.ace.cli import add_ace_commands
from slmlab.adapters import convert_adapter
from slmlab.course import run_course
from slmlab.environment import environment_report
from slmlab.errors import SlmLabError
from slmlab.generation import STRATEGIES, DecodingConfig
from slmlab.grid_cli import add_grid_command
from slmlab.lora import spec as lora
from slmlab.lora.datagen import generate_dataset
from slmlab.lora.evaluation import compare_models
from slmlab.lora.patterns import check_patterns_cli, load_patterns
from slmlab.lora.spec import DataConfig, TrainConfig
from slmlab.lora.training import train_lora
from slmlab.mcts.cli import add_mcts_commands
from slmlab.models import load_model, resolve_model
from slmlab.models.registry import DEFAULT_MODEL, REGISTRY
from slmlab.report.cli import add_report_command
from slmlab.report.demo_cli import add_demo_command
from slmlab.rl.cli import add_rl_commands
from slmlab.runlog import use_wandb_option
from slmlab.spec import results_path, shown
from slmlab.tinylm.cli import add_lm_commands

DEFAULT = " (default: %(default)s)"  # appended to a help text: argparse fills in the option's default
ARTIFACT = " (default: %s/ of the artifacts tree, see slmlab.settings.artifacts_root)"


def _defaults_of(function: Callable) -> dict[str, object]:
    """The keyword defaults of ``function``, so an option's default is the library's, written once."""
    return {name: p.default for name, p in inspect.signature(function).parameters.items() if p.default is not p.empty}


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
    report = run_course(
        chapters=args.chapters,
        parameters=dict(args.parameter),
        quick=True if args.quick else None,
        seed=args.seed,
        model=args.model,
        kernel_name=args.kernel,
    )
    print(report.table())
    return 0


def _models(args: argparse.Namespace) -> int:
    for spec in REGISTRY.values():
        source = f"packaged ({spec.package})" if spec.offline else f"hub {spec.hf_id}"
        default = "  [default]" if spec.name == DEFAULT_MODEL else ""
        print(f"{spec.name:24} {source:40} {spec.description}{default}")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    print(resolve_model(args.model))
    return 0


def _generate(args: argparse.Namespace) -> int:
    config = DecodingConfig(
        strategy=args.strategy,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        num_beams=args.beams,
        seed=args.seed,
    )
    model = load_model(args.model, backend=args.backend)
    print(model.chat(args.prompt, config))
    return 0


def _env(args: argparse.Namespace) -> int:
    print(json.dumps(environment_report(), indent=2))
    return 0


def _patterns(args: argparse.Namespace) -> int:
    return check_patterns_cli(args.folder)


def _data(args: argparse.Namespace) -> int:
    config = DataConfig(
        variants_per_prompt=args.variants, augmentation_file=args.augmentation, phrasings_per_fact=args.phrasings, seed=args.seed
    )
    summary = generate_dataset(load_patterns(args.patterns), args.out, config)
    print(f"wrote {summary.counts} to {summary.folder}")
    return 0


def _train(args: argparse.Namespace) -> int:
    config = TrainConfig(
        steps=args.steps, batch_size=args.batch_size, learning_rate=args.learning_rate, rank=args.rank, seed=args.seed
    )
    result = train_lora(args.data, args.out, args.model, config, backend=args.backend, resume=not args.fresh)
    print(f"adapter: {result.adapter_dir}  metrics: {result.metrics_path}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    comparison = compare_models(args.model, args.adapter, args.data, args.results, backend=args.backend, limit=args.limit)
    summary = comparison.summary
    print(json.dumps({k: summary[k] for k in ("baseline", "tuned", "improvement")}, indent=2))
    return 0


def _adapter(args: argparse.Namespace) -> int:
    print(convert_adapter(args.src, args.out, to=args.to, base_model_dir=args.base))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slmlab", description="SLM Lab: teach a small language model new tricks.")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_setup_commands(commands)
    _add_pattern_commands(commands)
    _add_data_command(commands)
    _add_train_command(commands)
    _add_eval_command(commands)
    _add_adapter_commands(commands)
    add_ace_commands(commands)
    add_mcts_commands(commands)
    add_report_command(commands)
    add_demo_command(commands)
    add_lm_commands(commands)
    add_rl_commands(commands)
    add_grid_command(commands)
    parser.set_defaults(cli_parser=build_parser)  # a grid file is checked against this very command line
    return parser


def _add_setup_commands(commands) -> None:
    course = commands.add_parser("course", help="run the numbered notebooks headless with papermill")
    course.add_argument("--chapters", default=None, help="e.g. 00-03,05 (default: all)")
    course.add_argument("--quick", action="store_true", help="small data and few steps (also SLMLAB_QUICK=1)")
    course.add_argument("--seed", type=int, default=None, help="seed for every chapter (default: each notebook's)")
    course.add_argument("--model", default=None, help=f"model name (default: {DEFAULT_MODEL})")
    course.add_argument("--kernel", default=None, help="Jupyter kernel name (default: the notebook's)")
    course.add_argument("-p", "--parameter", type=_parameter, action="append", default=[], metavar="KEY=VALUE")
    course.set_defaults(run=_course)

    commands.add_parser("models", help="list the model registry").set_defaults(run=_models)

    prepare = commands.add_parser("prepare", help="convert or download a model so later runs start at once")
    prepare.add_argument("model", nargs="?", default=DEFAULT_MODEL, help="model name" + DEFAULT)
    prepare.set_defaults(run=_prepare)

    decoding = DecodingConfig()
    generate = commands.add_parser("generate", help="generate one reply")
    generate.add_argument("prompt")
    generate.add_argument("--model", default=DEFAULT_MODEL, help="model name" + DEFAULT)
    generate.add_argument("--backend", default="auto", help="auto, torch, mlx or llamacpp" + DEFAULT)
    generate.add_argument("--strategy", default=decoding.strategy, choices=STRATEGIES, help="decoding" + DEFAULT)
    generate.add_argument("--max-new-tokens", type=int, default=decoding.max_new_tokens, help="reply length" + DEFAULT)
    generate.add_argument("--temperature", type=float, default=decoding.temperature, help="sampling temperature" + DEFAULT)
    generate.add_argument("--top-k", type=int, default=decoding.top_k, help="sample from the k likeliest, 0 = off" + DEFAULT)
    generate.add_argument("--top-p", type=float, default=decoding.top_p, help="nucleus sampling, 1.0 = off" + DEFAULT)
    generate.add_argument("--beams", type=int, default=decoding.num_beams, help="beams of --strategy beam" + DEFAULT)
    generate.add_argument("--seed", type=int, default=decoding.seed, help="sampling seed" + DEFAULT)
    generate.set_defaults(run=_generate)

    commands.add_parser("env", help="print versions, device and memory").set_defaults(run=_env)


def _add_pattern_commands(commands) -> None:
    patterns = commands.add_parser(lora.PATTERNS_COMMAND, help="pattern tools")
    pattern_commands = patterns.add_subparsers(dest="patterns_command", required=True)
    validate = pattern_commands.add_parser("validate", help="check the YAML files; every problem with file, line, field")
    validate.add_argument("folder", nargs="?", default="patterns", help="pattern folder" + DEFAULT)
    validate.set_defaults(run=_patterns)


def _add_data_command(commands) -> None:
    config = DataConfig()
    data = commands.add_parser(lora.DATA_COMMAND, help="generate train/valid/test JSONL from the patterns")
    data.add_argument("--patterns", default="patterns", help="pattern folder" + DEFAULT)
    data.add_argument("--out", default=None, help="output folder" + ARTIFACT % shown(lora.data_dir))
    data.add_argument(
        "--variants", type=int, default=config.variants_per_prompt, help="augmented copies per training prompt" + DEFAULT
    )
    data.add_argument(
        "--augmentation", default=config.augmentation_file, help="knowledge-augmentation template file, '' for none" + DEFAULT
    )
    data.add_argument("--phrasings", type=int, default=config.phrasings_per_fact, help="augmented phrasings per fact" + DEFAULT)
    data.add_argument("--seed", type=int, default=config.seed, help="augmentation and split seed" + DEFAULT)
    data.set_defaults(run=_data)


def _add_train_command(commands) -> None:
    config = TrainConfig()
    backend = _defaults_of(train_lora)["backend"]
    train = commands.add_parser(lora.TRAIN_COMMAND, help="LoRA-train the model on the generated data (resumes by default)")
    train.add_argument("--data", default=None, help="folder with train.jsonl and valid.jsonl" + ARTIFACT % shown(lora.data_dir))
    train.add_argument("--out", default=None, help="adapter folder" + ARTIFACT % shown(lora.adapter_dir))
    train.add_argument("--model", default=DEFAULT_MODEL, help="base model" + DEFAULT)
    train.add_argument("--backend", default=backend, help="auto, torch or mlx" + DEFAULT)
    train.add_argument("--steps", type=int, default=config.steps, help="optimiser steps" + DEFAULT)
    train.add_argument("--batch-size", type=int, default=config.batch_size, help="rows per step" + DEFAULT)
    train.add_argument("--learning-rate", type=float, default=config.learning_rate, help="peak learning rate" + DEFAULT)
    train.add_argument("--rank", type=int, default=config.rank, help="LoRA rank" + DEFAULT)
    train.add_argument("--seed", type=int, default=config.seed, help="batch order and LoRA init seed" + DEFAULT)
    train.add_argument("--fresh", action="store_true", help="ignore existing checkpoints")
    train.set_defaults(run=_train)


def _add_eval_command(commands) -> None:
    defaults = _defaults_of(compare_models)
    evaluate = commands.add_parser(lora.EVAL_COMMAND, help="baseline vs tuned on the held-out test set")
    evaluate.add_argument("--adapter", default=None, help="adapter folder" + ARTIFACT % shown(lora.adapter_dir))
    evaluate.add_argument("--data", default=None, help="folder with test.jsonl" + ARTIFACT % shown(lora.data_dir))
    evaluate.add_argument("--results", default=None, help="where the comparison goes" + ARTIFACT % shown(results_path))
    evaluate.add_argument("--model", default=DEFAULT_MODEL, help="base model" + DEFAULT)
    evaluate.add_argument("--backend", default=defaults["backend"], help="auto, torch, mlx or llamacpp" + DEFAULT)
    evaluate.add_argument("--limit", type=int, default=defaults["limit"], help="test rows, spread over categories (default: all)")
    evaluate.set_defaults(run=_eval)


def _add_adapter_commands(commands) -> None:
    adapter = commands.add_parser("adapter", help="adapter tools")
    adapter_commands = adapter.add_subparsers(dest="adapter_command", required=True)
    convert = adapter_commands.add_parser("convert", help="convert a LoRA adapter between PEFT and mlx-lm")
    convert.add_argument("src")
    convert.add_argument("out")
    convert.add_argument("--to", required=True, choices=("mlx", "peft"))
    convert.add_argument("--base", default=None, help="base model folder (checks the adapter fits it)")
    convert.set_defaults(run=_adapter)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]  # what a launcher (slmlab lm train --nproc) passes on
    use_wandb_option(args)
    try:
        return args.run(args)
    except (SlmLabError, ValueError, FileNotFoundError) as problem:
        print(f"slmlab: error: {problem}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("slmlab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
