"""Chapter 08 benchmark: slmlab's REINFORCE learner against TRL's GRPOTrainer (or RLOOTrainer), same reward, tasks,
steps and sampling settings: completions per second and held-out greedy pass@1 of both. Writes results/benchmarks/rl.json.

Run: ``.venv/bin/python benchmarks/rl.py [--steps N] [--algorithm grpo|rloo] [--heldout N] [--quick]`` (run nothing
else beside it: two cores are easily saturated). ``--only trl`` (or ``slmlab``) runs one side.

Both sides get the same ``RLConfig`` (``tasks_per_step`` x ``samples_per_task`` completions per optimizer step, the
same ``max_new_tokens``, temperature, top_p, learning rate, KL weight, clipping, LoRA and seed) and the same seeded
subset of ``data/tasks/rl/train``; both score completions with the sandboxed reward of ``slmlab.execution.scoring``. Seconds
are slmlab's wall time of its steps and the wall time of TRL's ``trainer.train()`` (model loading and evaluation left
out on both sides; saving checkpoints is switched off on both). Each trained adapter, and the base model once, is then
measured by greedy pass@1 on ``data/tasks/rl/heldout``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import random
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from slmlab.environment import environment_report, peak_rss_mb
from slmlab.execution.tasks import CodeTask, load_code_tasks
from slmlab.io import atomic_write_json, created_now
from slmlab.models import DEFAULT_MODEL, load_model
from slmlab.rl.config import RLConfig
from slmlab.rl.evaluate import PassAtOneSettings, pass_at_1
from slmlab.rl.tasks import default_tasks_dir
from slmlab.rl.trl_runner import ALGORITHMS, train_with_trl
from slmlab.settings import results_dir

SIDES = ("both", "slmlab", "trl")


def benchmark_config(steps: int, quick: bool, seed: int) -> RLConfig:
    """The chapter's defaults (the quick ones with ``--quick``) for ``steps`` steps, checkpoints off on both sides."""
    base = RLConfig.quick() if quick else RLConfig()
    return base.with_(steps=steps, save_every=0, seed=seed)


def train_subset(count: int, seed: int) -> list[CodeTask]:
    """A fixed seeded sample of ``count`` training tasks (in name order, so both sides see the same list)."""
    tasks = load_code_tasks(default_tasks_dir() / "train")
    return sorted(random.Random(seed).sample(tasks, min(count, len(tasks))), key=lambda task: task.name)


def heldout_pass_at_1(model: str, tasks: Sequence[CodeTask], settings: PassAtOneSettings, adapter: Path | None = None) -> float:
    """Greedy pass@1 on ``tasks`` of ``model``, with the PEFT adapter at ``adapter`` when given."""
    options = {"adapter": str(adapter)} if adapter is not None else {}
    lm = load_model(model, backend="torch", **options)
    return round(float(pass_at_1(lm, tasks, settings)["solved"].mean()), 4)


def mean_metric(run_dir: Path, key: str) -> float | None:
    """The mean of ``key`` over a learner run's ``metrics.jsonl`` (None when the file or the key is missing)."""
    path = run_dir / "metrics.jsonl"
    values = [row[key] for row in map(json.loads, path.read_text().splitlines() if path.is_file() else ()) if key in row]
    return round(sum(values) / len(values), 4) if values else None


def run_slmlab(config: RLConfig, tasks: Sequence[CodeTask], run_dir: Path, model: str) -> dict:
    from slmlab.rl.learner import train_policy

    result = train_policy(config, tasks, run_dir, model=model, resume=False, progress=False)
    return {
        "steps": result.steps,
        "completions": result.completions,
        "seconds": round(result.seconds, 2),
        "completions_per_s": round(result.completions / result.seconds, 3) if result.seconds else None,
        "mean_reward": mean_metric(result.run_dir, "reward"),
        "adapter_dir": result.adapter_dir,
    }


def run_trl(config: RLConfig, tasks: Sequence[CodeTask], run_dir: Path, model: str, algorithm: str) -> dict:
    result = train_with_trl(config, tasks, run_dir, model=model, algorithm=algorithm, progress=False)
    return {
        "algorithm": algorithm,
        "steps": result.steps,
        "completions": result.completions,
        "seconds": round(result.seconds, 2),
        "completions_per_s": round(result.completions_per_s, 3),
        "mean_reward": round(result.mean_reward, 4),
        "adapter_dir": result.adapter_dir,
    }


def measure(args: argparse.Namespace, config: RLConfig, work: Path) -> dict:
    """Train the chosen sides, then the held-out pass@1 of each adapter and of the base model."""
    tasks = train_subset(args.train_tasks, config.seed)
    heldout = load_code_tasks(default_tasks_dir() / "heldout")[: args.heldout or None]
    settings = PassAtOneSettings(max_new_tokens=args.eval_tokens)
    rows: dict[str, dict | None] = {"slmlab": None, "trl": None}
    if args.only in ("both", "slmlab"):
        rows["slmlab"] = run_slmlab(config, tasks, work / "slmlab", args.model)
    if args.only in ("both", "trl"):
        rows["trl"] = run_trl(config, tasks, work / "trl", args.model, args.algorithm)
    for row in filter(None, rows.values()):
        row["heldout_pass_at_1"] = heldout_pass_at_1(args.model, heldout, settings, row.pop("adapter_dir"))
    ours, theirs = rows["slmlab"], rows["trl"]
    ratio = (
        round(ours["completions_per_s"] / theirs["completions_per_s"], 2)
        if ours and theirs and ours["completions_per_s"] and theirs["completions_per_s"]
        else None
    )
    return {
        "train_tasks": [task.name for task in tasks],
        "heldout_tasks": len(heldout),
        "eval": {"max_new_tokens": settings.max_new_tokens, "strategy": "greedy"},
        **rows,
        "ratio_completions_per_s": ratio,
        "base_heldout_pass_at_1": heldout_pass_at_1(args.model, heldout, settings),
    }


def print_table(report: dict) -> None:
    print(f"{'side':10s} {'completions':>11s} {'seconds':>9s} {'compl/s':>9s} {'reward':>8s} {'held-out pass@1':>16s}")
    for side in ("slmlab", "trl"):
        row = report[side]
        if row:
            name = side if side == "slmlab" else f"trl-{row['algorithm']}"
            print(
                f"{name:10s} {row['completions']:11d} {row['seconds']:9.1f} {row['completions_per_s']:9.3f} "
                f"{row['mean_reward'] if row['mean_reward'] is not None else float('nan'):8.3f} "
                f"{row['heldout_pass_at_1']:16.3f}"
            )
    print(f"{'base':10s} {'':11s} {'':9s} {'':9s} {'':8s} {report['base_heldout_pass_at_1']:16.3f}")
    if report["ratio_completions_per_s"] is not None:
        print(f"slmlab / TRL completions per second: {report['ratio_completions_per_s']}x")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6, help="optimizer steps of each side (default: %(default)s)")
    parser.add_argument("--algorithm", choices=ALGORITHMS, default="grpo", help="TRL's trainer (default: %(default)s)")
    parser.add_argument("--heldout", type=int, default=0, help="first N held-out tasks (default: all)")
    parser.add_argument("--train-tasks", type=int, default=16, help="size of the seeded training subset (default: %(default)s)")
    parser.add_argument(
        "--eval-tokens",
        type=int,
        default=PassAtOneSettings().max_new_tokens,
        help="max new tokens of a held-out reply (default: %(default)s)",
    )
    parser.add_argument("--model", default=DEFAULT_MODEL, help="base model (default: %(default)s)")
    parser.add_argument("--only", choices=SIDES, default="both", help="run one side only (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=RLConfig().seed, help="seed of both sides (default: %(default)s)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="at most 2 steps, 4 tasks, 4 held-out tasks, 48-token replies: checks the script, not the speed",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.train_tasks = min(args.steps, 2), min(args.train_tasks, 4)
        args.heldout, args.eval_tokens = min(args.heldout or 4, 4), min(args.eval_tokens, 48)
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    config = benchmark_config(args.steps, args.quick, args.seed)
    with tempfile.TemporaryDirectory() as folder:
        report = {
            "benchmark": "rl",
            "created": created_now(),
            "command": "python benchmarks/rl.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "environment": environment_report() | {"trl version": importlib.metadata.version("trl")},
            "model": args.model,
            "config": config.as_dict(),
            **measure(args, config, Path(folder)),
        }
    report["peak_rss_mb"] = round(peak_rss_mb(), 1)
    path = atomic_write_json(results_dir("benchmarks") / "rl.json", report)
    print_table(report)
    print(f"-> {path}")


if __name__ == "__main__":
    main()
