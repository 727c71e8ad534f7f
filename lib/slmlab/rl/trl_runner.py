"""Chapter 08 side by side: the same execution reward, tasks, steps and sampling settings driving TRL's GRPOTrainer or
RLOOTrainer (PEFT LoRA, fp32), so its completions per second and held-out pass rate can be set beside the learner's.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmlab.adapters import quiet_peft_deprecation
from slmlab.backends import torch_device
from slmlab.errors import SlmLabError
from slmlab.execution.scoring import score_programs
from slmlab.execution.tasks import CodeTask, extract_code, task_prompt
from slmlab.models import DEFAULT_MODEL, resolve_model
from slmlab.rl.config import RLConfig, peft_lora_config
from slmlab.rl.policy import load_base
from slmlab.rl.spec import ADAPTER

ALGORITHMS = ("grpo", "rloo")


class TRLSetupError(SlmLabError, ValueError):
    """Settings that TRL cannot run as asked (the message says which and why)."""


@dataclass(frozen=True)
class TRLResult:
    """What one TRL run did: optimizer steps, completions scored, wall time of ``trainer.train()``, mean reward."""

    algorithm: str
    adapter_dir: Path
    steps: int
    completions: int
    seconds: float
    completions_per_s: float
    mean_reward: float


class CodeReward:
    """A TRL reward function: the program in each completion, scored in the sandbox against its task's tests.

    TRL passes the dataset's ``task`` column as ``task=[name, ...]`` (one per completion). ``completions`` and
    ``reward_sum`` count what was scored, so throughput and mean reward can be read after training."""

    __name__ = "code_reward"  # TRL names a reward function by its __name__ in its logs

    def __init__(self, tasks: Sequence[CodeTask]):
        self.tasks = {task.name: task for task in tasks}
        if len(self.tasks) != len(tasks):
            raise TRLSetupError("code_reward: task names must be unique (the dataset refers to tasks by name)")
        self.completions = 0
        self.reward_sum = 0.0

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
        names = kwargs["task"]
        pairs = [
            (self.tasks[name], extract_code(completion_text(completion), self.tasks[name]))
            for name, completion in zip(names, completions)
        ]
        rewards = [score.reward for score in score_programs(pairs)]
        self.completions += len(rewards)
        self.reward_sum += sum(rewards)
        return rewards

    @property
    def mean_reward(self) -> float:
        return self.reward_sum / self.completions if self.completions else 0.0


def completion_text(completion: str | Sequence[dict]) -> str:
    """The reply's text: a plain string as is; a conversational completion's assistant messages joined."""
    if isinstance(completion, str):
        return completion
    return "".join(message.get("content") or "" for message in completion if message.get("role", "assistant") == "assistant")


def code_reward(tasks: Sequence[CodeTask]) -> CodeReward:
    """The reward function TRL calls with ``(prompts, completions, task=[...], ...)``; it counts what it scored."""
    return CodeReward(tasks)


def task_dataset(tasks: Sequence[CodeTask], seed: int = 0):
    """A ``datasets.Dataset`` of the tasks in a seeded order: a conversational ``prompt`` (one user message,
    :func:`task_prompt`) and the ``task`` name the reward function looks up."""
    from datasets import Dataset

    order = list(tasks)
    random.Random(seed).shuffle(order)
    return Dataset.from_dict(
        {"prompt": [[{"role": "user", "content": task_prompt(task)}] for task in order], "task": [task.name for task in order]}
    )


def trl_config(config: RLConfig, algorithm: str, output_dir: Path, use_cpu: bool, progress: bool = False):
    """The GRPOConfig / RLOOConfig that runs ``config``: one optimizer step = one generation batch of
    ``tasks_per_step`` prompts x ``samples_per_task`` completions (TRL's per-device batch counts completions)."""
    from trl import GRPOConfig, RLOOConfig

    if algorithm not in ALGORITHMS:
        raise TRLSetupError(f"algorithm must be one of {', '.join(ALGORITHMS)}, not {algorithm!r}")
    if config.samples_per_task < 2:
        raise TRLSetupError("TRL needs samples_per_task >= 2 (advantages compare completions of one prompt)")
    settings: dict[str, Any] = dict(
        output_dir=str(output_dir),
        max_steps=config.steps,
        seed=config.seed,
        data_seed=config.seed,
        per_device_train_batch_size=config.completions_per_step,
        gradient_accumulation_steps=1,
        steps_per_generation=1,
        num_generations=config.samples_per_task,
        max_completion_length=config.max_new_tokens,
        temperature=config.temperature,
        top_p=config.top_p,
        top_k=0,
        learning_rate=config.learning_rate,
        lr_scheduler_type="constant",
        warmup_steps=0,
        beta=config.kl_weight,
        max_grad_norm=config.grad_clip,
        num_iterations=1,
        bf16=False,
        fp16=False,
        use_cpu=use_cpu,
        activation_checkpointing=False,
        report_to=[],
        save_strategy="no",
        logging_strategy="steps" if progress else "no",
        logging_steps=1,
        disable_tqdm=not progress,
        dataloader_num_workers=0,
        remove_unused_columns=False,
    )
    if algorithm == "grpo":  # RLOO has no entropy term
        return GRPOConfig(**settings, entropy_coef=config.entropy_weight)
    return RLOOConfig(**settings)


def make_trainer(
    config: RLConfig,
    tasks: Sequence[CodeTask],
    run_dir: Path,
    reward: Callable,
    model: str = DEFAULT_MODEL,
    algorithm: str = "grpo",
    progress: bool = False,
):
    """A GRPOTrainer / RLOOTrainer over ``tasks`` with ``reward`` and the config's LoRA adapter, not yet trained."""
    from transformers import PrinterCallback
    from trl import GRPOTrainer, RLOOTrainer

    if len(tasks) < config.tasks_per_step:
        raise TRLSetupError(f"{len(tasks)} tasks cannot fill a step of tasks_per_step={config.tasks_per_step}")
    args = trl_config(config, algorithm, run_dir / "trl", use_cpu=torch_device() == "cpu", progress=progress)
    policy, tokenizer = load_base(resolve_model(model))
    trainer_class = GRPOTrainer if algorithm == "grpo" else RLOOTrainer
    with quiet_peft_deprecation():
        trainer = trainer_class(
            model=policy,
            reward_funcs=reward,
            args=args,
            processing_class=tokenizer,
            train_dataset=task_dataset(tasks, config.seed),
            peft_config=peft_lora_config(config),
        )
    if not progress:
        trainer.remove_callback(PrinterCallback)  # it prints the closing summary even with logging off
    return trainer


def train_with_trl(
    config: RLConfig,
    tasks: Sequence[CodeTask],
    run_dir: Path,
    model: str = DEFAULT_MODEL,
    algorithm: str = "grpo",
    progress: bool = False,
) -> TRLResult:
    """Train a LoRA adapter on ``tasks`` with TRL's ``algorithm`` ("grpo" or "rloo") under ``config``; the adapter is
    saved as a stock PEFT folder ``run_dir/adapter``. Seconds are the wall time of ``trainer.train()``."""
    run_dir = Path(run_dir)
    reward = code_reward(tasks)
    trainer = make_trainer(config, tasks, run_dir, reward, model, algorithm, progress)
    adapter_dir = run_dir / ADAPTER
    with quiet_peft_deprecation():
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
        trainer.model.save_pretrained(adapter_dir)
    return TRLResult(
        algorithm=algorithm,
        adapter_dir=adapter_dir,
        steps=trainer.state.global_step,
        completions=reward.completions,
        seconds=seconds,
        completions_per_s=reward.completions / seconds if seconds > 0 else 0.0,
        mean_reward=reward.mean_reward,
    )
