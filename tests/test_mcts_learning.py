"""Chapter 06 learning: the policy-value network, the on-disk replay buffer and the training loop
(checkpoints, exact resume, TensorBoard and metrics.jsonl, learning a synthetic target)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from slmlab.mcts.learning import TrainSettings, lr_factor, train_network
from slmlab.mcts.macro import MACROS, Macro, MacroState, Span, action_mask
from slmlab.mcts.network import (
    NetworkEvaluator,
    PolicyValueNet,
    load_network,
    masked_policy,
    save_network,
)
from slmlab.mcts.replay import ReplayBuffer, ReplayBufferError
from slmlab.mcts.views import plot_training
from slmlab.runlog import read_metrics

D, A = 12, len(MACROS)


def make_net(seed: int = 0, **kwargs) -> PolicyValueNet:
    torch.manual_seed(seed)
    return PolicyValueNet(D, hidden=32, **kwargs)


def random_mask(rng: np.random.Generator) -> np.ndarray:
    mask = rng.random(A) < 0.6
    mask[rng.integers(A)] = True  # never all-illegal
    return mask


def random_policy(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    policy = rng.random(A) * mask
    return policy / policy.sum()


def fill(buffer: ReplayBuffer, count: int, seed: int = 0) -> None:
    """Random features, random legal masks and targets (unlearnable noise; for plumbing tests)."""
    rng = np.random.default_rng(seed)
    masks = [random_mask(rng) for _ in range(count)]
    buffer.add_batch(
        rng.normal(size=(count, D)) * 5, masks, [random_policy(rng, m) for m in masks], rng.uniform(-1, 1, size=count)
    )


def fill_learnable(buffer: ReplayBuffer, count: int, seed: int = 0) -> None:
    """Policy target one-hot on the argmax of the first A features (all legal); value = tanh(feature A)."""
    x = np.random.default_rng(seed).normal(size=(count, D)).astype(np.float32)
    buffer.add_batch(x, np.ones((count, A), bool), np.eye(A)[np.argmax(x[:, :A], axis=1)], np.tanh(x[:, A]))


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny matrices gain nothing from intra-op threads, and on a busy shared 2-core machine the idle
    OpenMP workers slow every op down a hundredfold."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def state_dicts_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --- network ------------------------------------------------------------------------------------


def test_masked_policy_zeroes_illegal_actions_and_rows_sum_to_one():
    rng = np.random.default_rng(0)
    logits = torch.randn(64, A) * 10
    mask = torch.from_numpy(np.stack([random_mask(rng) for _ in range(64)]))
    probs = masked_policy(logits, mask)
    assert torch.all(probs[~mask] == 0)
    assert torch.all(probs[mask] > 0)
    assert torch.allclose(probs.sum(-1), torch.ones(64))
    single = masked_policy(torch.tensor([5.0, 1.0, 0.0, 9.0, 2.0]), [True, True, False, False, True])
    assert single.tolist()[2:4] == [0.0, 0.0] and single[0] > single[4] > single[1]


def test_masked_policy_rejects_an_all_illegal_row():
    with pytest.raises(ValueError, match="all-illegal"):
        masked_policy(torch.zeros(2, A), torch.tensor([[True] + [False] * (A - 1), [False] * A]))


def test_value_lies_in_range_and_shapes_are_batched():
    net = make_net()
    x = torch.randn(32, D) * 1e4
    logits, value = net(x)
    assert logits.shape == (32, A) and value.shape == (32,)
    assert len({round(v, 6) for v in value.tolist()}) > 1  # not a constant output
    with torch.no_grad():  # a head whose raw output lies far outside [-1, 1]
        net.value_head.weight.mul_(50)
        net.value_head.bias.fill_(3.0)
        assert torch.all(net(x)[1].abs() <= 1)


def test_network_evaluator_gives_priors_over_the_legal_actions_only():
    net = make_net()
    features = np.random.default_rng(1).normal(size=D).astype(np.float32)
    evaluator = NetworkEvaluator(net, lambda state: (features, action_mask(state)))
    fresh = MacroState(budget=8)
    after_text = fresh.apply(Macro.CONTINUE, Span("Hi", (1, 2)))
    for state in (fresh, after_text):
        priors, value = evaluator.evaluate(state)
        assert list(priors) == list(state.legal_actions())
        assert all(p > 0 for p in priors.values()) and sum(priors.values()) == pytest.approx(1.0)
        assert -1 <= value <= 1 and isinstance(value, float)
    assert Macro.STOP not in evaluator.evaluate(fresh)[0]  # no visible text yet
    lying = NetworkEvaluator(net, lambda state: (features, (True,) * A))
    with pytest.raises(ValueError, match="disagrees"):
        lying.evaluate(fresh)


def test_save_and_load_network_round_trip(tmp_path):
    net = make_net(dropout=0.1, layers=3).eval()
    path = save_network(net, tmp_path / "nets" / "net.pt")
    loaded = load_network(path).eval()
    assert loaded.config == net.config and state_dicts_equal(net, loaded)
    x = torch.randn(4, D)
    assert all(torch.equal(a, b) for a, b in zip(net(x), loaded(x)))
    assert [p.name for p in path.parent.iterdir()] == ["net.pt"]  # the temp file was renamed away
    (tmp_path / "junk.pt").write_bytes(b"not a network")
    with pytest.raises(ValueError, match="junk.pt"):
        load_network(tmp_path / "junk.pt")


# --- replay buffer ------------------------------------------------------------------------------


def test_replay_ring_overwrites_the_oldest_rows(tmp_path):
    buffer = ReplayBuffer(tmp_path / "replay", capacity=5, feature_dim=D)
    for i in range(8):
        buffer.add(np.full(D, i), [True] * A, np.eye(A)[i % A], i / 10)
    assert len(buffer) == 5 and buffer.added == 8
    rows = buffer.rows(buffer.indices())
    assert rows["features"][:, 0].tolist() == [3, 4, 5, 6, 7]  # oldest first; 0, 1, 2 overwritten
    assert rows["value"].tolist() == pytest.approx([0.3, 0.4, 0.5, 0.6, 0.7])
    batch = buffer.sample(64, np.random.default_rng(0))
    assert set(batch["features"][:, 0].tolist()) == {3, 4, 5, 6, 7}
    assert batch["features"].dtype == torch.float32 and batch["mask"].dtype == torch.bool
    assert batch["policy"].shape == (64, A) and batch["value"].shape == (64,)
    again = buffer.sample(64, np.random.default_rng(0))
    assert all(torch.equal(batch[k], again[k]) for k in batch)


def test_replay_persists_across_reopen(tmp_path):
    path = tmp_path / "replay"
    first = ReplayBuffer(path, capacity=6, feature_dim=D)
    rng = np.random.default_rng(3)
    steps = [(rng.normal(size=D), [True, True, False, False, True], {Macro.CONTINUE: 3, Macro.STOP: 1}) for _ in range(4)]
    assert first.add_episode(steps, value=0.5) == 4
    before = first.rows(first.indices())
    del first
    reopened = ReplayBuffer(path, capacity=6, feature_dim=D)  # a new object reads what the old one wrote
    assert len(reopened) == 4 and reopened.position == 4
    after = reopened.rows(reopened.indices())
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert after["policy"][0].tolist() == pytest.approx([0.75, 0, 0, 0, 0.25])  # dict in MACROS order, normalised
    assert after["value"].tolist() == [0.5] * 4
    reopened.add_episode(steps, value=-1.0)  # continues at position 4 and wraps
    assert len(ReplayBuffer.open(path)) == 6 and ReplayBuffer.open(path).position == 2


def test_replay_header_errors_name_the_file_and_field(tmp_path):
    path = tmp_path / "replay"
    fill(ReplayBuffer(path, capacity=4, feature_dim=D), 2)
    with pytest.raises(ReplayBufferError, match=r"header\.json.*capacity is 4"):
        ReplayBuffer(path, capacity=8, feature_dim=D)
    with pytest.raises(ReplayBufferError, match=r"header\.json.*feature_dim is 12"):
        ReplayBuffer(path, capacity=4, feature_dim=D + 1)
    header = json.loads((path / "header.json").read_text())
    (path / "header.json").write_text(json.dumps(header | {"size": 9}))
    with pytest.raises(ReplayBufferError, match="do not fit"):
        ReplayBuffer(path, capacity=4, feature_dim=D)
    (path / "header.json").write_text("{ truncated")
    with pytest.raises(ReplayBufferError, match=r"header\.json.*corrupt"):
        ReplayBuffer(path, capacity=4, feature_dim=D)
    (path / "header.json").write_text(json.dumps(header))
    np.save(path / "value.npy", np.zeros(3, np.float32))  # an array of the wrong length
    with pytest.raises(ReplayBufferError, match=r"value\.npy"):
        ReplayBuffer(path, capacity=4, feature_dim=D)


def test_replay_rejects_bad_rows_without_writing_them(tmp_path):
    buffer = ReplayBuffer(tmp_path / "replay", capacity=4, feature_dim=D)
    legal = [True, False, False, False, True]
    with pytest.raises(ValueError, match="illegal"):
        buffer.add(np.zeros(D), legal, [0.5, 0.5, 0, 0, 0], 0.0)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        buffer.add(np.zeros(D), legal, [1, 0, 0, 0, 0], 2.0)
    with pytest.raises(ValueError, match="shape"):
        buffer.add(np.zeros(D + 1), legal, [1, 0, 0, 0, 0], 0.0)
    with pytest.raises(ValueError, match="illegal"):  # one bad step stops the whole episode
        buffer.add_episode([(np.zeros(D), legal, [1, 0, 0, 0, 0]), (np.zeros(D), legal, [0, 1, 0, 0, 0])], 0.0)
    assert len(ReplayBuffer.open(tmp_path / "replay")) == 0
    with pytest.raises(ValueError, match="empty"):
        buffer.sample(2, np.random.default_rng(0))


# --- training -----------------------------------------------------------------------------------


@pytest.fixture
def noise_buffer(tmp_path):
    buffer = ReplayBuffer(tmp_path / "replay", capacity=64, feature_dim=D)
    fill(buffer, 64)
    return buffer


def test_smoke_run_logs_checkpoints_and_tensorboard(tmp_path, noise_buffer):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    settings = TrainSettings(steps=10, batch_size=16, warmup_steps=3, checkpoint_every=4, keep_checkpoints=2)
    report = train_network(make_net(), noise_buffer, settings, tmp_path / "run", progress=False)
    assert report.step == report.steps_run == 10 and report.resumed_from == 0
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(1, 11))
    assert all(np.isfinite([r[k] for k in ("policy_loss", "value_loss", "total_loss", "grad_norm")]).all() for r in records)
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["step-000008", "step-000010"]
    assert report.checkpoint.name == "step-000010"
    assert {"network.pt", "optimizer.pt", "trainer_state.json"} <= {p.name for p in report.checkpoint.iterdir()}
    assert load_network(report.network_path).config.feature_dim == D
    events = EventAccumulator(str(report.tensorboard_dir))
    events.Reload()
    assert {"loss/policy", "loss/value", "loss/total", "lr", "grad_norm"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("loss/total")] == list(range(1, 11))
    lrs = [r["lr"] for r in records]  # warmup rises to the peak, then the cosine falls
    assert lrs[0] < lrs[1] < lrs[2] and lrs[2] == pytest.approx(settings.learning_rate)
    assert lrs[2] > lrs[5] > lrs[9] > 0
    figure = plot_training(report.metrics_path)
    assert len(figure.axes[0].lines) == 3


def test_lr_schedules_warm_up_then_decay_to_zero():
    for schedule in ("cosine", "linear"):
        factor = lr_factor(TrainSettings(steps=100, warmup_steps=10, schedule=schedule))
        assert factor(0) == pytest.approx(0.1) and factor(9) == pytest.approx(1.0)
        assert factor(55) == pytest.approx(0.5) and factor(100) == pytest.approx(0.0)
    assert lr_factor(TrainSettings(steps=100, warmup_steps=0, schedule="constant"))(99) == 1.0


def test_resume_continues_from_the_checkpoint_and_matches_an_uninterrupted_run(tmp_path, noise_buffer):
    # dropout on, so that the torch RNG must be restored as well
    common = dict(batch_size=16, warmup_steps=2, schedule_steps=10, checkpoint_every=3, seed=7)
    straight = make_net(dropout=0.2)
    train_network(straight, noise_buffer, TrainSettings(steps=10, **common), tmp_path / "straight", progress=False)

    train_network(
        make_net(dropout=0.2),
        noise_buffer,
        TrainSettings(steps=6, **common),
        tmp_path / "staged",
        tensorboard=False,
        progress=False,
    )
    resumed = make_net(dropout=0.2)  # a new process would start from fresh weights too
    report = train_network(
        resumed, noise_buffer, TrainSettings(steps=10, **common), tmp_path / "staged", tensorboard=False, progress=False
    )
    assert report.resumed_from == 6 and report.steps_run == 4
    assert [r["step"] for r in read_metrics(tmp_path / "staged")] == list(range(1, 11))
    assert state_dicts_equal(straight, resumed)
    assert read_metrics(tmp_path / "staged") == read_metrics(tmp_path / "straight")

    other = TrainSettings(steps=10, **common | {"learning_rate": 5e-3})
    with pytest.warns(UserWarning, match="new run"):
        fresh = train_network(make_net(dropout=0.2), noise_buffer, other, tmp_path / "staged", tensorboard=False, progress=False)
    assert fresh.resumed_from == 0 and fresh.steps_run == 10


def test_resume_after_a_kill_drops_metrics_logged_past_the_checkpoint(tmp_path, noise_buffer):
    common = dict(batch_size=8, warmup_steps=0, schedule_steps=8, checkpoint_every=4)
    run = tmp_path / "run"
    train_network(make_net(), noise_buffer, TrainSettings(steps=5, **common), run, tensorboard=False, progress=False)
    # as if the process died after logging step 5 but before checkpointing it: only step-000004 is left
    shutil.rmtree(run / "checkpoints" / "step-000005")
    report = train_network(make_net(), noise_buffer, TrainSettings(steps=8, **common), run, tensorboard=False, progress=False)
    assert report.resumed_from == 4 and report.steps_run == 4
    assert [r["step"] for r in read_metrics(run)] == list(range(1, 9))


def test_training_learns_a_learnable_synthetic_target(tmp_path):
    buffer = ReplayBuffer(tmp_path / "replay", capacity=512, feature_dim=D)
    fill_learnable(buffer, 512)
    settings = TrainSettings(steps=150, batch_size=64, learning_rate=3e-3, warmup_steps=10, checkpoint_every=1000)
    report = train_network(make_net(), buffer, settings, tmp_path / "run", tensorboard=False, progress=False)
    records = read_metrics(report.metrics_path)
    first = np.mean([r["total_loss"] for r in records[:5]])
    last = np.mean([r["total_loss"] for r in records[-10:]])
    assert last < 0.35 * first, (first, last)
    net = load_network(report.network_path).eval()
    rows = buffer.rows(np.arange(200))
    logits, _ = net(torch.from_numpy(rows["features"]))
    accuracy = (logits.argmax(-1).numpy() == rows["policy"].argmax(-1)).mean()
    assert accuracy > 0.8
