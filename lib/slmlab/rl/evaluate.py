"""Chapter 08's measurement: greedy pass@1 of a model on coding tasks — the prompt it sees, the program taken from its
reply, the sandboxed score — per task and per family (the "before" and "after" of training).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from slmlab.execution.scoring import score_programs
from slmlab.execution.tasks import CodeTask, extract_code, task_prompt
from slmlab.generation import DecodingConfig

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class PassAtOneSettings:
    """How replies are generated: greedy, long enough for a short function, batched."""

    max_new_tokens: int = 192
    batch_size: int = 16
    seed: int = 0


def pass_at_1(
    lm, tasks: Sequence[CodeTask], settings: PassAtOneSettings = PassAtOneSettings(), progress: bool = False
) -> pd.DataFrame:
    """Greedy pass@1 of the slmlab model ``lm`` on ``tasks``: a DataFrame with one row per task (task, family, status,
    reward, passed, total, solved, reply, code)."""
    config = DecodingConfig(
        strategy="greedy", max_new_tokens=settings.max_new_tokens, batch_size=settings.batch_size, seed=settings.seed
    )
    replies = lm.generate([task_prompt(task) for task in tasks], config, progress=progress)
    return score_replies(tasks, replies)


def score_replies(tasks: Sequence[CodeTask], replies: Sequence[str]) -> pd.DataFrame:
    """Score each task's reply (the program taken from it, run in the sandbox): one row per task (task, family,
    status, reward, passed, total, solved, reply, code)."""
    import pandas as pd

    codes = [extract_code(reply, task) for reply, task in zip(replies, tasks)]
    scores = score_programs(list(zip(tasks, codes)))
    return pd.DataFrame(
        {
            "task": [task.name for task in tasks],
            "family": [task.family or "-" for task in tasks],
            "status": [score.status for score in scores],
            "reward": [score.reward for score in scores],
            "passed": [score.passed for score in scores],
            "total": [score.total for score in scores],
            "solved": [score.status == "passed" for score in scores],
            "reply": list(replies),
            "code": codes,
        }
    )


def by_family(results: pd.DataFrame) -> pd.DataFrame:
    """pass@1 (share of tasks solved) and mean reward per family, plus an "all" row."""
    table = results.groupby("family").agg(tasks=("task", "count"), pass_at_1=("solved", "mean"), mean_reward=("reward", "mean"))
    table.loc["all"] = [len(results), results["solved"].mean(), results["reward"].mean()]
    table["tasks"] = table["tasks"].astype(int)
    return table
