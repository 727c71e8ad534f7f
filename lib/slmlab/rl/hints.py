"""Hints as a last resort for chapter 08: a task's next hint is shown only when its best score has stopped improving,
with a seeded coin, a cap on refused stuck checks, exponential backoff between hints, and analytics of every decision.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from slmlab.errors import SlmLabError
from slmlab.execution.tasks import CodeTask
from slmlab.rl.spec import HintConfig

if TYPE_CHECKING:
    import pandas as pd

STATE_VERSION = 1
EVENT_COLUMNS = (
    "task",
    "attempt",
    "stuck",
    "requested",
    "given",
    "forced",
    "hint_index",
    "backoff",
    "best_before",
    "score_before",
    "score_after",
)


class HintStateError(SlmLabError, ValueError):
    """A saved hint schedule that cannot be resumed: another format version or another configuration."""


@dataclass
class _TaskState:
    scores: list[float] = field(default_factory=list)
    hints_given: int = 0
    last_hint_attempt: int | None = None
    refused_in_a_row: int = 0
    decided_attempt: int | None = None  # a second call for the same attempt repeats the decision
    decided_hint: str | None = None
    pending: list[int] = field(default_factory=list)  # event rows waiting for the score of the attempt they precede


def prompt_with_hint(prompt: str, hint: str) -> str:
    """The prompt with the hint appended on its own line as ``Hint: ...``."""
    return f"{prompt.rstrip()}\n\nHint: {hint.strip()}\n"


def _task_name(task: CodeTask | str) -> str:
    return task if isinstance(task, str) else task.name


class HintSchedule:
    """Decides, per task and attempt, whether to show the next unused hint, and records each decision.

    Call :meth:`hint_for` before an attempt and :meth:`record` with its score after it. ``attempt`` in the
    analytics is the 0-based number of the attempt a decision is for (= attempts recorded before it).
    """

    def __init__(self, config: HintConfig | None = None) -> None:
        self.config = config or HintConfig()
        self._tasks: dict[str, _TaskState] = {}
        self._events: list[dict[str, Any]] = []

    def _state(self, name: str) -> _TaskState:
        return self._tasks.setdefault(name, _TaskState())

    def record(self, task: CodeTask | str, score: float) -> None:
        """Adds the score of the task's next attempt and fills ``score_after`` of the decisions made before it."""
        score = float(score)
        if not math.isfinite(score):
            raise ValueError(f"score of task {_task_name(task)!r} must be finite, got {score}")
        state = self._state(_task_name(task))
        for row in state.pending:
            self._events[row]["score_after"] = score
        state.pending.clear()
        state.scores.append(score)

    def attempts(self, task: CodeTask | str) -> int:
        """How many attempts at the task were recorded."""
        return len(self._state(_task_name(task)).scores)

    def is_stuck(self, task: CodeTask | str) -> bool:
        """Whether the last ``window`` attempts beat the best before them by no more than ``min_improvement``."""
        scores, window = self._state(_task_name(task)).scores, self.config.window
        if len(scores) <= window or max(scores) >= self.config.solved_score:
            return False
        return max(scores[-window:]) - max(scores[:-window]) <= self.config.min_improvement

    def _coin(self, name: str, attempt: int) -> bool:
        rng = np.random.default_rng((self.config.seed, zlib.crc32(name.encode("utf-8")), attempt))
        return bool(rng.random() < self.config.hint_probability)

    def _backoff_elapsed(self, state: _TaskState, attempt: int) -> bool:
        if state.last_hint_attempt is None:
            return True
        return attempt - state.last_hint_attempt >= self.config.backoff_after(state.hints_given)

    def hint_for(self, task: CodeTask) -> str | None:
        """The task's next unused hint when it is stuck, its backoff has elapsed and the coin (or the cap) says yes."""
        state = self._state(task.name)
        attempt = len(state.scores)
        if state.decided_attempt == attempt:
            return state.decided_hint
        stuck = self.is_stuck(task)
        requested = stuck and self._backoff_elapsed(state, attempt)
        has_hint = state.hints_given < len(task.hints)
        hints_on = self.config.hint_probability > 0
        forced = requested and has_hint and hints_on and state.refused_in_a_row >= self.config.max_stuck_checks
        given = requested and has_hint and hints_on and (forced or self._coin(task.name, attempt))
        self._log(task.name, state, attempt, stuck=stuck, requested=requested, given=given, forced=forced)
        hint = task.hints[state.hints_given] if given else None
        if given:
            state.hints_given += 1
            state.last_hint_attempt = attempt
            state.refused_in_a_row = 0
        elif requested and has_hint and hints_on:
            state.refused_in_a_row += 1
        elif not stuck:
            state.refused_in_a_row = 0
        state.decided_attempt, state.decided_hint = attempt, hint
        return hint

    def _log(self, name: str, state: _TaskState, attempt: int, **decision: bool) -> None:
        self._events.append(
            {
                "task": name,
                "attempt": attempt,
                **decision,
                "hint_index": state.hints_given if decision["given"] else None,
                "backoff": self.config.backoff_after(state.hints_given),
                "best_before": max(state.scores) if state.scores else None,
                "score_before": state.scores[-1] if state.scores else None,
                "score_after": None,
            }
        )
        state.pending.append(len(self._events) - 1)

    def events(self) -> pd.DataFrame:
        """One row per decision: task, attempt, stuck, requested, given, forced, hint_index, backoff (attempts to
        wait that were in force), best_before, score_before (last score), score_after (score of that attempt)."""
        import pandas as pd  # only the analytics need pandas

        return pd.DataFrame(self._events, columns=list(EVENT_COLUMNS))

    def summary(self) -> dict[str, Any]:
        """Counts of checks, stuck checks, requests, hints given (and forced by the cap), and the mean score change
        from the attempt before a hint to the attempt with it (None until such a pair exists)."""
        rows = self._events
        changes = [
            row["score_after"] - row["score_before"]
            for row in rows
            if row["given"] and row["score_after"] is not None and row["score_before"] is not None
        ]
        return {
            "checks": len(rows),
            "stuck": sum(row["stuck"] for row in rows),
            "requested": sum(row["requested"] for row in rows),
            "given": sum(row["given"] for row in rows),
            "forced": sum(row["forced"] for row in rows),
            "mean_score_change_after_hint": float(np.mean(changes)) if changes else None,
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly, as plain JSON-able values."""
        return {
            "version": STATE_VERSION,
            "config": asdict(self.config),
            "tasks": {name: asdict(state) for name, state in self._tasks.items()},
            "events": [dict(row) for row in self._events],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continues from :meth:`state_dict`'s output; refuses another version or another configuration."""
        if state.get("version") != STATE_VERSION:
            raise HintStateError(f"hint schedule state version {state.get('version')!r}, expected {STATE_VERSION}")
        if state.get("config") != asdict(self.config):
            raise HintStateError(
                f"hint schedule state was saved with config {state.get('config')}, this schedule has {asdict(self.config)}"
            )
        self._tasks = {name: _TaskState(**saved) for name, saved in state["tasks"].items()}
        self._events = [dict(row) for row in state["events"]]
