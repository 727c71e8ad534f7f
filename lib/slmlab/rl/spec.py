"""Chapter 08 on one screen: the notebook, the command-line verbs, the task sets and the files of its results and
run folder, each path a function of the artifacts root. Light (no torch): the report, the demos and the grid read
it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from slmlab.errors import SlmLabError
from slmlab.spec import benchmark_file, results_path, task_sets_dir

KEY = "rl"
NOTEBOOKS = ("08_rl_codegen",)
COMMANDS = ("rl tasks", "rl eval", "rl train", "rl trl")
TITLE = "RL from execution feedback (chapter 08)"
TAUGHT_THROUGH = "rewards"
RUN_COMMAND = "slmlab rl train --humaneval"
QUICK_RUN_COMMAND = "slmlab rl train --quick --humaneval --limit 6"
MODEL_WORDS = ("tiny",)  # --model values besides model names: a tiny policy trained from scratch

RESULTS = "rl"
TASK_SETS = ("train", "heldout", "humaneval")
HELD_OUT = "heldout"  # the committed task set ``slmlab rl eval`` measures by default
EVAL_FILE = "eval.json"  # pass@1 before and after training, per task set, and the run's figures
EVAL_TABLE_FILE = "eval.csv"  # ``slmlab rl eval``: every task's pass and score
RUN = "run"  # the training run folder inside results/rl
SUMMARY_FILE = "summary.json"  # inside a run folder: what the learner did
ADAPTER = "adapter"  # inside a run folder: the trained policy (a PEFT folder; a full model for the tiny policy)
BENCHMARK = "rl"  # benchmarks/rl.py: slmlab's learner against TRL's GRPO, same run


def results_dir(root: Path) -> Path:
    """``results/rl``."""
    return results_path(root, RESULTS)


def eval_file(root: Path) -> Path:
    return results_dir(root) / EVAL_FILE


def eval_table_file(root: Path) -> Path:
    """``results/rl/eval.csv``: what ``slmlab rl eval`` writes unless told another file."""
    return results_dir(root) / EVAL_TABLE_FILE


def measurement_name(task_set: str, stage: str) -> str:
    """``<set>_<before|after>.csv``."""
    return f"{task_set}_{stage}.csv"


def measurement_file(root: Path, task_set: str, stage: str) -> Path:
    """``results/rl/<set>_<before|after>.csv``: every task's result with the untrained or trained policy."""
    return results_dir(root) / measurement_name(task_set, stage)


def run_dir(root: Path) -> Path:
    return results_dir(root) / RUN


def adapter_dir(root: Path) -> Path:
    """``results/rl/run/adapter``: the policy the default run trained."""
    return run_dir(root) / ADAPTER


def tasks_dir(checkout: Path) -> Path:
    """``data/tasks/rl`` of the checkout (:func:`slmlab.settings.project_root`): the committed ``train/`` and
    ``heldout/`` families (inputs, never generated)."""
    return task_sets_dir(checkout, KEY)


def benchmark_results(root: Path) -> Path:
    """``results/benchmarks/rl.json``: the learner benchmark's same-run comparison with TRL."""
    return benchmark_file(root, BENCHMARK)


# --- training settings: one dataclass for the REINFORCE learner, its CLI and the TRL comparison --------------------
@dataclass(frozen=True)
class HintConfig:
    """When a stuck task gets its next hint; windows and backoffs are counted in attempts at that task.

    - ``window``: a task is stuck when the best score of its last ``window`` attempts beats the best score before
      them by no more than ``min_improvement`` (so at least ``window + 1`` attempts are needed to be stuck).
    - ``solved_score``: a task whose best score reached it is never stuck (1.0 = all tests passed).
    - ``hint_probability``: chance that a stuck check whose backoff has elapsed gives a hint; 0 turns hints off.
    - ``max_stuck_checks``: after this many stuck checks in a row on which the coin refused a hint, the next stuck
      check whose backoff has elapsed gives one without asking the coin (a non-stuck check ends the streak).
    - ``base_backoff``, ``backoff_factor``, ``max_backoff``: after the k-th hint (k = 1, 2, ...) the next one waits
      at least ``min(base_backoff * backoff_factor ** (k - 1), max_backoff)`` attempts.
    - ``seed``: the coin for a task's attempt n is ``default_rng((seed, crc32(task name), n))``, so a resumed run
      makes the same decisions.
    """

    window: int = 8
    min_improvement: float = 0.05
    solved_score: float = 1.0
    hint_probability: float = 0.5
    max_stuck_checks: int = 3
    base_backoff: int = 4
    backoff_factor: float = 2.0
    max_backoff: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        checks = {
            "window": self.window >= 1,
            "min_improvement": self.min_improvement >= 0,
            "hint_probability": 0 <= self.hint_probability <= 1,
            "max_stuck_checks": self.max_stuck_checks >= 0,
            "base_backoff": self.base_backoff >= 0,
            "backoff_factor": self.backoff_factor >= 1,
            "max_backoff": self.max_backoff >= self.base_backoff,
            "seed": self.seed >= 0,
        }
        wrong = [name for name, ok in checks.items() if not ok]
        if wrong:
            raise ValueError(f"HintConfig: invalid {', '.join(wrong)} ({self})")

    def backoff_after(self, hints_given: int) -> float:
        """Attempts to wait after ``hints_given`` hints before the next one (0 before the first)."""
        if hints_given == 0:
            return 0.0
        return float(min(self.base_backoff * self.backoff_factor ** (hints_given - 1), self.max_backoff))


class RLConfigError(SlmLabError, ValueError):
    """A training setting outside its range (the message names the field)."""


@dataclass(frozen=True)
class RLConfig:
    """REINFORCE on coding tasks: per step, ``tasks_per_step`` tasks get ``samples_per_task`` sampled programs each.

    The loss of one program is ``-advantage x mean token log-probability`` with ``advantage = (reward - baseline) /
    running std``; the baseline is an exponential moving average of each task's reward (``baseline_decay``). Added:
    ``-entropy_weight x mean token entropy``, ``kl_weight x`` the per-token KL estimate to the frozen base model
    (the adapter switched off), and ``replay_weight x`` the negative log-likelihood of up to ``replay_per_step``
    earlier programs that passed every test. Gradients are clipped to ``grad_clip``.
    """

    steps: int = 48
    tasks_per_step: int = 4
    samples_per_task: int = 4
    max_new_tokens: int = 128
    temperature: float = 0.9
    max_temperature: float = 1.3
    top_p: float = 1.0
    learning_rate: float = 2e-4
    min_learning_rate: float = 1e-5
    plateau_patience: int = 8  # steps without a better mean reward before the learning rate is halved
    plateau_factor: float = 0.5
    baseline_decay: float = 0.8
    entropy_weight: float = 0.001
    kl_weight: float = 0.02
    grad_clip: float = 1.0
    micro_batch: int = 4  # rows per forward/backward pass; gradients are accumulated over a step's rows
    replay_size: int = 64
    replay_per_step: int = 4
    replay_weight: float = 1.0
    duplicate_penalty: float = 0.1
    duplicate_rate_high: float = 0.5  # a step with more duplicates than this raises the temperature
    temperature_step: float = 0.1
    rank: int = 8
    alpha: float = 16.0
    lora_dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj", "gate_proj")
    weight_explode: float = 0.05  # relative weight change per step above which a warning is logged
    weight_vanish: float = 1e-7  # and below which
    hints: HintConfig = field(default_factory=HintConfig)
    save_every: int = 8
    keep_checkpoints: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        positive = (
            "steps",
            "tasks_per_step",
            "samples_per_task",
            "max_new_tokens",
            "temperature",
            "learning_rate",
            "grad_clip",
            "micro_batch",
            "rank",
            "alpha",
            "keep_checkpoints",
        )
        wrong = [name for name in positive if not getattr(self, name) > 0]
        ranged = {
            "top_p": 0 < self.top_p <= 1,
            "baseline_decay": 0 <= self.baseline_decay < 1,
            "duplicate_rate_high": 0 <= self.duplicate_rate_high <= 1,
            "plateau_factor": 0 < self.plateau_factor <= 1,
            "max_temperature": self.max_temperature >= self.temperature,
            "seed": self.seed >= 0,
        }
        wrong += [name for name, ok in ranged.items() if not ok]
        wrong += [
            name
            for name in (
                "entropy_weight",
                "kl_weight",
                "replay_weight",
                "replay_per_step",
                "replay_size",
                "duplicate_penalty",
                "save_every",
                "plateau_patience",
            )
            if getattr(self, name) < 0
        ]
        if wrong:
            raise RLConfigError("RLConfig: out of range: " + ", ".join(f"{name}={getattr(self, name)!r}" for name in wrong))

    @classmethod
    def quick(cls) -> RLConfig:
        """A few short steps that exercise every part of the learner (tests, quick mode)."""
        return cls(steps=3, tasks_per_step=2, samples_per_task=2, max_new_tokens=48, save_every=2)

    @property
    def completions_per_step(self) -> int:
        return self.tasks_per_step * self.samples_per_task

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_(self, **changes: Any) -> RLConfig:
        return replace(self, **changes)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RLConfig:
        """The config saved with a run (unknown keys are an error naming them)."""
        known = {item.name for item in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RLConfigError(f"RLConfig: unknown fields {', '.join(unknown)}")
        values = dict(data)
        if isinstance(values.get("hints"), dict):
            values["hints"] = HintConfig(**values["hints"])
        if isinstance(values.get("target_modules"), list):
            values["target_modules"] = tuple(values["target_modules"])
        return cls(**values)
