"""The MCTS controller of chapter 06 behind the :class:`~slmlab.mcts.macro.Controller` protocol the server uses.

Each request is one :func:`~slmlab.mcts.selfplay.search_episode` without a gold answer and without
exploration: the policy-value network (or uniform priors without one) guides the search, finished
branches are scored by the model's own fluency and brevity, and the most visited macro-action is played.
The result carries the visible text only; the trace shows thought spans as a placeholder.
"""

from __future__ import annotations

import time
from pathlib import Path

from slmlab.mcts.features import TOPIC_DRIFT, topic_drift_embedder
from slmlab.mcts.lm_env import EnvConfig
from slmlab.mcts.macro import ControllerResult
from slmlab.mcts.network import NetworkEvaluator, load_network
from slmlab.mcts.selfplay import Featurizer, SearchSettings, UniformEvaluator, search_episode
from slmlab.mcts.spec import SIMULATIONS, SPAN_TOKENS
from slmlab.tasks import TaskItem


class MCTSController:
    """Answer a prompt by searching ``simulations`` simulations per macro-action (``network``: a file
    written by :func:`~slmlab.mcts.network.save_network`, e.g. ``results/mcts/network/network.pt``). The network sees
    the features its run was trained on: with ``topic_drift`` (the chapter's default) the packaged MiniLM's distance
    between prompt and answer; pass False for a network from a run made with ``--no-topic-drift``."""

    def __init__(
        self,
        model,
        network: str | Path | None = None,
        simulations: int = SIMULATIONS,
        span_tokens: int = SPAN_TOKENS,
        topic_drift: bool = TOPIC_DRIFT,
    ) -> None:
        if simulations < 1 or span_tokens < 1:
            raise ValueError(f"simulations and span_tokens must be >= 1, got {simulations}, {span_tokens}")
        self.model = model
        self.network_path = Path(network) if network is not None else None
        self.net = load_network(self.network_path) if self.network_path is not None else None
        self.simulations = simulations
        self.span_tokens = span_tokens
        self.topic_drift = topic_drift

    def describe(self) -> dict:
        """Controller, model and settings, for ``GET /health``."""
        return {
            "controller": "mcts",
            "model": self.model.name,
            "backend": self.model.backend,
            "device": self.model.device,
            "simulations": self.simulations,
            "span_tokens": self.span_tokens,
            "network": str(self.network_path) if self.network_path else None,
            "topic_drift": self.topic_drift,
        }

    def run(self, prompt: str, budget: int, seed: int) -> ControllerResult:
        start = time.perf_counter()
        featurizer = Featurizer(topic_drift_embedder(self.topic_drift) if self.net is not None else None)
        evaluator = NetworkEvaluator(self.net, featurizer) if self.net is not None else UniformEvaluator()
        item = TaskItem(id="request", question=prompt, answer="", domain="qa")
        episode = search_episode(
            self.model,
            item,
            evaluator,
            EnvConfig(span_tokens=self.span_tokens, budget=budget),
            SearchSettings(simulations=self.simulations, seed=seed),
            featurizer,
            use_gold=False,
        )
        trace = [{k: v for k, v in step.items() if k != "fed"} for step in episode.trace]
        return ControllerResult(
            visible_text=episode.visible_text.strip(),
            macro_trace=trace,
            tokens=episode.tokens,
            thought_tokens=episode.thought_tokens,
            total_ms=round((time.perf_counter() - start) * 1000, 2),
        )
