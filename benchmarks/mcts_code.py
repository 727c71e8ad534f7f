"""MCTS over lines of code (chapter 06, part two) with and without its caches, and against sampling + filtering at the
same generated tokens. Writes results/benchmarks/mcts_code.json (seconds, tokens, sandbox runs, hidden passes, ratios).

Run: ``.venv/bin/python benchmarks/mcts_code.py [--tasks N] [--sims N] [--quick]``

The tasks are chapter 08's held-out tasks whose greedy program fails a visible test (where greedy passes, the search
stops after its first playout and there is nothing to time). On each, back to back and with the same seed:

- ``cached``: the search as the chapter runs it — a line starts from a fork of its parent's KV cache and a program is
  run on the visible tests once (recognised by its fingerprint);
- ``no_kv_forks``: every line encodes its whole prefix again before decoding (``reuse_cache=False``);
- ``no_score_cache``: every program the search values is run in the sandbox again (``cache_scores=False``);
- ``filtering``: whole programs sampled until they have spent the tokens ``cached`` spent on that task, keeping the
  one that passes most visible tests.

The three searches make the same tree from the same seed up to float rounding, so they are compared at equal hidden
pass rate (the table shows it); filtering is compared at equal tokens. Nothing else should run beside it: the
seconds are wall-clock.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import asdict, replace

from tabulate import tabulate

import slmlab
from slmlab.environment import environment_report
from slmlab.io import atomic_write_json, created_now
from slmlab.mcts.code import VisibleScorer, filter_programs, greedy_program, search_program
from slmlab.mcts.code_compare import comparison_tasks, hidden_passed
from slmlab.mcts.spec import CodeSearchConfig, code_benchmark_file
from slmlab.settings import artifacts_root

CONFIGURATIONS = {
    "cached": {},
    "no_kv_forks": {"reuse_cache": False},
    "no_score_cache": {"cache_scores": False},
}


def hard_tasks(model, config: CodeSearchConfig, count: int) -> list:
    """The first ``count`` held-out tasks whose greedy program fails a visible test."""
    chosen = []
    for task in comparison_tasks("heldout"):
        visible = task.visible_task()
        if visible is not None and VisibleScorer(visible).rate(greedy_program(model, task, config).code) < 1.0:
            chosen.append(task)
        if len(chosen) == count:
            break
    return chosen


def run_configuration(model, tasks: list, config: CodeSearchConfig, budgets: list[int] | None) -> dict:
    """One configuration over every task: seconds, tokens, sandbox runs and hidden passes (filtering when ``budgets``
    gives the tokens to spend per task)."""
    totals = {"seconds": 0.0, "tokens": 0, "sandbox_runs": 0, "hidden_passed": 0, "tokens_per_task": []}
    for index, task in enumerate(tasks):
        start = time.perf_counter()
        if budgets is None:
            result = search_program(model, task, task.visible_task(), config)
        else:
            result = filter_programs(model, task, task.visible_task(), config, token_budget=budgets[index])
        totals["seconds"] += time.perf_counter() - start
        totals["tokens"] += result.tokens
        totals["tokens_per_task"].append(result.tokens)
        totals["sandbox_runs"] += result.sandbox_runs
        totals["hidden_passed"] += hidden_passed(task, result.code)
    totals["seconds"] = round(totals["seconds"], 2)
    return totals


def _ratios(rows: dict) -> dict:
    cached = rows["cached"]
    return {
        "seconds_no_kv_forks_over_cached": round(rows["no_kv_forks"]["seconds"] / cached["seconds"], 2),
        "sandbox_runs_no_cache_over_cached": round(rows["no_score_cache"]["sandbox_runs"] / max(cached["sandbox_runs"], 1), 2),
        "seconds_no_score_cache_over_cached": round(rows["no_score_cache"]["seconds"] / cached["seconds"], 2),
        "hidden_passed_mcts_minus_filtering": cached["hidden_passed"] - rows["filtering"]["hidden_passed"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=4, help="held-out tasks greedy fails (default: 4)")
    parser.add_argument("--sims", type=int, default=None, help="simulations per search (default: CodeSearchConfig)")
    parser.add_argument("--quick", action="store_true", help="two tasks and the quick search")
    args = parser.parse_args()
    config = CodeSearchConfig().quick() if args.quick else CodeSearchConfig()
    config = replace(config, simulations=args.sims) if args.sims else config
    model = slmlab.load_model(slmlab.DEFAULT_MODEL, backend="torch")
    tasks = hard_tasks(model, config, 2 if args.quick else args.tasks)
    rows = {name: run_configuration(model, tasks, replace(config, **change), None) for name, change in CONFIGURATIONS.items()}
    rows["filtering"] = run_configuration(model, tasks, config, rows["cached"]["tokens_per_task"])
    report = {
        "created": created_now(),
        "command": " ".join(["python benchmarks/mcts_code.py", *sys.argv[1:]]),
        "quick": args.quick,
        "tasks": [task.name for task in tasks],
        "config": asdict(config),
        "configurations": rows,
        "ratios": _ratios(rows),
        "environment": {**environment_report(), "load_average": [round(x, 2) for x in os.getloadavg()]},
    }
    path = atomic_write_json(code_benchmark_file(artifacts_root(quick=False)), report)
    table = [[name, row["seconds"], row["tokens"], row["sandbox_runs"], row["hidden_passed"]] for name, row in rows.items()]
    print(tabulate(table, headers=["configuration", "seconds", "tokens", "sandbox runs", f"hidden passed of {len(tasks)}"]))
    print(report["ratios"])
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
