"""Chapter 08's measured result: greedy pass@1 of the policy before and after REINFORCE, per task family, on the
held-out families and on HumanEval, written to ``results/rl/`` — the same run for the notebook and ``slmlab rl train``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from slmlab.execution.tasks import CodeTask, load_code_tasks, load_humaneval
from slmlab.io import atomic_write_json, save_table
from slmlab.rl.config import RLConfig
from slmlab.rl.evaluate import PassAtOneSettings, by_family, pass_at_1
from slmlab.rl.learner import RLResult, policy_pass_at_1, train_policy
from slmlab.rl.policy import build_policy
from slmlab.rl.spec import EVAL_FILE, RUN, TASK_SETS, measurement_name, results_dir
from slmlab.rl.tasks import default_tasks_dir
from slmlab.settings import artifacts_root

if TYPE_CHECKING:
    import pandas as pd


def default_results_dir(quick: bool | None = None) -> Path:
    """``results/rl`` (``quick/results/rl`` in quick mode), created on demand."""
    path = results_dir(artifacts_root(quick))
    path.mkdir(parents=True, exist_ok=True)
    return path


def task_set(name: str, limit: int = 0) -> list[CodeTask]:
    """The committed ``train`` or ``heldout`` families, or HumanEval's 164 problems (``humaneval``); ``limit`` keeps
    the first N (0: all)."""
    if name not in TASK_SETS:
        raise ValueError(f"Unknown task set {name!r}; choose from {', '.join(TASK_SETS)}.")
    tasks = load_humaneval() if name == "humaneval" else load_code_tasks(default_tasks_dir() / name)
    return tasks[:limit] if limit else tasks


def measure(
    policy_or_model, tasks: Sequence[CodeTask], settings: PassAtOneSettings = PassAtOneSettings(), progress: bool = False
) -> pd.DataFrame:
    """Greedy pass@1 per task of a policy (a LoRA policy is measured as the slmlab model it shares weights with, so
    the numbers match ``slmlab rl eval``) or of an slmlab model."""
    language_model = getattr(policy_or_model, "language_model", None)
    if language_model is not None:
        return pass_at_1(language_model(), tasks, settings, progress=progress)
    if hasattr(policy_or_model, "prompt_ids"):
        return policy_pass_at_1(policy_or_model, tasks, settings)
    return pass_at_1(policy_or_model, tasks, settings, progress=progress)


def before_after(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame:
    """Per family (and "all"): tasks, pass@1 before and after, and the change in percentage points."""
    first, second = by_family(before), by_family(after)
    table = first[["tasks"]].assign(before=first["pass_at_1"], after=second["pass_at_1"])
    table["change_points"] = 100 * (table["after"] - table["before"])
    return table


@dataclass
class Measurement:
    """pass@1 tables of one task set, before and after training."""

    name: str
    before: pd.DataFrame
    after: pd.DataFrame | None = None

    def change(self) -> pd.DataFrame:
        return before_after(self.before, self.after)

    def summary(self) -> dict:
        row = {"tasks": len(self.before), "before": float(self.before["solved"].mean())}
        if self.after is not None:
            after = float(self.after["solved"].mean())
            row.update(after=after, change_points=100 * (after - row["before"]))
        return row


@dataclass
class ChapterRun:
    """The chapter's result: the training run and each task set's before/after measurement."""

    run: RLResult | None
    measurements: dict[str, Measurement] = field(default_factory=dict)

    def report(self) -> dict:
        report = {name: item.summary() for name, item in self.measurements.items()}
        if "heldout" in self.measurements and self.measurements["heldout"].after is not None:
            families = self.measurements["heldout"].change()
            report["heldout_families"] = {
                family: {key: _plain(value) for key, value in row.items()}
                for family, row in families.to_dict(orient="index").items()
            }
        if self.run is not None:
            report["training"] = {
                "steps": self.run.steps,
                "completions": self.run.completions,
                "seconds": self.run.seconds,
                "generation_seconds": self.run.generation_seconds,
                "completions_per_s": self.run.completions_per_s,
                "stopped": self.run.stopped,
                "run_dir": str(self.run.run_dir),
            }
        return report


def _plain(value):
    value = float(value)
    return None if math.isnan(value) else value


def save_measurements(chapter: ChapterRun, out_dir: Path) -> dict:
    """``<set>_before.csv`` / ``<set>_after.csv`` per task set and ``eval.json`` (the report returned)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, item in chapter.measurements.items():
        save_table(item.before, out_dir / measurement_name(name, "before"))
        if item.after is not None:
            save_table(item.after, out_dir / measurement_name(name, "after"))
    report = chapter.report()
    atomic_write_json(out_dir / EVAL_FILE, report)
    return report


def train_and_measure(
    config: RLConfig,
    model: str | None = None,
    sets: Sequence[str] = ("heldout",),
    run_dir: str | Path | None = None,
    limit: int = 0,
    resume: bool = True,
    progress: bool = True,
    callbacks=(),
    stop=None,
    settings: PassAtOneSettings = PassAtOneSettings(),
) -> ChapterRun:
    """Measure pass@1 on ``sets`` with the untrained policy, train on the committed train families, measure again,
    and write everything under ``results/rl/``."""
    train = task_set("train")
    policy = build_policy(config, train, model)
    measured = {name: task_set(name, limit) for name in sets}
    chapter = ChapterRun(
        None, {name: Measurement(name, measure(policy, tasks, settings, progress)) for name, tasks in measured.items()}
    )
    out = default_results_dir()
    chapter.run = train_policy(
        config, train, run_dir or out / RUN, resume=resume, progress=progress, callbacks=callbacks, stop=stop, policy=policy
    )
    for name, item in chapter.measurements.items():
        item.after = measure(policy, measured[name], settings, progress)
    save_measurements(chapter, out)
    return chapter
