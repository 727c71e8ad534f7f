"""Chapter 08's measurement: greedy pass@1 of a model on coding tasks — the prompt it sees, the program taken from its
reply, the sandboxed score — per task and per family (the "before" and "after" of training).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from slmlab.generation import DecodingConfig
from slmlab.rl.codetask import CodeTask
from slmlab.rl.scoring import score_programs

if TYPE_CHECKING:
    import pandas as pd

_FENCE = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)(?:```|$)", re.DOTALL | re.IGNORECASE)


@dataclass(frozen=True)
class PassAtOneSettings:
    """How replies are generated: greedy, long enough for a short function, batched."""

    max_new_tokens: int = 192
    batch_size: int = 16
    seed: int = 0


def task_prompt(task: CodeTask, hint: str | None = None) -> str:
    """The instruction the policy sees for ``task`` (a hint, when given, is appended as a last line)."""
    if task.kind == "check":  # HumanEval: the prompt is the signature and docstring to complete
        text = f"Complete this Python function.\n```python\n{task.prompt.rstrip()}\n```"
    elif task.kind == "stdio":
        text = f"{task.prompt}\nThe program reads standard input and prints the answer."
    else:
        text = task.prompt + (f"\nUse this signature: `{task.signature}`." if task.signature else "")
    text += "\nReply with the complete code in one ```python block."
    return text + (f"\nHint: {hint}" if hint else "")


def extract_code(reply: str, task: CodeTask | None = None) -> str:
    """The program in a model's reply: its first fenced code block, else the reply from its first ``def``/``import``
    line, else the whole reply. For a HumanEval task whose reply lacks the function's ``def``, the prompt is put back
    in front (the model continued the body)."""
    match = _FENCE.search(reply)
    if match:
        code = match.group(1)
    else:
        start = re.search(r"^(def |import |from |class )", reply, re.MULTILINE)
        code = reply[start.start() :] if start else reply
    code = code.strip("\n") + "\n"
    if task is not None and task.kind == "check" and task.entry_point and f"def {task.entry_point}(" not in code:
        code = task.prompt + code
    return code


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
