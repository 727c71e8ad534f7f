"""Chapter 08's learner: REINFORCE on coding tasks, where the sandboxed score of each sampled program is the reward.

Per step a few tasks (weighted towards those not yet mastered) get several sampled programs each. Repeated programs
are recognised by fingerprint and not run again; hints come only when a task is stuck. The update is REINFORCE with
an EMA baseline per task and a running reward scale, plus an entropy bonus, a KL term to the frozen reference, and a
replay of programs that passed. Ctrl+C checkpoints everything the run needs to continue where it stopped.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from slmlab.checkpoints import load_training_state, save_training_state
from slmlab.execution.fingerprint import FingerprintSet, fingerprint
from slmlab.execution.scoring import RewardNormalizer, score_programs
from slmlab.execution.tasks import CodeTask, extract_code, task_prompt
from slmlab.io import atomic_write_folder, atomic_write_json, atomic_write_text, save_table
from slmlab.rl.config import RLConfig
from slmlab.rl.evaluate import PassAtOneSettings, score_replies
from slmlab.rl.hints import HintSchedule
from slmlab.rl.monitor import ATTEMPTS_FILE, WeightChangeMonitor, attempt_records, attempts_frame, close_run_logger, run_logger
from slmlab.rl.policy import build_policy
from slmlab.rl.spec import ADAPTER, SUMMARY_FILE
from slmlab.runlog import RunLog, read_metrics
from slmlab.trainloop import Callback, Checkpointing, TrainState, stop_when, train_loop

if TYPE_CHECKING:
    import pandas as pd
    import torch

__all__ = [
    "Learner",
    "RLResult",
    "policy_pass_at_1",
    "read_attempts",
    "read_metrics",
    "sample_programs",
    "token_terms",
    "train_policy",
]

STATE_FILE = "learner_state.pt"
ADAPTER_DIR = ADAPTER
LOG_FILE = "train.log"
HINTS_FILE = "hints.csv"  # every stuck check and hint decision (HintSchedule.events)
# What the step function returns: logged to metrics.jsonl and TensorBoard under these tags.
LOGGED = {
    "loss": "loss/total",
    "reward": "reward/mean",
    "pass_rate": "reward/pass_rate",
    "train_score": "reward/ema",
    "advantage_std": "reward/advantage_std",
    "entropy": "policy/entropy",
    "kl": "policy/kl",
    "grad_norm": "train/grad_norm",
    "weight_change": "train/weight_change",
    "lr": "train/lr",
    "temperature": "explore/temperature",
    "duplicate_rate": "explore/duplicate_rate",
    "hints": "explore/hints",
    "completions_per_s": "speed/completions_per_s",
    "replay": "train/replay",
}
RUN_FILES = ("metrics.jsonl", "tensorboard", ATTEMPTS_FILE, ADAPTER_DIR, SUMMARY_FILE, HINTS_FILE)
NOT_TRAJECTORY = ("steps", "save_every", "keep_checkpoints")  # settings a run may change when it resumes


@dataclass
class Sample:
    """One sampled program: its task, hint, tokens, program text and score."""

    task: CodeTask
    hint: str | None
    prompt_ids: list[int]
    completion_ids: list[int]
    code: str = ""
    reward: float = 0.0
    status: str = ""
    duplicate: bool = False


@dataclass
class LearnerState:
    """Everything besides the weights and optimizer that a resumed run needs to take the same next step."""

    baselines: dict[str, float] = field(default_factory=dict)
    normalizer: RewardNormalizer = field(default_factory=RewardNormalizer)
    fingerprints: dict[str, FingerprintSet] = field(default_factory=dict)
    scores: dict[str, tuple[float, str]] = field(default_factory=dict)  # "task:fingerprint" -> (reward, status)
    replay: list[tuple[str, list[int]]] = field(default_factory=list)  # (task, completion ids) that passed
    temperature: float = 1.0
    completions: int = 0
    generation_seconds: float = 0.0

    def state_dict(self) -> dict[str, Any]:
        return {
            "baselines": dict(self.baselines),
            "normalizer": self.normalizer.state_dict(),
            "fingerprints": {name: prints.state_dict() for name, prints in self.fingerprints.items()},
            "scores": {key: list(value) for key, value in self.scores.items()},
            "replay": [[name, list(ids)] for name, ids in self.replay],
            "temperature": self.temperature,
            "completions": self.completions,
            "generation_seconds": self.generation_seconds,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.baselines = {str(key): float(value) for key, value in state["baselines"].items()}
        self.normalizer.load_state_dict(state["normalizer"])
        self.fingerprints = {}
        for name, saved in state["fingerprints"].items():
            self.fingerprints[name] = FingerprintSet()
            self.fingerprints[name].load_state_dict(saved)
        self.scores = {key: (float(value[0]), str(value[1])) for key, value in state["scores"].items()}
        self.replay = [(str(name), [int(i) for i in ids]) for name, ids in state["replay"]]
        self.temperature = float(state["temperature"])
        self.completions, self.generation_seconds = int(state["completions"]), float(state["generation_seconds"])


@dataclass
class RLResult:
    """A finished (or stopped) run: where its files are and how much it generated."""

    run_dir: Path
    adapter_dir: Path
    steps: int
    completions: int
    generation_seconds: float
    seconds: float
    resumed_from: int
    stopped: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def completions_per_s(self) -> float:
        return self.completions / self.seconds if self.seconds else 0.0


class FenceStop:
    """Stops a row once its reply has closed its first fenced code block: the rest of a chat reply is prose that
    earns no reward. transformers' ``stop_strings`` cannot say "the second fence", so this criterion is written here.
    Records the completion length of each row it stopped."""

    def __init__(self, tokenizer, prompt_length: int) -> None:
        self.tokenizer, self.prompt_length = tokenizer, prompt_length
        self.stopped_at: dict[int, int] = {}

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        import torch

        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        length = input_ids.shape[1] - self.prompt_length
        for row in range(input_ids.shape[0]):
            if row in self.stopped_at:
                done[row] = True
                continue
            text = self.tokenizer.decode(input_ids[row, self.prompt_length :], skip_special_tokens=True)
            if text.count("```") >= 2:
                self.stopped_at[row] = length
                done[row] = True
        return done


def _left_padded(rows: Sequence[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for index, row in enumerate(rows):
        ids[index, width - len(row) :] = torch.tensor(row, dtype=torch.long)
        mask[index, width - len(row) :] = 1
    return ids, mask


def sample_programs(
    policy, prompts: Sequence[list[int]], max_new_tokens: int, temperature: float | None, top_p: float = 1.0, seed: int = 0
) -> list[list[int]]:
    """One completion per prompt (token ids up to and including EOS, or up to the closing code fence); ``temperature``
    None decodes greedily. Seeded, so the same weights and prompts give the same programs."""
    import torch

    ids, mask = _left_padded(prompts, policy.pad_id)
    stop = FenceStop(policy.tokenizer, ids.shape[1])
    sampling = (
        {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": None}
        if temperature
        else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    )
    torch.manual_seed(seed)
    policy.model.eval()
    with torch.inference_mode():
        output = policy.model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            pad_token_id=policy.pad_id,
            eos_token_id=policy.eos_id,
            stopping_criteria=[stop],
            **sampling,
        )
    completions = []
    for row, tokens in enumerate(output[:, ids.shape[1] :].tolist()):
        length = stop.stopped_at.get(row, len(tokens))
        if policy.eos_id in tokens[:length]:
            length = tokens.index(policy.eos_id) + 1
        completions.append(tokens[:length])
    return completions


def policy_pass_at_1(policy, tasks: Sequence[CodeTask], settings=None) -> pd.DataFrame:
    """Greedy pass@1 of a policy through its own prompts and decoding (the tiny policy has no chat template): the
    same columns as :func:`slmlab.rl.evaluate.pass_at_1`."""
    settings = settings or PassAtOneSettings()
    replies = []
    for start in range(0, len(tasks), settings.batch_size):
        chunk = tasks[start : start + settings.batch_size]
        completions = sample_programs(
            policy,
            [policy.prompt_ids(task_prompt(task)) for task in chunk],
            settings.max_new_tokens,
            temperature=None,
            seed=settings.seed,
        )
        replies += [policy.reply_text(completion) for completion in completions]
    return score_replies(tasks, replies)


@dataclass
class TokenTerms:
    """Per-row means over completion tokens: log-probability (with gradient), entropy and KL to the reference."""

    logprob: torch.Tensor
    entropy: torch.Tensor
    kl: torch.Tensor | None
    tokens: int


def _batch(rows: Sequence[tuple[list[int], list[int]]], pad_id: int):
    import torch

    prompt_width = max(len(prompt) for prompt, _ in rows)
    completion_width = max(max(len(completion) for _, completion in rows), 1)
    width = prompt_width + completion_width
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    targets = torch.zeros((len(rows), completion_width), dtype=torch.bool)
    for index, (prompt, completion) in enumerate(rows):
        start = prompt_width - len(prompt)
        ids[index, start : prompt_width + len(completion)] = torch.tensor(prompt + completion, dtype=torch.long)
        mask[index, start : prompt_width + len(completion)] = 1
        targets[index, : len(completion)] = True
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, mask, positions, targets, prompt_width


def _completion_logits(model, ids, mask, positions, prompt_width: int):
    """Logits that predict each completion token (only those positions are projected onto the vocabulary)."""
    keep = ids.shape[1] - prompt_width + 1
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=keep).logits
    return logits[:, :-1].float()


def token_terms(policy, rows: Sequence[tuple[list[int], list[int]]], with_kl: bool) -> TokenTerms:
    """Teacher-forced pass over prompt + completion rows: mean token log-probability per row (differentiable), mean
    entropy, and the KL estimate ``exp(q - p) - (q - p) - 1`` (p policy, q reference log-probability) per row."""
    import torch

    ids, mask, positions, targets, prompt_width = _batch(rows, policy.pad_id)
    completion = ids[:, prompt_width:]
    log_probs = torch.log_softmax(_completion_logits(policy.model, ids, mask, positions, prompt_width), dim=-1)
    chosen = log_probs.gather(-1, completion.unsqueeze(-1)).squeeze(-1)
    entropy = -(log_probs.exp() * log_probs).sum(-1)
    weights = targets.float()
    counts = weights.sum(-1).clamp(min=1)
    kl = None
    if with_kl:
        with torch.no_grad(), policy.reference():
            reference = torch.log_softmax(_completion_logits(policy.model, ids, mask, positions, prompt_width), dim=-1)
            reference = reference.gather(-1, completion.unsqueeze(-1)).squeeze(-1)
        gap = reference - chosen
        kl = ((gap.exp() - gap - 1) * weights).sum(-1) / counts
    return TokenTerms((chosen * weights).sum(-1) / counts, (entropy * weights).sum(-1) / counts, kl, int(weights.sum()))


class Learner:
    """The REINFORCE learner's step, its bookkeeping and its checkpoint files (see :class:`RLConfig` for the loss)."""

    def __init__(
        self, policy, config: RLConfig, tasks: Sequence[CodeTask], run_dir: Path, logger: logging.Logger | None = None
    ) -> None:
        import torch

        if not tasks:
            raise ValueError("train_policy needs at least one training task")
        self.policy, self.config, self.tasks, self.run_dir = policy, config, list(tasks), Path(run_dir)
        self.by_name = {task.name: task for task in self.tasks}
        self.logger = logger or logging.getLogger("slmlab.rl")
        self.parameters = [param for _, param in policy.trainable()]
        self.optimizer = torch.optim.AdamW(self.parameters, lr=config.learning_rate, weight_decay=0.0)
        self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer,
            mode="max",
            factor=config.plateau_factor,
            patience=config.plateau_patience,
            min_lr=config.min_learning_rate,
        )
        self.hints = HintSchedule(config.hints)
        self.state = LearnerState(temperature=config.temperature)
        self.weights = WeightChangeMonitor(
            policy.trainable(), explode=config.weight_explode, vanish=config.weight_vanish, logger=self.logger
        )
        self.attempts_path = self.run_dir / ATTEMPTS_FILE
        self._attempts_opened = False

    # -- choosing and scoring -------------------------------------------------------------------------------------
    def choose_tasks(self, step: int) -> list[CodeTask]:
        """``tasks_per_step`` distinct tasks, each drawn with weight 1.05 - its reward baseline (unseen: 0.5), so
        mastered tasks, whose programs all earn the baseline and teach nothing, are drawn less often."""
        rng = np.random.default_rng((self.config.seed, step))
        weights = np.array([1.05 - self.state.baselines.get(task.name, 0.5) for task in self.tasks])
        count = min(self.config.tasks_per_step, len(self.tasks))
        chosen = rng.choice(len(self.tasks), size=count, replace=False, p=weights / weights.sum())
        return [self.tasks[index] for index in sorted(chosen)]

    def _sample(self, step: int, tasks: Sequence[CodeTask]) -> list[Sample]:
        samples = []
        for task in tasks:
            hint = self.hints.hint_for(task)
            prompt = self.policy.prompt_ids(task_prompt(task, hint))
            samples += [Sample(task, hint, prompt, []) for _ in range(self.config.samples_per_task)]
        start = time.perf_counter()
        completions = sample_programs(
            self.policy,
            [sample.prompt_ids for sample in samples],
            self.config.max_new_tokens,
            self.state.temperature,
            self.config.top_p,
            seed=self.config.seed * 1_000_003 + step,
        )
        self.state.generation_seconds += time.perf_counter() - start
        for sample, completion in zip(samples, completions):
            sample.completion_ids = completion
            sample.code = extract_code(self.policy.reply_text(completion), sample.task)
        return samples

    def _score(self, samples: Sequence[Sample]) -> None:
        """Run each new program once; a repeat takes its earlier score (a repeat that failed loses the penalty)."""
        keys, fresh = [], {}
        for sample in samples:
            prints = self.state.fingerprints.setdefault(sample.task.name, FingerprintSet())
            program = fingerprint(sample.code)
            sample.duplicate = not prints.add_fingerprint(program)
            keys.append(f"{sample.task.name}:{program}")
            if not sample.duplicate:
                fresh[keys[-1]] = sample
        scores = score_programs([(sample.task, sample.code) for sample in fresh.values()])
        for key, score in zip(fresh, scores):
            self.state.scores[key] = (score.reward, score.status)
        for sample, key in zip(samples, keys):
            reward, sample.status = self.state.scores[key]
            penalty = self.config.duplicate_penalty if sample.duplicate and sample.status != "passed" else 0.0
            sample.reward = max(0.0, reward - penalty)

    def _advantages(self, samples: Sequence[Sample]) -> list[float]:
        """(reward - the task's EMA baseline) / the running reward std; a task's first draw uses its group's mean."""
        decay = self.config.baseline_decay
        self.state.normalizer.update([sample.reward for sample in samples])
        scale = max(self.state.normalizer.std, 1e-3)
        advantages = []
        for task in dict.fromkeys(sample.task.name for sample in samples):
            group = [sample.reward for sample in samples if sample.task.name == task]
            baseline = self.state.baselines.get(task, float(np.mean(group)))
            advantages += [(reward - baseline) / scale for reward in group]
            self.state.baselines[task] = decay * baseline + (1 - decay) * float(np.mean(group))
        return advantages

    def _record(self, samples: Sequence[Sample]) -> None:
        for sample in samples:
            self.hints.record(sample.task, sample.reward)
            if sample.status == "passed" and not sample.duplicate:
                self.state.replay.append((sample.task.name, list(sample.completion_ids)))
        excess = len(self.state.replay) - self.config.replay_size  # keep the newest replay_size programs
        if excess > 0:
            del self.state.replay[:excess]

    def _replay_rows(self, step: int) -> list[tuple[list[int], list[int]]]:
        if not self.state.replay or not self.config.replay_per_step or not self.config.replay_weight:
            return []
        rng = np.random.default_rng((self.config.seed, step, 1))
        picks = rng.choice(len(self.state.replay), size=min(self.config.replay_per_step, len(self.state.replay)), replace=False)
        rows = []
        for index in sorted(picks):
            name, completion = self.state.replay[index]
            rows.append((self.policy.prompt_ids(task_prompt(self.by_name[name])), completion))  # without the hint
        return rows

    # -- the update -----------------------------------------------------------------------------------------------
    def _update(self, samples: Sequence[Sample], advantages: Sequence[float], replay) -> dict[str, float]:
        """One optimizer step on the loss of :class:`RLConfig`, accumulated over micro-batches of ``micro_batch``
        rows (the loss is a sum of per-row terms, so the gradient is the same; memory traffic is far smaller)."""
        import torch

        config = self.config
        self.policy.model.train()
        sampled = [(sample.prompt_ids, sample.completion_ids) for sample in samples]
        rows = sampled + list(replay)
        # Per row: (advantage, weight of its log-probability term, weight of its entropy and KL terms).
        count, replays = len(sampled), max(len(replay), 1)
        coefficients = [(-advantage / count, 1.0 / count) for advantage in advantages]
        coefficients += [(-config.replay_weight / replays, 0.0) for _ in replay]
        totals = dict.fromkeys(("loss", "entropy", "kl", "replay"), 0.0)
        tokens = 0
        self.optimizer.zero_grad(set_to_none=True)
        for start in range(0, len(rows), config.micro_batch):
            chunk = slice(start, start + config.micro_batch)
            terms = token_terms(self.policy, rows[chunk], with_kl=config.kl_weight > 0)
            logprob_weight, share = (torch.tensor(column, dtype=torch.float32) for column in zip(*coefficients[chunk]))
            loss = (logprob_weight * terms.logprob - share * config.entropy_weight * terms.entropy).sum()
            if terms.kl is not None:
                loss = loss + (share * config.kl_weight * terms.kl).sum()
                totals["kl"] += float((share * terms.kl.detach()).sum())
            loss.backward()
            totals["loss"] += loss.item()
            totals["entropy"] += float((share * terms.entropy.detach()).sum())
            totals["replay"] += float(-(terms.logprob.detach() * (share == 0)).sum()) / replays
            tokens += terms.tokens
        grad_norm = torch.nn.utils.clip_grad_norm_(self.parameters, config.grad_clip)
        self.optimizer.step()
        return {**totals, "grad_norm": float(grad_norm), "tokens": tokens}

    def _explore(self, duplicate_rate: float) -> None:
        """A step of mostly repeated programs raises the temperature; a step of new ones lowers it back."""
        config, current = self.config, self.state.temperature
        if duplicate_rate > config.duplicate_rate_high:
            self.state.temperature = min(config.max_temperature, current + config.temperature_step)
        else:
            self.state.temperature = max(config.temperature, current - config.temperature_step)
        if self.state.temperature > current:
            self.logger.info("duplicate rate %.2f: temperature %.2f -> %.2f", duplicate_rate, current, self.state.temperature)

    def step(self, index: int) -> dict[str, float]:
        """Train 0-based step ``index``: sample, score, update; returns the step's scalars."""
        start = time.perf_counter()
        if not self._attempts_opened:
            self.logger.info(
                "%s at step %d of %d (%s, %d tasks)",
                "continuing" if index else "starting",
                index,
                self.config.steps,
                getattr(self.policy, "name", "?"),
                len(self.tasks),
            )
        tasks = self.choose_tasks(index)
        samples = self._sample(index, tasks)
        self._score(samples)
        advantages = self._advantages(samples)
        self._record(samples)
        scalars = self._update(samples, advantages, self._replay_rows(index))
        duplicate_rate = float(np.mean([sample.duplicate for sample in samples]))
        self._explore(duplicate_rate)
        train_score = float(
            np.mean([self.state.baselines[task.name] for task in self.tasks if task.name in self.state.baselines])
        )
        self.plateau.step(train_score)
        self.state.completions += len(samples)
        self._write_attempts(index + 1, samples)
        rewards = [sample.reward for sample in samples]
        scalars.update(
            reward=float(np.mean(rewards)),
            pass_rate=float(np.mean([s.status == "passed" for s in samples])),
            train_score=train_score,
            advantage_std=float(np.std(advantages)),
            weight_change=self.weights.update(),
            lr=self.optimizer.param_groups[0]["lr"],
            temperature=self.state.temperature,
            duplicate_rate=duplicate_rate,
            hints=float(sum(sample.hint is not None for sample in samples[:: self.config.samples_per_task])),
            completions_per_s=len(samples) / max(time.perf_counter() - start, 1e-9),
        )
        self.logger.info(
            "step %d: reward %.3f pass %.2f dup %.2f loss %.4f grad %.3f",
            index + 1,
            scalars["reward"],
            scalars["pass_rate"],
            duplicate_rate,
            scalars["loss"],
            scalars["grad_norm"],
        )
        return scalars

    # -- files ----------------------------------------------------------------------------------------------------
    def _write_attempts(self, step: int, samples: Sequence[Sample]) -> None:
        if not self._attempts_opened:
            truncate_attempts(self.attempts_path, step - 1)
            self._attempts_opened = True
        lines = "".join(
            json.dumps(
                {
                    "step": step,
                    "task": s.task.name,
                    "family": s.task.family or "-",
                    "sample": i,
                    "reward": round(s.reward, 6),
                    "status": s.status,
                    "duplicate": s.duplicate,
                    "hint": s.hint,
                    "tokens": len(s.completion_ids),
                    "code": s.code,
                }
            )
            + "\n"
            for i, s in enumerate(samples)
        )
        with self.attempts_path.open("a", encoding="utf-8") as handle:
            handle.write(lines)

    def save_files(self, folder: Path) -> None:
        """Adapter (or weights), optimizer, plateau schedule, baselines, fingerprints, hint state and RNG."""
        self.policy.save(folder)
        save_training_state(
            folder / STATE_FILE,
            self.optimizer,
            self.plateau,
            learner=self.state.state_dict(),
            hints=self.hints.state_dict(),
            weights=self.weights.state_dict(),
        )

    def load_files(self, folder: Path) -> None:
        self.policy.load(folder)
        saved = load_training_state(folder / STATE_FILE, self.optimizer, self.plateau)
        self.state.load_state_dict(saved["learner"])
        self.hints.load_state_dict(saved["hints"])
        self.weights.load_state_dict(saved["weights"])


def truncate_attempts(path: Path, step: int) -> None:
    """Keep the attempts of steps up to ``step`` (a killed run may have logged steps that will run again, or half a
    line)."""
    if path.exists():
        kept = [json.dumps(record) + "\n" for record in attempt_records(path) if record["step"] <= step]
        atomic_write_text(path, "".join(kept))


def read_attempts(run_dir: str | Path) -> pd.DataFrame:
    """The attempts of a run folder as a DataFrame (one row per sampled program)."""
    return attempts_frame(Path(run_dir))


def train_policy(
    config: RLConfig,
    tasks: Sequence[CodeTask],
    run_dir: str | Path,
    model: str | None = None,
    resume: bool = True,
    progress: bool = True,
    callbacks: Sequence[Callback] = (),
    stop: threading.Event | None = None,
    policy=None,
) -> RLResult:
    """Train a policy (``model``: a LoRA adapter on that model, default SmolLM2; "tiny": from scratch) on ``tasks``
    with REINFORCE for ``config.steps`` steps, continuing the run in ``run_dir`` when its settings match.

    Writes ``config.json``, ``metrics.jsonl`` + TensorBoard, ``attempts.jsonl``, ``train.log``, checkpoints, and at
    the end the policy itself to ``adapter/`` (a PEFT folder; a full model folder for the tiny policy) and
    ``summary.json``. Ctrl+C checkpoints and re-raises; ``stop`` set from another thread ends the run cleanly.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    policy = policy or build_policy(config, tasks, model)
    settings = {**config.as_dict(), "policy": getattr(policy, "name", "?"), "tasks": sorted(t.name for t in tasks)}
    logger = run_logger(run_dir)  # train.log is kept across runs (each start is logged), unlike the metrics
    learner = Learner(policy, config, tasks, run_dir, logger)
    checkpointing = Checkpointing(
        run_dir,
        settings,
        learner.save_files,
        learner.load_files,
        keep=config.keep_checkpoints,
        ignore=NOT_TRAJECTORY,
        run_files=RUN_FILES,
    )
    log = RunLog(run_dir, LOGGED)
    hooks = [log, *callbacks] + ([stop_when(stop)] if stop is not None else [])
    atomic_write_json(run_dir / "config.json", settings)

    def stopped(state: TrainState) -> None:  # a Stop: the newest checkpoint's state, what a later call resumes
        _finish(learner, state, run_dir)
        logger.info("stopped at step %d", state.step)

    try:
        run = train_loop(
            learner.step,
            config.steps,
            checkpointing,
            save_every=config.save_every,
            callbacks=hooks,
            resume=resume,
            progress=progress,
            desc="REINFORCE",
            finish=lambda state: _finish(learner, state, run_dir),
            on_stop=stopped,
        )
    finally:
        log.close()
        close_run_logger(logger)
    state = run.state
    return RLResult(
        run_dir,
        run_dir / ADAPTER_DIR,
        state.step,
        learner.state.completions,
        learner.state.generation_seconds,
        state.seconds,
        run.resumed_from,
        run.stopped,
        list(learner.weights.warnings),
    )


def _finish(learner: Learner, state: TrainState, run_dir: Path) -> None:
    """The policy as a stock folder, and the run's summary."""
    atomic_write_folder(run_dir / ADAPTER_DIR, learner.policy.save)
    save_table(learner.hints.events(), run_dir / HINTS_FILE)
    prints = list(learner.state.fingerprints.values())
    total = sum(p.total for p in prints)
    atomic_write_json(
        run_dir / SUMMARY_FILE,
        {
            "steps": state.step,
            "completions": learner.state.completions,
            "seconds": state.seconds,
            "generation_seconds": learner.state.generation_seconds,
            "duplicate_rate": sum(p.duplicates for p in prints) / total if total else 0.0,
            "solved_tasks": sorted({name for name, _ in learner.state.replay}),
            "hints": learner.hints.summary(),
            "weight_warnings": list(learner.weights.warnings),
            "policy": getattr(learner.policy, "name", "?"),
            "temperature": learner.state.temperature,
        },
    )
