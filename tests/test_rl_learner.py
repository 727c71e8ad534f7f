"""Chapter 08's REINFORCE learner: sampling, token terms, duplicates, baselines, exploration, resume and interruption."""

from __future__ import annotations

import json
import threading

import pytest
import torch

from slmlab.checkpoints import list_checkpoints
from slmlab.execution.scoring import Score
from slmlab.rl import learner as learner_module
from slmlab.rl.config import RLConfig, RLConfigError
from slmlab.rl.learner import Learner, Sample, sample_programs, token_terms, train_policy, truncate_attempts
from slmlab.rl.policy import TinyPolicy, TinyPolicyConfig
from slmlab.rl.tasks import generate_families


@pytest.fixture(scope="module")
def tasks():
    train, _ = generate_families(seed=0)
    return train[:6]


@pytest.fixture()
def policy(tasks):
    return TinyPolicy(tasks, TinyPolicyConfig(hidden_size=32, layers=1, heads=2, vocab_size=300))


def quick(**changes) -> RLConfig:
    return RLConfig.quick().with_(max_new_tokens=12, **changes)


def test_config_refuses_out_of_range_fields_by_name():
    with pytest.raises(RLConfigError, match="samples_per_task=0"):
        RLConfig(samples_per_task=0)
    with pytest.raises(RLConfigError, match="max_temperature"):
        RLConfig(temperature=1.5, max_temperature=1.0)
    saved = RLConfig().as_dict()
    assert RLConfig.from_dict(json.loads(json.dumps(saved))) == RLConfig()
    with pytest.raises(RLConfigError, match="bogus"):
        RLConfig.from_dict({**saved, "bogus": 1})


def test_sampling_is_seeded_and_stops_at_eos(policy, tasks):
    prompts = [policy.prompt_ids(task.prompt) for task in tasks[:3]]
    first = sample_programs(policy, prompts, 12, temperature=1.0, seed=5)
    assert first == sample_programs(policy, prompts, 12, temperature=1.0, seed=5)
    assert first != sample_programs(policy, prompts, 12, temperature=1.0, seed=6)
    for completion in first:
        assert 1 <= len(completion) <= 12
        if policy.eos_id in completion:
            assert completion.index(policy.eos_id) == len(completion) - 1


def test_token_terms_match_a_plain_forward_pass(policy, tasks):
    prompt, other = policy.prompt_ids(tasks[0].prompt), policy.prompt_ids(tasks[1].prompt)
    rows = [(prompt, [10, 11, 12]), (other, [13, 14])]
    terms = token_terms(policy, rows, with_kl=True)
    with torch.no_grad():
        logits = policy.model(torch.tensor([prompt + [10, 11, 12]])).logits[0]
    log_probs = torch.log_softmax(logits, -1)
    expected = sum(log_probs[len(prompt) - 1 + i, token].item() for i, token in enumerate([10, 11, 12])) / 3
    assert terms.logprob[0].item() == pytest.approx(expected, abs=1e-4)
    assert terms.tokens == 5
    assert terms.kl.abs().max().item() < 1e-5  # the reference is the initial model: nothing has changed yet
    assert (terms.entropy > 0).all()


class _Counting:
    def __init__(self, reward: float, status: str):
        self.calls, self.reward, self.status = [], reward, status

    def __call__(self, pairs, limits=None, workers=None):
        self.calls.append(len(pairs))
        return [Score(self.reward, 0, 1, self.status, "", {}) for _ in pairs]


def test_duplicates_are_not_run_again_and_failing_ones_are_penalized(policy, tasks, tmp_path, monkeypatch):
    learner = Learner(policy, quick(duplicate_penalty=0.1), tasks, tmp_path)
    scorer = _Counting(0.5, "partial")
    monkeypatch.setattr(learner_module, "score_programs", scorer)
    same = [Sample(tasks[0], None, [1], [2], code="def f(x):\n    return x\n") for _ in range(3)]
    renamed = Sample(tasks[0], None, [1], [2], code="def f(y):\n    return y  # same program\n")
    learner._score([*same, renamed])
    assert scorer.calls == [1]  # four attempts, one distinct program: run once
    assert [s.duplicate for s in [*same, renamed]] == [False, True, True, True]
    assert [s.reward for s in [*same, renamed]] == pytest.approx([0.5, 0.4, 0.4, 0.4])
    passing = _Counting(1.0, "passed")
    monkeypatch.setattr(learner_module, "score_programs", passing)
    solved = [Sample(tasks[1], None, [1], [2], code="def g():\n    return 1\n") for _ in range(2)]
    learner._score(solved)
    assert [s.reward for s in solved] == [1.0, 1.0]  # repeating a solution is not penalized


def test_advantages_use_an_ema_baseline_per_task(policy, tasks, tmp_path):
    learner = Learner(policy, quick(baseline_decay=0.5), tasks, tmp_path)
    group = [Sample(tasks[0], None, [1], [2], reward=r) for r in (1.0, 0.0)]
    first = learner._advantages(group)
    assert learner.state.baselines[tasks[0].name] == pytest.approx(0.5)
    assert first[0] == pytest.approx(-first[1])  # first draw: the group's mean is the baseline
    again = [Sample(tasks[0], None, [1], [2], reward=1.0) for _ in range(2)]
    second = learner._advantages(again)
    assert all(value > 0 for value in second)  # better than the baseline of 0.5
    assert learner.state.baselines[tasks[0].name] == pytest.approx(0.75)


def test_many_duplicates_raise_the_temperature_up_to_its_cap(policy, tasks, tmp_path):
    config = quick(temperature=0.9, max_temperature=1.1, temperature_step=0.1, duplicate_rate_high=0.5)
    learner = Learner(policy, config, tasks, tmp_path)
    for _ in range(4):
        learner._explore(0.9)
    assert learner.state.temperature == pytest.approx(1.1)
    learner._explore(0.0)
    assert learner.state.temperature == pytest.approx(1.0)


def test_task_choice_prefers_unmastered_tasks(policy, tasks, tmp_path):
    learner = Learner(policy, quick(tasks_per_step=1), tasks, tmp_path)
    learner.state.baselines = {task.name: 1.0 for task in tasks[1:]}
    drawn = [learner.choose_tasks(step)[0].name for step in range(200)]
    assert drawn.count(tasks[0].name) > 100  # weight 1.05 against 0.05 for each mastered task


def _weights(policy) -> dict[str, torch.Tensor]:
    return {name: param.detach().clone() for name, param in policy.trainable()}


def _attempts(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "attempts.jsonl").read_text().splitlines()]


def test_a_resumed_run_equals_an_uninterrupted_one(tasks, tmp_path):
    config = quick(steps=4, save_every=2)
    straight = TinyPolicy(tasks, TinyPolicyConfig(hidden_size=32, layers=1, heads=2, vocab_size=300))
    train_policy(config, tasks, tmp_path / "straight", policy=straight, progress=False)
    halves = TinyPolicy(tasks, TinyPolicyConfig(hidden_size=32, layers=1, heads=2, vocab_size=300))
    train_policy(config.with_(steps=2), tasks, tmp_path / "halves", policy=halves, progress=False)
    result = train_policy(config, tasks, tmp_path / "halves", policy=halves, progress=False)
    assert result.resumed_from == 2 and result.steps == 4
    for name, value in _weights(straight).items():  # bit for bit: the same operations in the same order in one process
        assert torch.equal(value, _weights(halves)[name]), name
    assert _attempts(tmp_path / "straight") == _attempts(tmp_path / "halves")
    assert (tmp_path / "halves" / "adapter" / "model.safetensors").exists()
    assert json.loads((tmp_path / "halves" / "summary.json").read_text())["steps"] == 4


def test_ctrl_c_keeps_the_state_and_the_same_command_resumes(tasks, tmp_path, policy):
    def interrupt(event, state):
        if event == "step" and state.step == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_policy(quick(steps=3, save_every=0), tasks, tmp_path, policy=policy, progress=False, callbacks=[interrupt])
    assert [path.name for path in list_checkpoints(tmp_path)] == ["step-000001"]
    assert {record["step"] for record in _attempts(tmp_path)} == {1}
    result = train_policy(quick(steps=3, save_every=0), tasks, tmp_path, policy=policy, progress=False)
    assert result.resumed_from == 1 and result.steps == 3


def test_an_error_does_not_overwrite_the_last_good_state(tasks, tmp_path, policy, monkeypatch):
    train_policy(quick(steps=2, save_every=2), tasks, tmp_path, policy=policy, progress=False)
    saved = (list_checkpoints(tmp_path)[-1] / "learner_state.pt").read_bytes()

    def broken(self, index):
        raise RuntimeError("scorer crashed")

    monkeypatch.setattr(Learner, "step", broken)
    with pytest.raises(RuntimeError, match="scorer crashed"):
        train_policy(quick(steps=4, save_every=1), tasks, tmp_path, policy=policy, progress=False)
    assert [path.name for path in list_checkpoints(tmp_path)] == ["step-000002"]
    assert (list_checkpoints(tmp_path)[-1] / "learner_state.pt").read_bytes() == saved


def test_the_stop_event_ends_the_run_with_its_files(tasks, tmp_path, policy):
    stop = threading.Event()
    stop.set()
    result = train_policy(quick(steps=5), tasks, tmp_path, policy=policy, progress=False, stop=stop)
    assert result.stopped and result.steps == 1
    assert (tmp_path / "adapter" / "model.safetensors").exists()
    assert "stopped at step 1" in (tmp_path / "train.log").read_text()


def test_truncate_attempts_drops_later_steps_and_a_half_line(tmp_path):
    path = tmp_path / "attempts.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3}\n{"ste')
    truncate_attempts(path, 2)
    assert path.read_text() == '{"step": 1}\n{"step": 2}\n'


def test_micro_batches_give_the_same_update(tasks, tmp_path):
    results = []
    for micro_batch in (1, 8):
        policy = TinyPolicy(tasks, TinyPolicyConfig(hidden_size=32, layers=1, heads=2, vocab_size=300))
        learner = Learner(policy, quick(micro_batch=micro_batch, kl_weight=0.1, entropy_weight=0.01), tasks, tmp_path)
        prompt = policy.prompt_ids(tasks[0].prompt)
        samples = [Sample(tasks[0], None, prompt, [10 + i, 11, 12][: 1 + i % 3]) for i in range(4)]
        replay = [(policy.prompt_ids(tasks[1].prompt), [20, 21])]
        scalars = learner._update(samples, [1.0, -0.5, 0.25, -0.75], replay)
        results.append((scalars, {name: param.grad.clone() for name, param in policy.trainable()}))
    (one, grads_one), (many, grads_many) = results
    assert one["loss"] == pytest.approx(many["loss"], rel=1e-4)
    assert one["grad_norm"] == pytest.approx(many["grad_norm"], rel=1e-4)
    # The accumulated gradients, not the weights after AdamW's step: Adam's first step is about lr * sign(grad), so a
    # gradient element near zero moves its weight by +-lr on whichever side the summation order of this CPU's kernels
    # puts it. Each element is an fp32 sum of a few hundred products, so both orders agree to ~n * 6e-8 of the
    # tensor's scale: 1e-5 of the largest element, and 1e-4 relative, leave room without hiding a lost micro-batch.
    assert grads_one.keys() == grads_many.keys() and grads_one
    for name, grad in grads_one.items():
        scale = grad.abs().max().item()
        torch.testing.assert_close(grads_many[name], grad, rtol=1e-4, atol=1e-5 * scale + 1e-12, msg=name)
