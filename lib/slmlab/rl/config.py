"""Chapter 08's training settings: one dataclass shared by the REINFORCE learner, its CLI and the TRL comparison, so a
default lives in one place and both trainers see the same tasks, steps and generation settings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from slmlab.errors import SlmLabError
from slmlab.rl.hints import HintConfig


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


def peft_lora_config(config: RLConfig):
    """PEFT's LoraConfig for the policy's adapter (every layer, ``config.target_modules``)."""
    from peft import LoraConfig

    return LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.target_modules),
        task_type="CAUSAL_LM",
    )
