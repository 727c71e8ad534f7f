"""Chapter 07 on the command line: ``slmlab lm crawl | clean | tokenizer | train | sample | eval``, the same runs
as the notebook. Every option named after a config field takes that dataclass's default when left out.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from pathlib import Path
from urllib.parse import urlparse

from slmlab.generation import DecodingConfig
from slmlab.io import save_table
from slmlab.models import load_model
from slmlab.runlog import add_wandb_option
from slmlab.settings import artifacts_root, quick_mode
from slmlab.spec import shown
from slmlab.tinylm import spec
from slmlab.tinylm.corpus import load_documents, write_corpus_folder
from slmlab.tinylm.distributed import launch
from slmlab.tinylm.spec import CleanConfig, CrawlConfig, LMTrainConfig, ModelConfig, PrepareConfig

DEFAULT = " (default: %(default)s)"
HERE = Path()  # the artifacts root as help texts show it: paths relative to it


# --- options read from the config dataclasses --------------------------------------------------------


def add_config_options(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = (), prefix: str = "") -> None:
    """One ``--field-name`` option per scalar field of the dataclass ``cls``; each defaults to None (= the field's
    default, shown in the help), so a config built with :func:`config_from` changes only what was given."""
    hints = typing.get_type_hints(cls)
    for item in dataclasses.fields(cls):
        kind = _scalar_type(hints[item.name])
        if item.name in skip or kind is None:
            continue
        default = item.default if item.default is not dataclasses.MISSING else item.default_factory()
        flag = "--" + (prefix + item.name).replace("_", "-")
        if kind is bool:
            parser.add_argument(
                flag, dest=prefix + item.name, action=argparse.BooleanOptionalAction, default=None, help=f"(default: {default})"
            )
        else:
            parser.add_argument(
                flag, dest=prefix + item.name, type=kind, default=None, metavar=item.name.upper(), help=f"(default: {default})"
            )


def config_from(args: argparse.Namespace, cls: type, base=None, prefix: str = ""):
    """``base`` (default: ``cls()``) with the fields given on the command line replaced."""
    base = base if base is not None else cls()
    given = {
        item.name: getattr(args, prefix + item.name)
        for item in dataclasses.fields(cls)
        if getattr(args, prefix + item.name, None) is not None
    }
    return dataclasses.replace(base, **given)


def _scalar_type(hint) -> type | None:
    if hint in (int, float, str, bool):
        return hint
    options = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    return options[0] if len(options) == 1 and options[0] in (int, float, str) else None


# --- the verbs ---------------------------------------------------------------------------------------


def _crawl(args: argparse.Namespace) -> int:
    from slmlab.tinylm.crawl import crawl  # lazy: keeps `slmlab` startup free of trafilatura and lxml

    out = Path(args.out) if args.out else _default_corpus_dir(args.url)
    result = crawl(args.url, out, config_from(args, CrawlConfig))
    skipped = ", ".join(f"{reason} {count}" for reason, count in result.skipped.items() if count) or "none"
    print(
        f"{len(result.pages)} pages ({sum(page.bytes for page in result.pages):,} bytes) from {result.requests} "
        f"requests; skipped: {skipped}"
    )
    print(f"corpus folder: {result.out_dir} ({spec.MANIFEST_FILE} lists url, bytes and sha256 of each page)")
    return 0


def _clean(args: argparse.Namespace) -> int:
    from slmlab.tinylm.clean import clean_corpus  # lazy: keeps `slmlab` startup free of pandas and datasketch

    result = clean_corpus(load_documents(args.corpus), config_from(args, CleanConfig))
    out = Path(args.out) if args.out else Path(str(Path(args.corpus).resolve()).rstrip("/") + "-clean")
    write_corpus_folder(result.documents, out)
    save_table(result.report, out.with_name(out.name + "-report.csv"))
    print(result.report.to_string(index=False))
    print(f"cleaned corpus: {out} ({len(result.documents)} documents); report: {out.name}-report.csv beside it")
    return 0


def _tokenizer(args: argparse.Namespace) -> int:
    from slmlab.tinylm.prepare import prepare_corpus  # lazy: keeps `slmlab lm --help` free of torch
    from slmlab.tinylm.tokenizer import merges  # lazy: keeps `slmlab lm --help` free of transformers

    base = PrepareConfig.quick() if (args.quick or quick_mode()) else PrepareConfig()
    config = config_from(args, PrepareConfig, base)
    out = Path(args.out) if args.out else spec.data_dir(_root(args))
    data = prepare_corpus(args.corpus, out, config, progress=True)
    summary = data.summary
    print(json.dumps({key: summary[key] for key in ("documents", "bytes", "tokens", "bytes_per_token", "vocab_size")}))
    print("first merges:", "  ".join(f"{a!r}+{b!r}" for a, b in merges(data.tokenizer(), 12)))
    print(f"token folder: {data.folder}")
    return 0


def train_config(args: argparse.Namespace):
    """The :class:`~slmlab.tinylm.spec.LMTrainConfig` of a parsed ``slmlab lm train`` command line."""
    base = LMTrainConfig.quick() if (args.quick or quick_mode()) else LMTrainConfig()
    model = config_from(args, ModelConfig, base.model)
    return dataclasses.replace(config_from(args, LMTrainConfig, base), model=model)


def _train(args: argparse.Namespace) -> int:
    if args.nproc > 1 or args.nnodes > 1:
        forwarded = _without_launch_options(args.argv)
        return launch(args.nproc, forwarded, nnodes=args.nnodes, node_rank=args.node_rank, master=args.master)
    from slmlab.tinylm.training import train_lm  # lazy: keeps `slmlab lm --help` free of torch

    root = _root(args)
    result = train_lm(
        args.data or spec.data_dir(root),
        args.run_dir or spec.run_dir(root),
        train_config(args),
        resume=not args.fresh,
        device=args.device,
        tensorboard=not args.no_tensorboard,
    )
    if result.metrics_path is not None:
        print(
            f"valid loss {result.final_valid_loss:.3f} after {result.state.step} steps; "
            f"model: {result.run_dir}  metrics: {result.metrics_path}"
        )
    return 0


def _without_launch_options(argv: list[str]) -> list[str]:
    """The ``lm train ...`` arguments for the worker processes: the launcher's own options removed."""
    launch_flags = {"--nproc", "--nnodes", "--node-rank", "--master"}
    out, skip = [], False
    for item in argv:
        if skip:
            skip = False
            continue
        name = item.split("=", 1)[0]
        if name in launch_flags:
            skip = "=" not in item
            continue
        out.append(item)
    return out


def _sample(args: argparse.Namespace) -> int:
    model = load_model(str(args.model or spec.run_dir(_root(args))), backend=args.backend)
    config = DecodingConfig(
        strategy=args.strategy,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        num_beams=args.num_beams,
        seed=args.seed,
    )
    prompts = [_unescape(prompt) for prompt in args.prompt] * args.samples
    for prompt, reply in zip(prompts, model.generate(prompts, config, chat=False)):
        print(f"--- {config.describe()}\n{prompt}{reply}")
    return 0


def _unescape(text: str) -> str:
    return text.encode("utf-8").decode("unicode_escape") if "\\" in text else text


def _eval(args: argparse.Namespace) -> int:
    from slmlab.tinylm.runs import evaluate_run  # lazy: keeps `slmlab lm --help` free of torch

    root = _root(args)
    report = evaluate_run(args.model or spec.run_dir(root), args.data or spec.data_dir(root), out=args.out, samples=args.samples)
    print(json.dumps(report, indent=2, default=str))
    return 0


def _root(args: argparse.Namespace) -> Path:
    """The artifacts tree of the command line's mode: ``--quick``, else ``SLMLAB_QUICK``."""
    return artifacts_root(args.quick or None)


def _default_corpus_dir(url: str) -> Path:
    return spec.crawl_dir(artifacts_root(), (urlparse(url).hostname or "site").replace(":", "_"))


def _default(path: Path) -> str:
    """The help text's note on a default folder or file of the artifacts tree."""
    return f"(default: {shown(path)})"


# --- the parser --------------------------------------------------------------------------------------


def add_lm_commands(commands) -> None:
    """``slmlab lm ...`` under the top-level parser's subcommands."""
    lm = commands.add_parser("lm", help="chapter 07: a tiny language model trained from scratch")
    verbs = lm.add_subparsers(dest="lm_command", required=True)

    crawl = verbs.add_parser("crawl", help="gather a corpus from one web site (same site, robots.txt honoured)")
    crawl.add_argument("url")
    crawl.add_argument("--out", default=None, help="corpus folder " + _default(spec.crawl_dir(HERE, "<host>")))
    add_config_options(crawl, CrawlConfig)
    crawl.set_defaults(run=_crawl)

    clean = verbs.add_parser("clean", help="normalize, filter and de-duplicate a corpus; print the report")
    clean.add_argument("corpus", help="a text file, folder or glob")
    clean.add_argument("--out", default=None, help="cleaned corpus folder (default: <corpus>-clean)")
    add_config_options(clean, CleanConfig)
    clean.set_defaults(run=_clean)

    tokenizer = verbs.add_parser("tokenizer", help="train the BPE tokenizer and write the token files")
    tokenizer.add_argument("corpus", nargs="?", default=None, help="file, folder or glob (default: the standard library)")
    tokenizer.add_argument("--out", default=None, help="token folder " + _default(spec.data_dir(HERE)))
    tokenizer.add_argument("--quick", action="store_true", help="quick mode's sizes and artifacts tree")
    add_config_options(tokenizer, PrepareConfig)
    tokenizer.set_defaults(run=_tokenizer)

    train = verbs.add_parser("train", help="pre-train the tiny model (resumes by default; --nproc N runs torchrun DDP)")
    add_wandb_option(train)
    train.add_argument("--data", default=None, help="token folder " + _default(spec.data_dir(HERE)))
    train.add_argument("--run-dir", default=None, help="run and model folder " + _default(spec.run_dir(HERE)))
    train.add_argument("--quick", action="store_true", help="quick mode's recipe and artifacts tree")
    train.add_argument("--fresh", action="store_true", help="ignore existing checkpoints")
    train.add_argument("--device", default=None, help="cpu, cuda or mps (default: the best available)")
    train.add_argument("--no-tensorboard", action="store_true", help="skip the TensorBoard event files")
    train.add_argument("--nproc", type=int, default=1, help="processes per node, started by torchrun" + DEFAULT)
    train.add_argument("--nnodes", type=int, default=1, help="nodes of a multi-node run" + DEFAULT)
    train.add_argument("--node-rank", type=int, default=0, help="this node's rank in a multi-node run" + DEFAULT)
    train.add_argument("--master", default=None, help="HOST:PORT of node 0, for a multi-node run")
    add_config_options(train, LMTrainConfig)
    add_config_options(train, ModelConfig)
    train.set_defaults(run=_train)

    sample = verbs.add_parser("sample", help="continue a prompt with the trained model")
    sample.add_argument("prompt", nargs="+", help="text to continue (\\n and \\t are understood)")
    sample.add_argument("--model", default=None, help="model folder or checkpoint " + _default(spec.run_dir(HERE)))
    sample.add_argument("--backend", default="torch", help="torch or mlx" + DEFAULT)
    sample.add_argument("--quick", action="store_true", help="quick mode's artifacts tree")
    sample.add_argument("--strategy", default="greedy", choices=("greedy", "sample", "beam"), help=DEFAULT.strip())
    sample.add_argument("--max-new-tokens", type=int, default=64, help=DEFAULT.strip())
    sample.add_argument("--temperature", type=float, default=0.8, help=DEFAULT.strip())
    sample.add_argument("--top-k", type=int, default=0, help="0: off" + DEFAULT)
    sample.add_argument("--top-p", type=float, default=1.0, help="1.0: off" + DEFAULT)
    sample.add_argument("--num-beams", type=int, default=4, help=DEFAULT.strip())
    sample.add_argument("--samples", type=int, default=1, help="replies per prompt" + DEFAULT)
    sample.add_argument("--seed", type=int, default=0, help=DEFAULT.strip())
    sample.set_defaults(run=_sample)

    evaluate = verbs.add_parser("eval", help="perplexity, bits per byte, BLEU and ROUGE against a bigram baseline")
    evaluate.add_argument("--model", default=None, help="model folder " + _default(spec.run_dir(HERE)))
    evaluate.add_argument("--data", default=None, help="token folder " + _default(spec.data_dir(HERE)))
    evaluate.add_argument("--out", default=None, help="report JSON " + _default(spec.eval_file(HERE)))
    evaluate.add_argument("--samples", type=int, default=None, help="held-out prefixes continued (default: EvalConfig)")
    evaluate.add_argument("--quick", action="store_true", help="quick mode's artifacts tree")
    evaluate.set_defaults(run=_eval)
