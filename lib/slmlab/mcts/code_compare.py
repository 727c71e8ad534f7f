"""Chapter 06, part two, measured: greedy, sampling + filtering and MCTS on code tasks, each scored on hidden tests only,
with the base model and with chapter 08's trained adapter; the table, exact McNemar tests and the reading of it.

Every method sees a task's visible tests and nothing else (:meth:`~slmlab.execution.tasks.CodeTask.visible_task`); the
program it answers with is then run once against the hidden tests (:meth:`~slmlab.execution.tasks.CodeTask.hidden_task`).
A *pseudo-correct* program passes every visible test and fails a hidden one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slmlab.execution.scoring import checked_examples, score_program
from slmlab.execution.tasks import CodeTask, load_code_tasks, load_humaneval
from slmlab.io import atomic_write_json, save_table
from slmlab.mcts import spec
from slmlab.mcts.code import (
    LIKELIHOOD,
    VISIBLE_TESTS,
    CodeSearchResult,
    VisibleScorer,
    filter_programs,
    greedy_program,
    search_program,
)
from slmlab.mcts.spec import CODE_METHODS, CodeComparisonConfig
from slmlab.metrics import latency_percentiles
from slmlab.models import load_model
from slmlab.rl import spec as rl_spec
from slmlab.settings import project_root
from slmlab.spec import shown

if TYPE_CHECKING:
    import pandas as pd

ADAPTER_CONFIG = "adapter_config.json"  # PEFT's file in an adapter folder (chapter 08's tiny policy is a whole model)
BASE, ADAPTER = "base", "adapter"  # the two models compared: the frozen model, and it with chapter 08's trained adapter


def comparison_tasks(task_set: str, limit: int = 0) -> list[CodeTask]:
    """Chapter 08's committed held-out tasks (``heldout``) or HumanEval's 164 problems (``humaneval``, their docstring
    examples as visible tests, less those the canonical solution fails), the first ``limit`` of them (0: all)."""
    if task_set not in spec.CODE_TASK_SETS:
        raise ValueError(f"Unknown task set {task_set!r}; choose from {', '.join(spec.CODE_TASK_SETS)}.")
    if task_set == "heldout":
        tasks = load_code_tasks(rl_spec.tasks_dir(project_root()) / rl_spec.HELD_OUT)
        return tasks[:limit] if limit else tasks
    problems = load_humaneval()
    # a few docstrings give a wrong example: the canonical solution decides which ones the search may see
    return checked_examples(problems[:limit] if limit else problems).tasks


@dataclass(frozen=True)
class MethodOutcome:
    """One method's answer to one task: the program, what its search saw and spent, and the hidden verdict."""

    code: str
    visible_rate: float | None  # share of visible tests passed; None without visible tests
    tokens: int
    sandbox_runs: int
    seconds: float
    value_source: str  # what valued the programs: "visible tests", or "likelihood" for a task without any


def hidden_passed(task: CodeTask, code: str) -> bool:
    """Whether ``code`` passes every hidden test of ``task`` (the final verdict; no method sees these tests)."""
    return score_program(task.hidden_task(), code).status == "passed"


def _greedy(model, task: CodeTask, visible: CodeTask | None, config: CodeComparisonConfig) -> MethodOutcome:
    start = time.perf_counter()
    playout = greedy_program(model, task, config.search)
    scorer = VisibleScorer(visible)
    rate = scorer.rate(playout.code) if visible is not None else None
    source = VISIBLE_TESTS if visible is not None else LIKELIHOOD
    return MethodOutcome(playout.code, rate, playout.tokens, scorer.runs, time.perf_counter() - start, source)


def _outcome(result: CodeSearchResult) -> MethodOutcome:
    """What a search or sampling + filtering answered and spent."""
    return MethodOutcome(
        result.code, result.visible_rate, result.tokens, result.sandbox_runs, result.seconds, result.value_source
    )


def compare_task(model, task: CodeTask, config: CodeComparisonConfig) -> dict[str, MethodOutcome]:
    """The three methods on one task. MCTS runs first; sampling + filtering then gets the tokens MCTS spent on this task,
    so the two are compared at the same generated tokens (both stop early once a program passes every visible test)."""
    visible = task.visible_task()
    searched = _outcome(search_program(model, task, visible, config.search))
    budget = max(searched.tokens, 1)
    filtered = filter_programs(model, task, visible, config.search, token_budget=budget, temperature=config.filter_temperature)
    return {"greedy": _greedy(model, task, visible, config), "filtering": _outcome(filtered), "mcts": searched}


def _rows(task: CodeTask, task_set: str, model_name: str, outcomes: dict[str, MethodOutcome]) -> Iterable[dict]:
    for method, outcome in outcomes.items():
        hidden = hidden_passed(task, outcome.code)
        yield {
            "task_set": task_set,
            "model": model_name,
            "task": task.name,
            "method": method,
            "hidden_passed": hidden,
            "visible_tests": len(task.visible_tests),
            "visible_rate": outcome.visible_rate,
            "pseudo_correct": outcome.visible_rate == 1.0 and not hidden,
            "tokens": outcome.tokens,
            "sandbox_runs": outcome.sandbox_runs,
            "seconds": round(outcome.seconds, 3),
            "value_source": outcome.value_source,
            "code": outcome.code,
        }


def run_comparison(
    models: dict[str, Any], config: CodeComparisonConfig = CodeComparisonConfig(), progress: bool = True
) -> pd.DataFrame:
    """Every task of ``config.task_sets`` × every model in ``models`` (name → slmlab torch model) × the three methods:
    one row per (task set, model, task, method) with the hidden verdict and what the method spent."""
    import pandas as pd
    from tqdm.auto import tqdm

    rows: list[dict] = []
    for task_set in config.task_sets:
        tasks = comparison_tasks(task_set, config.limit_of(task_set))
        for model_name, model in models.items():
            for task in tqdm(tasks, desc=f"{task_set} · {model_name}", unit="task", disable=not progress):
                rows.extend(_rows(task, task_set, model_name, compare_task(model, task, config)))
    return pd.DataFrame(rows)


def comparison_models(model_name: str, root: Path, config: CodeComparisonConfig, adapter: Path | None = None) -> dict:
    """The models to compare: the base model, and with ``config.adapter`` the same model with chapter 08's trained
    LoRA adapter (``adapter``, default ``results/rl/run/adapter`` of ``root``) when that folder holds one."""
    models = {BASE: load_model(model_name, backend="torch")}  # the search forks transformers' KV cache
    folder = Path(adapter) if adapter is not None else rl_spec.adapter_dir(root)
    if config.adapter and (folder / ADAPTER_CONFIG).is_file():
        models[ADAPTER] = load_model(model_name, backend="torch", adapter=str(folder))
    return models


def compare_code(
    model_name: str, root: Path, config: CodeComparisonConfig = CodeComparisonConfig(), adapter: Path | None = None
) -> dict:
    """Part two's entry point: run the comparison (:func:`run_comparison`) with the base model and chapter 08's
    adapter, and write ``results/mcts/code/`` under ``root``; returns the record (settings, table, reading)."""
    runs = run_comparison(comparison_models(model_name, root, config, adapter), config)
    return save_comparison(runs, summarize_comparison(runs), config, root)


# --- the table and the tests ------------------------------------------------------------------------------------
def mcnemar_exact(first: Sequence[bool], second: Sequence[bool]) -> dict[str, float | int]:
    """Exact McNemar test of two methods on the same tasks: of the tasks only one of them solves (``only_first``,
    ``only_second``), a fair coin would split them evenly; ``p`` is the two-sided binomial probability of a split at
    least this uneven (1.0 when no task is discordant)."""
    from scipy.stats import binomtest

    if len(first) != len(second):
        raise ValueError(f"McNemar needs paired results, got {len(first)} and {len(second)}")
    only_first = sum(bool(a) and not bool(b) for a, b in zip(first, second))
    only_second = sum(bool(b) and not bool(a) for a, b in zip(first, second))
    discordant = only_first + only_second
    p = binomtest(min(only_first, only_second), discordant, 0.5).pvalue if discordant else 1.0
    return {"only_first": only_first, "only_second": only_second, "p": float(min(1.0, p))}


def _paired(runs: pd.DataFrame, method: str) -> pd.Series:
    return runs[runs["method"] == method].set_index("task")["hidden_passed"].sort_index()


def summarize_comparison(runs: pd.DataFrame) -> pd.DataFrame:
    """Per task set, model and method: tasks, pass@1 on hidden tests, generated tokens and sandbox runs per task (and
    tokens × greedy's), latency p50/p95, pseudo-correct programs, and McNemar's p of MCTS against greedy and filtering."""
    import pandas as pd

    rows = []
    for (task_set, model_name), group in runs.groupby(["task_set", "model"], sort=False):
        greedy_tokens = group.loc[group["method"] == "greedy", "tokens"].mean()
        mcts = _paired(group, "mcts")
        for method in CODE_METHODS:
            part = group[group["method"] == method]
            latency = latency_percentiles(list(part["seconds"] * 1000))
            row = {
                "task_set": task_set,
                "model": model_name,
                "method": method,
                "tasks": len(part),
                "pass_at_1": round(100 * part["hidden_passed"].mean(), 1),
                "solved": int(part["hidden_passed"].sum()),
                "tokens_per_task": round(part["tokens"].mean(), 1),
                "tokens_x_greedy": round(part["tokens"].mean() / greedy_tokens, 2) if greedy_tokens else math.nan,
                "sandbox_runs_per_task": round(part["sandbox_runs"].mean(), 2),
                "latency_p50_s": round(latency["p50"] / 1000, 2),
                "latency_p95_s": round(latency["p95"] / 1000, 2),
                "pseudo_correct": int(part["pseudo_correct"].sum()),
                "without_visible": int((part["visible_tests"] == 0).sum()),
                "solved_without_visible": int(part.loc[part["visible_tests"] == 0, "hidden_passed"].sum()),
                "mcnemar_p_vs_mcts": math.nan if method == "mcts" else mcnemar_exact(mcts, _paired(group, method))["p"],
            }
            rows.append(row)
    return pd.DataFrame(rows)


# --- the reading ------------------------------------------------------------------------------------------------
def _points_per_task(tasks: int) -> str:
    return f"one task is {100 / tasks:.1f} points" if tasks else "no tasks"


def _goal_line(task_set: str, model_name: str, figures: dict[str, dict]) -> str | None:
    greedy, filtering, mcts = (figures[m] for m in CODE_METHODS)
    if task_set == "heldout" and model_name == BASE:
        gain = mcts["pass_at_1"] - greedy["pass_at_1"]
        met = gain >= spec.HELDOUT_GAIN_GOAL and mcts["pass_at_1"] >= filtering["pass_at_1"]
        return (
            f"Goal (MCTS ≥ greedy + {spec.HELDOUT_GAIN_GOAL} points and ≥ filtering at the same tokens): "
            f"{'met' if met else 'not met'} ({gain:+.1f} points over greedy, {mcts['pass_at_1'] - filtering['pass_at_1']:+.1f} "
            f"over filtering)."
        )
    if task_set == "humaneval":
        ratio = mcts["pass_at_1"] / greedy["pass_at_1"] if greedy["pass_at_1"] else math.inf
        met = mcts["pass_at_1"] >= spec.HUMANEVAL_RATIO_GOAL * greedy["pass_at_1"] and mcts["pass_at_1"] > 0
        shown = "greedy solves none" if math.isinf(ratio) else f"{ratio:.2f}× greedy"
        return f"Goal (MCTS ≥ {spec.HUMANEVAL_RATIO_GOAL:g}× greedy): {'met' if met else 'not met'} ({shown})."
    return None


def comparison_reading(summary: pd.DataFrame) -> str:
    """The conclusion of the comparison as Markdown, written from the measured table (nothing typed in by hand): per
    task set and model, each method's hidden pass@1 with its tokens, the paired tests, pseudo-correct programs, the
    goals, and what one task is worth in points."""
    lines = []
    for (task_set, model_name), group in summary.groupby(["task_set", "model"], sort=False):
        figures = {row["method"]: row for row in group.to_dict("records")}
        greedy, filtering, mcts = (figures[m] for m in CODE_METHODS)
        lines.append(
            f"- **{task_set}, {model_name} model** ({greedy['tasks']} tasks; {_points_per_task(greedy['tasks'])}): "
            f"greedy {greedy['pass_at_1']:.1f} %, sampling + filtering {filtering['pass_at_1']:.1f} % "
            f"({filtering['tokens_x_greedy']:.1f}× greedy's tokens), MCTS {mcts['pass_at_1']:.1f} % "
            f"({mcts['tokens_x_greedy']:.1f}× the tokens, {mcts['sandbox_runs_per_task']:.1f} sandbox runs a task). "
            f"McNemar: MCTS vs greedy p = {greedy['mcnemar_p_vs_mcts']:.3g}, vs filtering p = "
            f"{filtering['mcnemar_p_vs_mcts']:.3g}. Pseudo-correct programs (all visible tests pass, a hidden one fails): "
            f"greedy {greedy['pseudo_correct']}, filtering {filtering['pseudo_correct']}, MCTS {mcts['pseudo_correct']}."
        )
        if mcts["without_visible"]:
            lines.append(
                f"  {mcts['without_visible']} of these tasks have no visible test (searched with the model's likelihood as "
                f"the value): greedy solves {greedy['solved_without_visible']}, filtering "
                f"{filtering['solved_without_visible']}, MCTS {mcts['solved_without_visible']} of them."
            )
        goal = _goal_line(task_set, model_name, figures)
        if goal:
            lines.append(f"  {goal}")
    if ADAPTER not in set(summary["model"]):
        lines.append(
            f"- Chapter 08's trained adapter was not there ({shown(rl_spec.adapter_dir)}), so the levers are not composed "
            "here: run chapter 08 (`slmlab rl train`), then this comparison again (`slmlab mcts code`)."
        )
    return "\n".join(lines)


def composed_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Hidden pass@1 by model (rows: base, adapter) and method (columns), one table per task set stacked: the levers
    composed — chapter 08's weights and this chapter's search."""
    table = summary.pivot_table(index=["task_set", "model"], columns="method", values="pass_at_1", sort=False)
    return table[[m for m in CODE_METHODS if m in table.columns]]


def notable_tasks(runs: pd.DataFrame) -> dict[str, dict | None]:
    """Two rows of the runs worth reading, the base model first: ``search_wins`` — a task greedy fails on the hidden
    tests and MCTS solves (with both programs) — and ``pseudo_correct`` — a program that passes every visible test and
    fails a hidden one. None where the runs hold no such task."""
    ordered = runs.sort_values("model", key=lambda column: column != BASE, kind="stable")
    by_method = {method: ordered[ordered["method"] == method].set_index(["task_set", "model", "task"]) for method in CODE_METHODS}
    greedy, mcts = by_method["greedy"], by_method["mcts"]
    wins = [key for key in mcts.index if mcts.loc[key, "hidden_passed"] and not greedy.loc[key, "hidden_passed"]]
    win = None
    if wins:
        task_set, model_name, task = wins[0]
        win = {
            "task_set": task_set,
            "model": model_name,
            "task": task,
            "greedy": greedy.loc[wins[0], "code"],
            "mcts": mcts.loc[wins[0], "code"],
        }
    pseudo = ordered[ordered["pseudo_correct"]]
    return {"search_wins": win, "pseudo_correct": pseudo.iloc[0].to_dict() if len(pseudo) else None}


# --- files --------------------------------------------------------------------------------------------------------
def save_comparison(runs: pd.DataFrame, summary: pd.DataFrame, config: CodeComparisonConfig, root: Path) -> dict:
    """Write ``results/mcts/code/``: every run (``runs.csv``), the table (``summary.csv``) and the record (settings,
    table, reading) as JSON; returns the record."""
    save_table(runs, spec.code_runs_file(root))
    save_table(summary, spec.code_summary_file(root))
    record = {
        "config": asdict(config),
        "summary": summary.to_dict("records"),
        "reading": comparison_reading(summary),
    }
    atomic_write_json(spec.code_record_file(root), record)
    return record
