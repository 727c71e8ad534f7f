"""The whole of chapter 06 in one call, shared by the notebook and ``slmlab mcts run``: rounds of self-play
and network training, then the held-out comparison with greedy decoding, best-of-n sampling (and, when asked for,
as the notebook and ``slmlab mcts run`` do, self-consistency majority vote).

Entry point: :func:`run_chapter`. Everything lands in one run folder (see :mod:`slmlab.mcts.selfplay`;
:func:`default_run_dir` gives ``results/mcts`` of the mode's full or quick artifacts tree; the names are
:mod:`slmlab.mcts.spec`'s), plus ``eval.csv`` (one row per method and item), ``eval_summary.md`` /
``eval_summary.csv`` and ``summary.json``. A second call with the same settings reuses what is there: finished
self-play episodes and training steps are not repeated, and the evaluation is redone only when ``eval.csv`` is
missing or was made with other evaluation settings, methods, test items, another network or without the same
topic drift (``eval.json`` records them).

Topic drift (:mod:`slmlab.mcts.features`) is on by default: self-play and the evaluation featurize states with the
packaged MiniLM (:func:`~slmlab.mcts.features.default_embedder`); ``topic_drift=False`` (``--no-topic-drift``)
leaves the feature 0, as folders made before it was computed have it. A run folder keeps one choice.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from slmlab.io import atomic_write_json, atomic_write_text
from slmlab.mcts import spec
from slmlab.mcts.evaluate import BASE_METHODS, evaluate_controllers, summarize_evaluation
from slmlab.mcts.features import TOPIC_DRIFT, topic_drift_embedder
from slmlab.mcts.network import load_network
from slmlab.mcts.qa import qa_split
from slmlab.mcts.selfplay import (
    current_network,
    episodes_done,
    network_path,
    recorded_topic_drift,
    self_play,
    train_round,
)
from slmlab.mcts.spec import ChapterSettings
from slmlab.settings import artifacts_root
from slmlab.tasks import TaskItem, load_task


def _made(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_run_dir(quick: bool | None = None) -> Path:
    """The chapter's run folder, :func:`slmlab.mcts.spec.run_dir` of the full or quick artifacts tree (``quick``
    defaults to ``SLMLAB_QUICK``; see :func:`~slmlab.settings.artifacts_root`), so the two sizes never share a
    folder; created on demand."""
    return _made(spec.run_dir(artifacts_root(quick)))


def long_run_dir(quick: bool | None = None) -> Path:
    """The folder of the chapter's long self-play run (:func:`slmlab.mcts.spec.long_run_dir` of the mode's
    artifacts tree), made by ``slmlab mcts run --run results/mcts-long --rounds 10 --episodes-per-round 50 --sims 2
    --budget 16``: 500 episodes, resumable like every run folder; the notebook draws its reward curve when it
    exists."""
    return _made(spec.long_run_dir(artifacts_root(quick)))


def _check_topic_drift(run_dir: Path, topic_drift: bool) -> None:
    """The run's network learned from features with or without topic drift: it goes on, and is evaluated, the same way."""
    recorded = recorded_topic_drift(run_dir)
    if recorded is not None and recorded != topic_drift:
        made, how = (
            ("with", "topic_drift=True (no --no-topic-drift)")
            if recorded
            else ("without", "topic_drift=False (--no-topic-drift)")
        )
        raise ValueError(f"{run_dir}'s self-play was made {made} topic drift: go on with {how}, or use another run folder")


def chapter_items(settings: ChapterSettings, qa_file: str | Path | None = None) -> tuple[list[TaskItem], list[TaskItem]]:
    """Self-play items and held-out test items: generated (:func:`~slmlab.mcts.qa.qa_split`) or, from a
    task file in chapter 05's schema, its first ``n_train`` items and the ``n_test`` after them."""
    if qa_file is None:
        return qa_split(settings.n_train, settings.n_test, seed=settings.seed)
    items = load_task(qa_file)
    if len(items) < settings.n_train + settings.n_test:
        raise ValueError(f"{qa_file} has {len(items)} items; {settings.n_train} + {settings.n_test} are needed")
    return items[: settings.n_train], items[settings.n_train : settings.n_train + settings.n_test]


def _network_digest(run_dir: Path) -> str | None:
    """A hash of the trained weights (not of the file: torch.save stamps every file with a random id)."""
    path = network_path(run_dir)
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    for name, tensor in sorted(load_network(path).state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def evaluate_run(
    model,
    run_dir: str | Path,
    settings: ChapterSettings,
    test_items: Sequence[TaskItem],
    methods: Sequence[str] = BASE_METHODS,
    progress: bool = True,
    topic_drift: bool = TOPIC_DRIFT,
) -> pd.DataFrame:
    """The comparison on ``test_items`` with the run's current network, written to ``eval.csv`` with
    ``eval_summary.md`` / ``.csv``. A finished evaluation with the same settings, methods, items, network and
    ``topic_drift`` (``eval.json`` records them) is read back instead of redone; ``topic_drift`` must be the
    run's self-play's."""
    run_dir = Path(run_dir)
    _check_topic_drift(run_dir, topic_drift)
    eval_path, eval_meta = run_dir / spec.EVAL_FILE, run_dir / spec.EVAL_RECORD_FILE
    wanted = {
        "settings": asdict(settings.evaluation()),
        "methods": list(methods),
        "items": [[i.id, i.question, i.answer] for i in test_items],
        "network_sha256": _network_digest(run_dir),
        "topic_drift": topic_drift,
    }
    if eval_path.is_file() and eval_meta.is_file() and json.loads(eval_meta.read_text(encoding="utf-8")) == wanted:
        frame = pd.read_csv(eval_path, keep_default_na=False, dtype={"gold": str, "pred": str})
        frame["correct"] = frame["correct"].astype(str) == "True"
    else:
        eval_meta.unlink(missing_ok=True)  # never leave a record that describes another eval.csv
        net = current_network(run_dir, model, settings.selfplay())
        embedder = topic_drift_embedder(topic_drift)
        frame = evaluate_controllers(
            model, test_items, settings.evaluation(), methods, net, embedder, progress=progress, out=eval_path
        )
        atomic_write_json(eval_meta, wanted)
    table = summarize_evaluation(frame)
    atomic_write_text(run_dir / spec.EVAL_SUMMARY_FILE, table.to_markdown(index=False) + "\n")
    atomic_write_text(run_dir / spec.EVAL_SUMMARY_CSV_FILE, table.to_csv(index=False))
    return frame


def run_chapter(
    model,
    run_dir: str | Path,
    settings: ChapterSettings = ChapterSettings(),
    qa_file: str | Path | None = None,
    methods=BASE_METHODS,
    progress: bool = True,
    log=None,
    topic_drift: bool = TOPIC_DRIFT,
) -> dict:
    """Self-play rounds, training, evaluation; returns (and writes as ``summary.json``) the headline figures.
    ``topic_drift`` featurizes states with the packaged MiniLM (see the module docstring)."""
    run_dir = Path(run_dir)
    _check_topic_drift(run_dir, topic_drift)
    train_items, test_items = chapter_items(settings, qa_file)
    config, embedder = settings.selfplay(), topic_drift_embedder(topic_drift)
    for round_index in range(settings.rounds):
        wanted = (round_index + 1) * settings.episodes_per_round
        missing = wanted - len(episodes_done(run_dir))
        if missing > 0:
            self_play(model, train_items, run_dir, missing, config, embedder, progress=progress, log=log)
        train_round(run_dir, model, config, settings.training(round_index), progress=progress)
    table = summarize_evaluation(evaluate_run(model, run_dir, settings, test_items, methods, progress, topic_drift))
    episodes = episodes_done(run_dir)
    summary = {
        "settings": asdict(settings),
        "episodes": len(episodes),
        "mean_reward_by_round": [
            round(
                float(
                    pd.Series(
                        [e["reward"] for e in episodes[i * settings.episodes_per_round : (i + 1) * settings.episodes_per_round]]
                    ).mean()
                ),
                4,
            )
            for i in range(settings.rounds)
        ],
        "evaluation": json.loads(table.to_json(orient="records")),
    }
    atomic_write_json(run_dir / spec.SUMMARY_FILE, summary)
    return summary
