"""Chapter 06's honest comparison: the MCTS controller against plain greedy decoding, best-of-n sampling and
self-consistency majority vote on held-out QA items, on accuracy, tokens spent and latency.

Entry point: :func:`evaluate_controllers` (one row per method and item) and :func:`summarize_evaluation`;
:func:`conclusion` turns that summary into the chapter's verdict.
None of the methods sees the gold answer while answering:

- ``greedy``: one greedy reply of up to ``budget`` tokens (every item in one continuously batched call).
- ``best-of-n``: ``best_of`` replies sampled at ``temperature`` (every item's in one call); the one with the highest
  verifier-free score (the model's own fluency, 0.9, and brevity, 0.1) is kept.
- ``majority-vote``: self-consistency — the same ``best_of`` samples, and the reply carrying the most common final
  answer is kept (:func:`~slmlab.mcts.consistency.majority_answer`, votes weighted by the model's own likelihood).
- ``mcts``: :func:`~slmlab.mcts.selfplay.search_episode` with the network (or uniform priors without one; the
  network sees the features self-play gave it, topic drift from the same ``embedder``), no exploration noise;
  finished branches are valued by their agreement with the other finished branches (:mod:`slmlab.mcts.consistency`),
  the search stops once they agree and answers with the majority's branch.

``tokens_spent`` counts the tokens the model generated or read after the prompt: the reply for greedy,
every sample for best-of-n and majority vote, every span and marker the search decoded for mcts
(``answer_tokens`` is the length of the reply that is kept). Scoring a finished reply (one forward pass over
tokens already generated) is not counted. Correctness is :func:`~slmlab.mcts.qa.qa_correct` against the gold.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from slmlab.generation import DecodingConfig
from slmlab.io import atomic_write_text
from slmlab.mcts.consistency import answer_key, majority_answer
from slmlab.mcts.features import Embedder
from slmlab.mcts.network import NetworkEvaluator, PolicyValueNet
from slmlab.mcts.qa import qa_correct
from slmlab.mcts.reward import RewardWeights, reply_mean_logprob, score_episode
from slmlab.mcts.selfplay import Featurizer, UniformEvaluator, search_episode
from slmlab.mcts.spec import ConsistencySettings, EnvConfig, EvalSettings, SearchSettings
from slmlab.tasks import TaskItem

METHODS = ("greedy", "best-of-n", "majority-vote", "mcts")  # every method, in the order of the chapter's table
BASE_METHODS = ("greedy", "best-of-n", "mcts")  # the library's default comparison; the chapter asks for METHODS
COLUMNS = ["method", "sample_id", "question", "gold", "pred", "correct", "answer_tokens", "tokens_spent", "latency_ms", "actions"]
VERIFIER_FREE = RewardWeights(exact=0.0, fluency=0.9, judge=0.0, brevity=0.1)


def _row(method: str, item: TaskItem, pred: str, answer_tokens: int, spent: int, latency_ms: float, actions: str = "") -> dict:
    return {
        "method": method,
        "sample_id": item.id,
        "question": item.question,
        "gold": item.answer,
        "pred": pred,
        "correct": qa_correct(pred, item.answer),
        "answer_tokens": answer_tokens,
        "tokens_spent": spent,
        "latency_ms": round(latency_ms, 1),
        "actions": actions,
    }


def _elapsed_ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000


def greedy_answers(model, items: Sequence[TaskItem], settings: EvalSettings) -> list[dict]:
    """One greedy reply per item, all items in one continuously batched call (latency: its share of the call)."""
    start = time.perf_counter()
    replies = model.generate_ids([item.question for item in items], DecodingConfig(max_new_tokens=settings.budget))
    latency = _elapsed_ms(start) / max(len(items), 1)
    return [_row("greedy", item, model.decode(ids), len(ids), len(ids), latency) for item, ids in zip(items, replies)]


def sample_replies(model, items: Sequence[TaskItem], settings: EvalSettings) -> tuple[list[list[list[int]]], float]:
    """``best_of`` replies per item sampled at ``temperature``, every item's in one continuously batched call;
    returns them per item and each item's share of the call's time (ms)."""
    start = time.perf_counter()
    config = DecodingConfig(
        strategy="sample",
        temperature=settings.temperature,
        max_new_tokens=settings.budget,
        seed=settings.seed,
        batch_size=max(DecodingConfig.batch_size, settings.best_of),
    )
    replies = model.generate_ids([item.question for item in items for _ in range(settings.best_of)], config)
    per_item = [replies[index * settings.best_of : (index + 1) * settings.best_of] for index in range(len(items))]
    return per_item, _elapsed_ms(start) / max(len(items), 1)


def best_of_n_answers(model, items: Sequence[TaskItem], settings: EvalSettings, samples=None) -> list[dict]:
    """Per item the sampled reply (:func:`sample_replies`, or ``samples`` already drawn) with the best
    verifier-free score (latency: the item's share of the sampling call, plus its scoring)."""
    samples, share = samples or sample_replies(model, items, settings)
    rows = []
    for item, replies in zip(items, samples):
        scoring = time.perf_counter()
        scored = []
        for ids in replies:
            text = model.decode(ids)
            score = score_episode(model, item.question, text, None, len(ids), settings.budget, VERIFIER_FREE)["total"]
            scored.append((score, text, len(ids)))
        best = max(scored, key=lambda s: s[0])  # max keeps the first of equal scores
        rows.append(_row("best-of-n", item, best[1], best[2], sum(len(ids) for ids in replies), share + _elapsed_ms(scoring)))
    return rows


def majority_vote_answers(model, items: Sequence[TaskItem], settings: EvalSettings, samples=None) -> list[dict]:
    """Self-consistency: per item the sampled reply that carries the most common final answer, each vote
    weighted by the model's own likelihood of its reply, as the search's votes are (``settings.consistency``)
    (latency: the item's share of the sampling, plus voting)."""
    samples, share = samples or sample_replies(model, items, settings)
    vote = settings.consistency or ConsistencySettings()
    rows = []
    for item, replies in zip(items, samples):
        voting = time.perf_counter()
        texts = [model.decode(ids) for ids in replies]
        weights = [reply_mean_logprob(model, item.question, ids) for ids in replies]
        winner = majority_answer([answer_key(text) for text in texts], weights, vote.sharpness)
        winner = 0 if winner is None else winner
        rows.append(
            _row(
                "majority-vote",
                item,
                texts[winner],
                len(replies[winner]),
                sum(len(ids) for ids in replies),
                share + _elapsed_ms(voting),
            )
        )
    return rows


def mcts_answer(
    model, item: TaskItem, settings: EvalSettings, network: PolicyValueNet | None = None, embedder: Embedder | None = None
) -> dict:
    """One search episode without the gold answer (see the module docstring); states are featurized only for a
    network (uniform priors need no features, so ``embedder`` then costs nothing)."""
    start = time.perf_counter()
    featurizer = Featurizer(embedder) if network is not None else None
    evaluator = NetworkEvaluator(network, featurizer) if featurizer is not None else UniformEvaluator()
    env = EnvConfig(span_tokens=settings.span_tokens, budget=settings.budget, resample_temperature=settings.temperature)
    episode = search_episode(
        model,
        item,
        evaluator,
        env,
        SearchSettings(simulations=settings.simulations, parallel_leaves=settings.parallel_leaves, seed=settings.seed),
        featurizer,
        use_gold=False,
        consistency=settings.consistency,
    )
    return _row(
        "mcts",
        item,
        episode.visible_text,
        episode.tokens - episode.thought_tokens,
        episode.fed_tokens,
        _elapsed_ms(start),
        actions=",".join(episode.actions),
    )


def evaluate_controllers(
    model,
    items: Sequence[TaskItem],
    settings: EvalSettings = EvalSettings(),
    methods: Sequence[str] = BASE_METHODS,
    network: PolicyValueNet | None = None,
    embedder: Embedder | None = None,
    progress: bool = True,
    out: str | Path | None = None,
) -> pd.DataFrame:
    """One row per (method, item) with the columns of :data:`COLUMNS`; written to ``out`` (CSV) when given.
    Best-of-n and majority vote, when both are asked for, choose among the same samples. Give ``network`` the
    ``embedder`` its self-play had (:func:`~slmlab.mcts.runs.evaluate_run` checks the run folder's record)."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    sampled = {"best-of-n": best_of_n_answers, "majority-vote": majority_vote_answers}
    samples = sample_replies(model, items, settings) if len(set(sampled) & set(methods)) > 1 else None
    rows = []
    with tqdm(total=len(methods) * len(items), desc="evaluate", unit="answer", disable=not progress) as bar:
        for method in methods:
            if method == "greedy":  # every item in one generate call
                rows.extend(greedy_answers(model, items, settings))
            elif method in sampled:
                rows.extend(sampled[method](model, items, settings, samples))
            else:
                rows.extend(mcts_answer(model, item, settings, network, embedder) for item in items)
            bar.update(len(items))
    frame = pd.DataFrame(rows, columns=COLUMNS)
    if out is not None:
        atomic_write_text(out, frame.to_csv(index=False))
    return frame


def summarize_evaluation(frame: pd.DataFrame) -> pd.DataFrame:
    """Per method: items, accuracy (%), mean answer tokens, mean tokens spent, tokens spent per greedy token
    (``tokens_x_greedy``, when greedy was evaluated) and latency p50/p95 (ms)."""
    grouped = frame.groupby("method", sort=False)
    table = pd.DataFrame(
        {
            "items": grouped["sample_id"].count(),
            "accuracy": (100 * grouped["correct"].mean()).round(1),
            "answer_tokens": grouped["answer_tokens"].mean().round(1),
            "tokens_spent": grouped["tokens_spent"].mean().round(1),
            "latency_p50_ms": grouped["latency_ms"].quantile(0.5).round(1),
            "latency_p95_ms": grouped["latency_ms"].quantile(0.95).round(1),
        }
    )
    if "greedy" in table.index:
        spent = grouped["tokens_spent"].mean()
        table.insert(4, "tokens_x_greedy", (spent / max(spent["greedy"], 1e-9)).round(2))
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
    """One Markdown sentence: does the MCTS controller beat greedy decoding, by how much, at what token cost;
    a second one on majority vote when the table has it."""
    figures = conclusion_figures(table)
    verdict = "beats" if figures["beats"] else "does not beat"
    text = (
        f"On these {figures['items']} held-out questions the MCTS controller **{verdict}** greedy decoding: "
        f"{figures['gain']:+.1f} points of exact match, at {figures['token_cost']:.1f}× the tokens."
    )
    by_method = table.set_index("method")
    if "majority-vote" in by_method.index:
        gain = float(by_method.loc["majority-vote", "accuracy"] - by_method.loc["greedy", "accuracy"])
        cost = float(by_method.loc["majority-vote", "tokens_spent"] / max(by_method.loc["greedy", "tokens_spent"], 1e-9))
        text += f" Majority vote over the samples: {gain:+.1f} points at {cost:.1f}× the tokens."
    return text
