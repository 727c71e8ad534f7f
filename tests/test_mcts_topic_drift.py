"""Topic drift in the chapter's real runs: self-play, the evaluation and the command line featurize states with the
packaged MiniLM unless told not to, and a run folder keeps the choice its self-play was made with."""

from __future__ import annotations

import argparse
import json
import zlib

import numpy as np
import pytest

import slmlab.mcts.features as features
import slmlab.mcts.selfplay as selfplay
from slmlab.mcts.cli import add_mcts_commands
from slmlab.mcts.features import FEATURE_NAMES, PackagedMiniLM, default_embedder
from slmlab.mcts.qa import make_qa_items
from slmlab.mcts.replay import ReplayBuffer
from slmlab.mcts.runs import ChapterSettings, chapter_items, run_chapter
from slmlab.mcts.selfplay import Featurizer, recorded_topic_drift

DRIFT = FEATURE_NAMES.index("topic_drift")
TINY = ChapterSettings(
    n_train=2,
    n_test=1,
    rounds=1,
    episodes_per_round=1,
    steps_per_round=2,
    batch_size=4,
    simulations=2,
    budget=6,
    span_tokens=3,
    best_of=2,
)


class HashEmbedder:
    """A stand-in for MiniLM: a fixed random vector per text, and every text it was asked for."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def encode(self, texts):
        self.texts.extend(texts)
        return np.stack([np.random.default_rng(zlib.crc32(t.encode())).normal(size=8) for t in texts])


class HashModel:
    """A stand-in for the core's sentence embedder the packaged one wraps."""

    def encode(self, texts):
        return np.ones((len(texts), 3)) / np.sqrt(3)


class Refusing:
    def encode(self, texts):
        raise AssertionError("no embedding was asked for")


@pytest.fixture
def fake_minilm(monkeypatch) -> HashEmbedder:
    """The chapter's default embedder, replaced."""
    fake = HashEmbedder()
    monkeypatch.setattr(features, "default_embedder", lambda: fake)
    return fake


@pytest.fixture
def seen_features(monkeypatch) -> list[tuple[str, float]]:
    """(prompt, topic drift) of every state the searches featurize."""
    seen, real = [], selfplay.state_features

    def recording(env, stats=None, embedder=None):
        features = real(env, stats, embedder)
        seen.append((env.prompt_text, float(features[DRIFT])))
        return features

    monkeypatch.setattr(selfplay, "state_features", recording)
    return seen


def replay_drift(run_dir) -> np.ndarray:
    buffer = ReplayBuffer.open(run_dir / "replay")
    return buffer.rows(buffer.indices())["features"][:, DRIFT]


def test_the_packaged_minilm_loads_once_and_only_when_used(monkeypatch):
    loads = []
    monkeypatch.setattr("slmlab.mcts.features.load_embedder", lambda device: loads.append(device) or HashModel())
    embedder = PackagedMiniLM()
    assert loads == [] and default_embedder() is default_embedder()
    first = embedder.encode(["a question", "an answer"])
    embedder.encode(["another"])
    assert loads == ["cpu"] and first.shape == (2, 3)


def test_self_play_and_evaluation_compute_topic_drift_with_minilm(tiny_torch, tmp_path, seen_features):
    """The real run with its default: the packaged MiniLM, in the replay buffer and in what the network sees."""
    assert run_chapter(tiny_torch, tmp_path, TINY, methods=["mcts"], progress=False)["episodes"] == 1
    drift = replay_drift(tmp_path)
    assert (drift > 0).any() and ((drift >= 0) & (drift <= 2)).all()
    train_items, test_items = chapter_items(TINY)
    evaluated = [d for prompt, d in seen_features if prompt == test_items[0].question]
    played = [d for prompt, d in seen_features if prompt in {i.question for i in train_items}]
    assert evaluated and max(evaluated) > 0 and played and max(played) > 0
    assert json.loads((tmp_path / "config.json").read_text())["topic_drift"] is True
    assert json.loads((tmp_path / "eval.json").read_text())["topic_drift"] is True
    assert default_embedder().encode(["the default"]).shape == (1, 384)  # the real MiniLM did it


def test_the_chapter_run_passes_the_default_embedder_to_self_play_and_evaluation(tiny_torch, tmp_path, fake_minilm):
    run_chapter(tiny_torch, tmp_path, TINY, methods=["mcts"], progress=False)
    train_items, test_items = chapter_items(TINY)
    prompts = set(fake_minilm.texts)
    assert {train_items[0].question, test_items[0].question} <= prompts  # self-play's item, then the test item
    assert (replay_drift(tmp_path) > 0).any() and recorded_topic_drift(tmp_path) is True


def test_without_topic_drift_nothing_is_embedded_and_the_folder_keeps_that_choice(tiny_torch, tmp_path, monkeypatch):
    monkeypatch.setattr(features, "default_embedder", Refusing)
    run_chapter(tiny_torch, tmp_path, TINY, methods=["mcts"], progress=False, topic_drift=False)
    assert (replay_drift(tmp_path) == 0).all() and recorded_topic_drift(tmp_path) is False
    assert json.loads((tmp_path / "eval.json").read_text())["topic_drift"] is False
    with pytest.raises(ValueError, match=r"made without topic drift: go on with topic_drift=False \(--no-topic-drift\)"):
        run_chapter(tiny_torch, tmp_path, TINY, methods=["mcts"], progress=False)
    with pytest.raises(ValueError, match=r"other settings \(topic_drift differ\)"):
        selfplay.self_play(tiny_torch, make_qa_items(2), tmp_path, 1, TINY.selfplay(), HashEmbedder(), progress=False)


def test_a_folder_written_before_topic_drift_was_recorded_resumes_without_it(tiny_torch, tmp_path):
    config = TINY.selfplay()
    selfplay.self_play(tiny_torch, make_qa_items(2), tmp_path, 1, config, progress=False)
    saved = json.loads((tmp_path / "config.json").read_text())
    del saved["topic_drift"]  # as such a folder was written: its features hold 0 there
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert recorded_topic_drift(tmp_path) is False and recorded_topic_drift(tmp_path / "none") is None
    assert selfplay.self_play(tiny_torch, make_qa_items(2), tmp_path, 1, config, progress=False).first_episode == 1


def test_a_run_folders_featurizer_has_the_features_its_network_learned_from(tiny_torch, tmp_path, monkeypatch):
    minilm = HashEmbedder()
    monkeypatch.setattr(features, "default_embedder", lambda: minilm)
    assert Featurizer.for_run(tmp_path / "new").embedder is minilm  # no self-play yet: the chapter's default
    config = TINY.selfplay()
    selfplay.self_play(tiny_torch, make_qa_items(2), tmp_path / "without", 1, config, progress=False)
    selfplay.self_play(tiny_torch, make_qa_items(2), tmp_path / "with", 1, config, minilm, progress=False)
    assert Featurizer.for_run(tmp_path / "without").embedder is None
    assert Featurizer.for_run(tmp_path / "with").embedder is minilm


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser()
    add_mcts_commands(root.add_subparsers(dest="command", required=True))
    return root


def test_the_commands_embed_with_minilm_unless_told_not_to(tiny_model_dir, tmp_path, fake_minilm):
    common = ["--model", str(tiny_model_dir), "--sims", "1", "--budget", "6", "--span-tokens", "3"]
    with_drift, without = tmp_path / "with", tmp_path / "without"
    for command in (["selfplay", "--episodes", "1"], ["evaluate", "--n-test", "1", "--methods", "mcts"]):
        args = parser().parse_args(["mcts", *command, "--run", str(with_drift), *common])
        assert args.run(args) == 0
    assert recorded_topic_drift(with_drift) is True and json.loads((with_drift / "eval.json").read_text())["topic_drift"]
    asked = len(fake_minilm.texts)
    args = parser().parse_args(["mcts", "selfplay", "--episodes", "1", "--run", str(without), "--no-topic-drift", *common])
    assert args.run(args) == 0 and recorded_topic_drift(without) is False and len(fake_minilm.texts) == asked
    args = parser().parse_args(["mcts", "evaluate", "--run", str(with_drift), "--no-topic-drift", *common])
    with pytest.raises(ValueError, match="made with topic drift"):
        args.run(args)
