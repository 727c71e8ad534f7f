"""Chapter 08 benchmark: the cost of judging HumanEval where the program cannot forge the verdict. slmlab's scorer (the
program answers calls in one sandboxed process, the check runs in another) against one sandboxed process that runs
the program and HumanEval's check together (the layout of HumanEval's own harness, whose verdict a program can fake).

Run: ``.venv/bin/python benchmarks/scoring.py [--tasks N] [--workers 2] [--quick]`` (run nothing else beside it: two
cores are easily saturated). Writes results/benchmarks/scoring.json.

Two program sets over the same problems: each canonical solution, and each prompt completed by ``return None`` (a
wrong answer everywhere). The scorer's per-task plans (the calls each check makes on the reference solution) are
learned first and timed apart: a process learns each once, and a training run scores each problem many times. Both
ways must agree on which programs pass.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from slmlab.environment import environment_report, peak_rss_mb
from slmlab.execution.checking import check_plan
from slmlab.execution.sandbox import SandboxLimits, run_python
from slmlab.execution.scoring import score_programs
from slmlab.execution.tasks import CodeTask, load_humaneval
from slmlab.io import atomic_write_json, created_now
from slmlab.settings import results_dir

LIMITS = SandboxLimits()


def program_sets(tasks: Sequence[CodeTask]) -> dict[str, list[str]]:
    return {"canonical": [task.reference or "" for task in tasks], "wrong": [task.prompt + "    return None\n" for task in tasks]}


def one_process_passes(tasks: Sequence[CodeTask], programs: Sequence[str], workers: int) -> list[bool]:
    """Program and check in one sandboxed process; passed = the process ended cleanly."""

    def run(pair: tuple[CodeTask, str]) -> bool:
        task, code = pair
        source = f"{code}\n\n{task.test_code}\n\ncheck({task.entry_point})\n"
        return run_python(source, limits=LIMITS).status == "ok"

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(run, zip(tasks, programs)))


def scorer_passes(tasks: Sequence[CodeTask], programs: Sequence[str], workers: int) -> list[bool]:
    return [score.status == "passed" for score in score_programs(list(zip(tasks, programs)), LIMITS, workers=workers)]


def timed(work: Callable[[], list[bool]]) -> tuple[float, list[bool]]:
    started = time.perf_counter()
    passes = work()
    return time.perf_counter() - started, passes


def learn_plans(tasks: Sequence[CodeTask], workers: int) -> float:
    """Seconds to learn every task's plan (one checker run on the reference each); raises if one cannot be learned."""
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        plans = list(pool.map(lambda task: check_plan(task, LIMITS), tasks))
    broken = [task.name for task, plan in zip(tasks, plans) if plan.error]
    if broken:
        raise SystemExit(f"no plan for {', '.join(broken)}")
    return time.perf_counter() - started


def measure(tasks: Sequence[CodeTask], workers: int) -> dict:
    rows: dict = {"plans_seconds": round(learn_plans(tasks, workers), 2)}
    print(f"plans of {len(tasks)} tasks learned in {rows['plans_seconds']:.1f} s")
    for name, programs in program_sets(tasks).items():
        cached, again = timed(lambda programs=programs: scorer_passes(tasks, programs, workers))
        plain, together = timed(lambda programs=programs: one_process_passes(tasks, programs, workers))
        rows[name] = {
            "programs": len(programs),
            "one_process": {
                "seconds": round(plain, 2),
                "programs_per_s": round(len(programs) / plain, 2),
                "passed": sum(together),
            },
            "scorer": {"seconds": round(cached, 2), "programs_per_s": round(len(programs) / cached, 2), "passed": sum(again)},
            "ratio": round(plain / cached, 3),  # programs/s of the scorer over programs/s of one process
            "same_verdicts": sum(a == b for a, b in zip(together, again)),
        }
        print(
            f"{name}: one process {plain:.1f} s, scorer {cached:.1f} s ({rows[name]['ratio']:.2f}×), "
            f"verdicts agree on {rows[name]['same_verdicts']}/{len(programs)}"
        )
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=164, help="the first N HumanEval problems (default: all 164)")
    parser.add_argument("--workers", type=int, default=2, help="sandboxes at a time, for both ways (default 2)")
    parser.add_argument("--quick", action="store_true", help="20 problems: checks the script, not the speed")
    args = parser.parse_args(argv)
    tasks = load_humaneval()[: 20 if args.quick else args.tasks]
    rows = measure(tasks, args.workers)
    path = results_dir("benchmarks") / "scoring.json"
    command = " ".join(["python benchmarks/scoring.py", *(sys.argv[1:] if argv is None else argv)])
    atomic_write_json(
        path,
        {
            "command": command,
            "created": created_now(),
            "quick": args.quick,
            "workers": args.workers,
            "tasks": len(tasks),
            "results": rows,
            "peak_rss_mb": peak_rss_mb(),
            "environment": environment_report(),
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
