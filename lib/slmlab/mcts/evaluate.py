"""Chapter 06's honest comparison: the MCTS controller against plain greedy decoding and best-of-n sampling
on held-out QA items, on accuracy, tokens spent and latency.

Entry point: :func:`evaluate_controllers` (one row per method and item) and :func:`summarize_evaluation`;
:func:`conclusion` turns that summary into the chapter's verdict.
None of the methods sees the gold answer while answering:

- ``greedy``: one greedy reply of up to ``budget`` tokens (every item in one continuously batched call).
- ``best-of-n``: ``best_of`` replies sampled at ``temperature`` (every item's in one call); the one with the highest
  verifier-free score (the model's own fluency, 0.9, and brevity, 0.1 — the reward the MCTS controller
  uses at test time) is kept.
- ``mcts``: :func:`~slmlab.mcts.selfplay.search_episode` with the network (or uniform priors without
  one), no exploration noise, the most visited macro-action played at each move.

``tokens_spent`` counts the tokens the model generated or read after the prompt: the reply for greedy,
every sample for best-of-n, every span and marker the search decoded for mcts (``answer_tokens`` is the
length of the reply that is kept). Correctness is :func:`~slmlab.mcts.qa.qa_correct` against the gold.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from slmlab.generation import DecodingConfig
from slmlab.io import atomic_write_text
from slmlab.mcts.lm_env import EnvConfig
from slmlab.mcts.network import NetworkEvaluator, PolicyValueNet
from slmlab.mcts.qa import qa_correct
from slmlab.mcts.reward import RewardWeights, score_episode
from slmlab.mcts.selfplay import Featurizer, SearchSettings, UniformEvaluator, search_episode
from slmlab.tasks import TaskItem

METHODS = ("greedy", "best-of-n", "mcts")
COLUMNS = ["method", "sample_id", "question", "gold", "pred", "correct", "answer_tokens", "tokens_spent",
           "latency_ms", "actions"]
VERIFIER_FREE = RewardWeights(exact=0.0, fluency=0.9, judge=0.0, brevity=0.1)


@dataclass(frozen=True)
class EvalSettings:
    """The shared token budget and each method's knobs."""

    budget: int = 48
    span_tokens: int = 8
    best_of: int = 4
    temperature: float = 0.8
    simulations: int = 8
    parallel_leaves: int = 4  # see SearchSettings.parallel_leaves
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.budget, self.span_tokens, self.best_of, self.simulations, self.parallel_leaves) < 1 or self.temperature <= 0:
            raise ValueError(f"EvalSettings needs budget, span_tokens, best_of, simulations >= 1 and temperature > 0: "
                             f"{self}")


def _row(method: str, item: TaskItem, pred: str, answer_tokens: int, spent: int, latency_ms: float,
         actions: str = "") -> dict:
    return {"method": method, "sample_id": item.id, "question": item.question, "gold": item.answer, "pred": pred,
            "correct": qa_correct(pred, item.answer), "answer_tokens": answer_tokens, "tokens_spent": spent,
            "latency_ms": round(latency_ms, 1), "actions": actions}


def _elapsed_ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000


def greedy_answers(model, items: Sequence[TaskItem], settings: EvalSettings) -> list[dict]:
    """One greedy reply per item, all items in one continuously batched call (latency: its share of the call)."""
    start = time.perf_counter()
    replies = model.generate_ids([item.question for item in items], DecodingConfig(max_new_tokens=settings.budget))
    latency = _elapsed_ms(start) / max(len(items), 1)
    return [_row("greedy", item, model.decode(ids), len(ids), len(ids), latency) for item, ids in zip(items, replies)]


def best_of_n_answers(model, items: Sequence[TaskItem], settings: EvalSettings) -> list[dict]:
    """``best_of`` sampled replies per item, every item's samples in one continuously batched call; per item the
    reply with the best verifier-free score is kept (latency: the item's share of the call, plus its scoring)."""
    start = time.perf_counter()
    config = DecodingConfig(strategy="sample", temperature=settings.temperature, max_new_tokens=settings.budget,
                            seed=settings.seed, batch_size=max(DecodingConfig.batch_size, settings.best_of))
    replies = model.generate_ids([item.question for item in items for _ in range(settings.best_of)], config)
    share = _elapsed_ms(start) / max(len(items), 1)
    rows = []
    for index, item in enumerate(items):
        scoring = time.perf_counter()
        samples = replies[index * settings.best_of : (index + 1) * settings.best_of]
        scored = []
        for ids in samples:
            text = model.decode(ids)
            score = score_episode(model, item.question, text, None, len(ids), settings.budget, VERIFIER_FREE)["total"]
            scored.append((score, text, len(ids)))
        best = max(scored, key=lambda s: s[0])  # max keeps the first of equal scores
        rows.append(_row("best-of-n", item, best[1], best[2], sum(len(ids) for ids in samples),
                         share + _elapsed_ms(scoring)))
    return rows


def mcts_answer(model, item: TaskItem, settings: EvalSettings, network: PolicyValueNet | None = None,
                embedder=None) -> dict:
    start = time.perf_counter()
    featurizer = Featurizer(embedder)
    evaluator = NetworkEvaluator(network, featurizer) if network is not None else UniformEvaluator()
    episode = search_episode(model, item, evaluator, EnvConfig(span_tokens=settings.span_tokens, budget=settings.budget),
                             SearchSettings(simulations=settings.simulations, parallel_leaves=settings.parallel_leaves,
                                            seed=settings.seed), featurizer,
                             use_gold=False)
    return _row("mcts", item, episode.visible_text, episode.tokens - episode.thought_tokens, episode.fed_tokens,
                _elapsed_ms(start), actions=",".join(episode.actions))


def evaluate_controllers(
    model,
    items: Sequence[TaskItem],
    settings: EvalSettings = EvalSettings(),
    methods: Sequence[str] = METHODS,
    network: PolicyValueNet | None = None,
    embedder=None,
    progress: bool = True,
    out: str | Path | None = None,
) -> pd.DataFrame:
    """One row per (method, item) with the columns of :data:`COLUMNS`; written to ``out`` (CSV) when given."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    batched = {"greedy": greedy_answers, "best-of-n": best_of_n_answers}  # every item in one generate call
    rows = []
    with tqdm(total=len(methods) * len(items), desc="evaluate", unit="answer", disable=not progress) as bar:
        for method in methods:
            if method in batched:
                rows.extend(batched[method](model, items, settings))
                bar.update(len(items))
                continue
            for item in items:
                rows.append(mcts_answer(model, item, settings, network, embedder))
                bar.update(1)
    frame = pd.DataFrame(rows, columns=COLUMNS)
    if out is not None:
        atomic_write_text(out, frame.to_csv(index=False))
    return frame


def summarize_evaluation(frame: pd.DataFrame) -> pd.DataFrame:
    """Per method: items, accuracy (%), mean answer tokens, mean tokens spent and latency p50/p95 (ms)."""
    grouped = frame.groupby("method", sort=False)
    table = pd.DataFrame({
        "items": grouped["sample_id"].count(),
        "accuracy": (100 * grouped["correct"].mean()).round(1),
        "answer_tokens": grouped["answer_tokens"].mean().round(1),
        "tokens_spent": grouped["tokens_spent"].mean().round(1),
        "latency_p50_ms": grouped["latency_ms"].quantile(0.5).round(1),
        "latency_p95_ms": grouped["latency_ms"].quantile(0.95).round(1),
    })
    return table.reset_index()


def conclusion_figures(table: pd.DataFrame) -> dict:
    """The verdict's numbers from a :func:`summarize_evaluation` table with ``mcts`` and ``greedy`` rows:
    held-out ``items``, accuracy ``gain`` of mcts over greedy (points), ``token_cost`` (mcts tokens spent per
    greedy token) and whether mcts ``beats`` greedy."""
    by_method = table.set_index("method")
    gain = float(by_method.loc["mcts", "accuracy"] - by_method.loc["greedy", "accuracy"])
    cost = float(by_method.loc["mcts", "tokens_spent"] / max(by_method.loc["greedy", "tokens_spent"], 1e-9))
    return {"items": int(by_method.loc["greedy", "items"]), "gain": gain, "token_cost": cost, "beats": gain > 0}


def conclusion(table: pd.DataFrame) -> str:
    """One Markdown sentence: does the MCTS controller beat greedy decoding, by how much, at what token cost."""
    figures = conclusion_figures(table)
    verdict = "beats" if figures["beats"] else "does not beat"
    return (f"On these {figures['items']} held-out questions the MCTS controller **{verdict}** greedy decoding: "
            f"{figures['gain']:+.1f} points of exact match, at {figures['token_cost']:.1f}× the tokens.")
