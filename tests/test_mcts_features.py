"""State features of chapter 06: ranges, dimension, the running z-score and MiniLM topic drift."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from slmlab.mcts.features import (
    FEATURE_NAMES,
    RunningStats,
    default_embedder,
    feature_dim,
    logit_stats,
    state_features,
    topic_drift,
)
from slmlab.mcts.lm_env import EnvConfig, LMEnvironment
from slmlab.mcts.macro import Macro

C, TB, TE = Macro.CONTINUE, Macro.THINK_BEGIN, Macro.THINK_END
INDEX = {name: i for i, name in enumerate(FEATURE_NAMES)}


@pytest.fixture(scope="module")
def embedder():
    return default_embedder()  # the packaged MiniLM the chapter's runs use


@pytest.fixture(scope="module")
def episode(tiny_torch) -> list[LMEnvironment]:
    """Root, then CONTINUE, THINK_BEGIN, CONTINUE (thought), THINK_END, CONTINUE."""
    states = [LMEnvironment(tiny_torch, "hello world", EnvConfig(span_tokens=4, budget=16))]
    for action in (C, TB, C, TE, C):
        states.append(states[-1].step(action))
    return states


def test_running_stats_match_numpy():
    values = np.random.default_rng(0).normal(3.0, 2.0, size=50)
    stats = RunningStats()
    assert stats.zscore(1.0) == 0.0  # no spread known yet
    for v in values:
        stats.push(float(v))
    assert stats.count == 50
    assert stats.mean == pytest.approx(values.mean()) and stats.std == pytest.approx(values.std(ddof=1))
    assert stats.zscore(values.mean() + stats.std) == pytest.approx(1.0)
    assert stats.zscore(1e9) == 5.0 and stats.zscore(-1e9) == -5.0
    same = RunningStats()
    for _ in range(3):
        same.push(2.0)
    assert same.zscore(7.0) == 0.0


def test_logit_stats_on_known_distributions():
    uniform = torch.zeros(100)
    entropy, gap = logit_stats(uniform)
    assert entropy == pytest.approx(math.log(100)) and gap == 0.0
    sharp = torch.tensor([20.0, 3.0, 0.0, float("-inf")])
    entropy, gap = logit_stats(sharp)
    assert 0.0 <= entropy < 1e-6 and gap == pytest.approx(17.0)


def test_features_have_the_right_size_and_ranges(tiny_torch, episode):
    vocab = len(tiny_torch.hf_tokenizer)
    stats = RunningStats()
    rows = np.stack([state_features(env, stats) for env in episode])
    assert rows.dtype == np.float32 and rows.shape == (len(episode), feature_dim(tiny_torch))
    assert feature_dim(tiny_torch) == len(FEATURE_NAMES) + 64 and np.isfinite(rows).all()
    assert ((rows[:, INDEX["entropy"]] >= 0) & (rows[:, INDEX["entropy"]] <= math.log(vocab) + 1e-5)).all()
    assert (rows[:, INDEX["top_gap"]] >= 0).all()
    z = rows[:, INDEX["entropy_z"]]
    assert z[0] == 0.0 and (np.abs(z) <= 5).all() and np.abs(z).max() > 0
    assert (rows[:, INDEX["topic_drift"]] == 0).all()  # no embedder
    position = rows[:, INDEX["budget_position"]]
    assert position.tolist() == pytest.approx([0, 4 / 16, 4 / 16, 8 / 16, 8 / 16, 12 / 16])
    assert rows[:, INDEX["in_thought"]].tolist() == [0, 0, 1, 1, 0, 0]
    np.testing.assert_allclose(rows[-1, len(FEATURE_NAMES) :], episode[-1].hidden_mean.numpy(), rtol=1e-6)
    assert stats.count == len(episode)


def test_topic_drift_with_minilm(embedder, episode):
    question = "What is the capital of France?"
    near = topic_drift(question, "The capital of France is Paris.", embedder)
    far = topic_drift(question, "Stir the soup and add two carrots.", embedder)
    assert topic_drift(question, question, embedder) == pytest.approx(0.0, abs=1e-5)
    assert 0.0 <= near < far <= 2.0
    assert topic_drift(question, "   ", embedder) == 0.0 and topic_drift(question, "Paris", None) == 0.0
    drift = state_features(episode[-1], RunningStats(), embedder)[INDEX["topic_drift"]]
    assert 0.0 < drift <= 2.0 and state_features(episode[0], None, embedder)[INDEX["topic_drift"]] == 0.0
