"""Chapter 08's TRL side by side: the reward function TRL calls, the task dataset, the mapping of RLConfig onto
GRPOConfig / RLOOConfig, and one tiny GRPO and RLOO run on a random Llama (seconds)."""

from __future__ import annotations

import json

import pytest

from slmlab.execution.tasks import load_code_tasks, task_prompt
from slmlab.rl.config import RLConfig
from slmlab.rl.tasks import default_tasks_dir
from slmlab.rl.trl_runner import TRLSetupError, code_reward, completion_text, task_dataset, train_with_trl, trl_config

TASKS = load_code_tasks(default_tasks_dir() / "train")[:2]
TINY = RLConfig(steps=2, tasks_per_step=2, samples_per_task=2, max_new_tokens=16)


def fenced(code: str) -> str:
    return f"Here it is:\n```python\n{code}```\n"


def test_reward_scores_plain_and_conversational_completions_and_counts_them():
    reward = code_reward(TASKS)
    first, second = TASKS
    completions = [
        [{"role": "assistant", "content": fenced(first.reference)}],
        "def broken(:\n    return\n",
        fenced(second.reference),
        [{"role": "assistant", "content": ""}],
    ]
    rewards = reward(prompts=[[]] * 4, completions=completions, task=[first.name, first.name, second.name, second.name])
    assert rewards == [1.0, 0.0, 1.0, 0.0]
    assert reward.completions == 4 and reward.mean_reward == 0.5
    reward(prompts=["p"], completions=[fenced(first.reference)], task=[first.name], trainer_state=None)
    assert reward.completions == 5 and reward.__name__ == "code_reward"


def test_completion_text_takes_the_assistant_content():
    assert completion_text("x = 1") == "x = 1"
    assert completion_text([{"role": "assistant", "content": "a"}, {"role": "tool", "content": "b"}]) == "a"


def test_task_dataset_has_a_conversational_prompt_and_the_task_name():
    data = task_dataset(TASKS, seed=0)
    assert set(data.column_names) == {"prompt", "task"} and sorted(data["task"]) == sorted(t.name for t in TASKS)
    row = data[0]
    task = next(t for t in TASKS if t.name == row["task"])
    assert row["prompt"] == [{"role": "user", "content": task_prompt(task)}]
    assert task_dataset(TASKS, seed=3)["task"] == task_dataset(TASKS, seed=3)["task"]


@pytest.mark.parametrize("algorithm", ["grpo", "rloo"])
def test_one_optimizer_step_sees_tasks_per_step_times_samples_completions(tmp_path, algorithm):
    config = RLConfig(
        steps=5,
        tasks_per_step=3,
        samples_per_task=4,
        max_new_tokens=20,
        temperature=0.7,
        top_p=0.9,
        learning_rate=3e-5,
        kl_weight=0.1,
        grad_clip=0.5,
        seed=7,
    )
    args = trl_config(config, algorithm, tmp_path, use_cpu=True)
    assert (args.per_device_train_batch_size, args.generation_batch_size, args.steps_per_generation) == (12, 12, 1)
    assert args.gradient_accumulation_steps == 1 and args.num_generations == 4 and args.num_iterations == 1
    assert (args.max_completion_length, args.temperature, args.top_p, args.learning_rate) == (20, 0.7, 0.9, 3e-5)
    assert (args.beta, args.max_steps, args.max_grad_norm, args.seed) == (0.1, 5, 0.5, 7)
    assert not args.bf16 and not args.fp16 and args.use_cpu and not args.gradient_checkpointing
    assert args.report_to == [] and args.save_strategy == "no"


def test_settings_trl_cannot_run_are_refused(tmp_path):
    with pytest.raises(TRLSetupError, match="samples_per_task"):
        trl_config(TINY.with_(samples_per_task=1), "grpo", tmp_path, use_cpu=True)
    with pytest.raises(TRLSetupError, match="algorithm"):
        trl_config(TINY, "ppo", tmp_path, use_cpu=True)
    with pytest.raises(TRLSetupError, match="tasks_per_step"):
        train_with_trl(TINY.with_(tasks_per_step=3), TASKS, tmp_path, model="unused")


@pytest.mark.parametrize("algorithm", ["grpo", "rloo"])
def test_a_tiny_trl_run_saves_a_peft_adapter_and_counts_completions(tmp_path, tiny_model_dir, algorithm):
    result = train_with_trl(TINY, TASKS, tmp_path, model=str(tiny_model_dir), algorithm=algorithm)
    assert result.steps == TINY.steps and result.completions == TINY.steps * TINY.completions_per_step
    assert result.seconds > 0 and result.completions_per_s == pytest.approx(result.completions / result.seconds)
    assert 0.0 <= result.mean_reward <= 1.0 and result.algorithm == algorithm
    adapter = json.loads((result.adapter_dir / "adapter_config.json").read_text())
    assert adapter["peft_type"] == "LORA" and adapter["r"] == TINY.rank
    assert (result.adapter_dir / "adapter_model.safetensors").is_file()


def test_the_same_seed_trains_the_same_adapter(tmp_path, tiny_model_dir):
    from safetensors.torch import load_file

    config = TINY.with_(steps=1)
    runs = [train_with_trl(config, TASKS, tmp_path / name, model=str(tiny_model_dir)) for name in ("a", "b")]
    first, second = (load_file(run.adapter_dir / "adapter_model.safetensors") for run in runs)
    assert first.keys() == second.keys() and all((first[key] == second[key]).all() for key in first)
