"""Self-play of chapter 06: MCTS picks macro-actions for the frozen model, every searched position goes into
the replay buffer with its visit-count policy and the episode's reward, and the network learns from them.

Entry points: :func:`search_episode` (one episode, used by self-play, the evaluation and the server's
MCTS controller) and :func:`self_play` (many episodes into a run folder). A run folder holds:

- ``config.json`` — the :class:`~slmlab.mcts.spec.SelfPlayConfig` the folder was made with and ``topic_drift``,
  whether its features carry topic drift (a later call must match both: the network learns from those features);
- ``replay/`` — the :class:`~slmlab.mcts.replay.ReplayBuffer` (features, legality mask, policy, value);
- ``episodes.jsonl`` — one line per finished episode: item, reward, correctness, actions, visible text,
  tokens, compute and seconds (thought text never: the trace shows a placeholder);
- ``network/`` — what :func:`slmlab.mcts.learning.train_network` writes (``network.pt``, checkpoints,
  ``metrics.jsonl``, TensorBoard events).

Episode ``i`` of a folder plays QA item ``i mod len(items)`` with seed ``seed + i``, so calling
:func:`self_play` again adds the next episodes exactly as one longer call would have.
"""

from __future__ import annotations

import json
import random
import time
import weakref
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from slmlab.io import atomic_write_json
from slmlab.mcts.consistency import AnswerPool
from slmlab.mcts.core import MCTS, Environment, Policy, search_tree, select_action, visit_policy
from slmlab.mcts.features import TOPIC_DRIFT, Embedder, RunningStats, feature_dim, state_features, topic_drift_embedder
from slmlab.mcts.learning import TrainReport, train_network
from slmlab.mcts.lm_env import LMEnvironment, RewardFn
from slmlab.mcts.macro import MACROS, Macro
from slmlab.mcts.network import NetworkEvaluator, PolicyValueNet, load_network
from slmlab.mcts.qa import qa_correct
from slmlab.mcts.replay import ReplayBuffer
from slmlab.mcts.reward import reply_mean_logprob
from slmlab.mcts.spec import (
    CONFIG_FILE,
    EPISODES_FILE,
    NETWORK_DIR,
    NETWORK_FILE,
    REPLAY_DIR,
    ConsistencySettings,
    EnvConfig,
    SearchSettings,
    SelfPlayConfig,
    TrainSettings,
)
from slmlab.runlog import METRICS_FILE
from slmlab.tasks import TaskItem


class Featurizer:
    """``state → (features, legality mask)`` for :class:`~slmlab.mcts.network.NetworkEvaluator`.

    Each state is featurized once (remembered while the state lives), so the running entropy statistics
    count every state once however often the search asks. Call :meth:`reset` at the start of an episode.
    """

    def __init__(self, embedder: Embedder | None = None) -> None:
        self.embedder = embedder
        self.reset()

    @classmethod
    def for_run(cls, run_dir: str | Path) -> Featurizer:
        """The features a run folder's network learned from: topic drift from the packaged MiniLM when the folder's
        self-play computed it (before its first self-play: as the chapter's runs do by default)."""
        recorded = recorded_topic_drift(run_dir)
        return cls(topic_drift_embedder(TOPIC_DRIFT if recorded is None else recorded))

    def reset(self) -> None:
        self.stats = RunningStats()
        self._seen: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def __call__(self, state: LMEnvironment) -> tuple[np.ndarray, tuple[bool, ...]]:
        if state not in self._seen:
            legal = set(state.legal_actions())
            self._seen[state] = (state_features(state, self.stats, self.embedder), tuple(a in legal for a in MACROS))
        return self._seen[state]


class UniformEvaluator:
    """Before any network exists: equal priors over the legal actions and a neutral value of 0, so only
    finished episodes' rewards steer the search."""

    def evaluate(self, state: Environment) -> tuple[Policy, float]:
        actions = list(state.legal_actions())
        return {action: 1.0 / len(actions) for action in actions}, 0.0


@dataclass
class Episode:
    """One finished episode. ``steps`` (features, mask, policy target per move) and ``tree`` (the first
    search as nested dicts, see :func:`~slmlab.mcts.core.search_tree`) are not written to ``episodes.jsonl``."""

    item_id: str
    question: str
    gold: str | None
    visible_text: str
    reward: float
    correct: bool | None
    actions: list[str]
    tokens: int
    thought_tokens: int
    fed_tokens: int
    search_steps: int
    seconds: float
    trace: list[dict]
    final: LMEnvironment | None = field(default=None, repr=False)
    steps: list[tuple[np.ndarray, tuple[bool, ...], Policy]] = field(default_factory=list, repr=False)
    tree: dict | None = field(default=None, repr=False)

    def record(self) -> dict[str, Any]:
        """The JSON-safe part, as written to ``episodes.jsonl``."""
        skip = {"final", "steps", "tree"}
        return {k: v for k, v in asdict(replace(self, final=None, steps=[], tree=None)).items() if k not in skip}


def consistency_reward(pool: AnswerPool) -> RewardFn:
    """The test-time reward of a finished branch: it joins ``pool`` (its vote weighted by the model's likelihood
    of the visible reply) and scores its answer's share of the pool's votes, in [0, 1]. No gold is used."""

    def reward(env: LMEnvironment) -> float:
        visible = [t for span in env.macro.spans if not span.thought for t in span.token_ids]
        weight = reply_mean_logprob(env.model, env.prompt, visible) if pool.settings.sharpness else None
        pool.add(env.visible_text, weight, state=env)
        return pool.value(env.visible_text)

    return reward


def rollout(state: LMEnvironment) -> LMEnvironment:
    """The finished branch a leaf leads to when the model just goes on: close an open thought after its first span,
    stop as soon as that is legal, else CONTINUE (greedy). Its steps count in the episode's compute."""
    while not state.is_terminal():
        legal = state.legal_actions()
        state = state.step(next((a for a in (Macro.THINK_END, Macro.STOP) if a in legal), Macro.CONTINUE))
    return state


class ConsistencyEvaluator:
    """The test-time evaluator: priors from ``inner`` (the network, or uniform); the value of an unfinished leaf
    is that of its :func:`rollout`, a finished branch that joins the search's answer pool and is valued by its
    agreement with the pool (:func:`consistency_reward`). ``inner``'s own value is not used."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def evaluate(self, state: LMEnvironment) -> tuple[Policy, float]:
        priors, _ = self.inner.evaluate(state)
        return priors, rollout(state).terminal_value()


def search_episode(
    model,
    item: TaskItem,
    evaluator,
    env_config: EnvConfig = EnvConfig(),
    search: SearchSettings = SearchSettings(),
    featurizer: Featurizer | None = None,
    use_gold: bool = True,
    reward_fn: RewardFn | None = None,
    explore: bool = False,
    keep_tree: bool = False,
    tree_depth: int = 3,
    consistency: ConsistencySettings | None = None,
) -> Episode:
    """Play one episode on ``item``: at each move search ``search.simulations`` simulations from the current
    state, record the position, play an action (see :class:`~slmlab.mcts.spec.SearchSettings`), until STOP.

    With ``use_gold`` the reward of finished episodes scores the answer against ``item.answer`` (self-play);
    without it the search never sees the gold answer (evaluation, serving): the default reward then falls
    back to the model's own fluency and brevity, or, with ``consistency``, every finished branch is valued by
    its agreement with the others (:func:`consistency_reward`), an unfinished leaf by that of its greedy
    :func:`rollout` (:class:`ConsistencyEvaluator`) — the search stops as soon as they agree
    (:meth:`~slmlab.mcts.consistency.AnswerPool.settled`) and the episode ends on the branch that carries the
    majority answer. ``correct`` is always measured against the gold answer when the item has one.
    """
    start = time.perf_counter()
    if featurizer is not None:
        featurizer.reset()
    pool = AnswerPool(consistency) if consistency is not None and not use_gold else None
    if pool is not None:
        reward_fn = consistency_reward(pool)
    root_state = LMEnvironment(
        model, item.question, replace(env_config, seed=search.seed), gold=item.answer if use_gold else None, reward_fn=reward_fn
    )
    config = search.mcts()
    if pool is not None:  # searched a round of leaves at a time, so that agreement can stop it between rounds
        config = replace(config, num_simulations=min(search.parallel_leaves, search.simulations))
    mcts = MCTS(config, ConsistencyEvaluator(evaluator) if pool is not None else evaluator)
    rounds = -(-search.simulations // config.num_simulations)
    rng = random.Random(search.seed)
    state, node, steps, tree = root_state, None, [], None
    while not state.is_terminal():
        root = _search_rounds(mcts, state, node if search.tree_reuse else None, rounds, explore, pool)
        features, mask = featurizer(state) if featurizer is not None else (None, None)
        steps.append((features, mask, visit_policy(root, 1.0)))
        if keep_tree and tree is None:
            tree = search_tree(root, max_depth=tree_depth)
        if pool is not None and pool.settled():
            break
        temperature = search.temperature if explore and len(steps) <= search.temperature_moves else 0.0
        action = select_action(root, temperature, rng)
        node = root.children[action]
        if node.state is None:
            node.state = state.step(action)
        state = node.state
    reward = state.reward() if state.is_terminal() else None
    if pool is not None:
        state = _majority_end(pool, state)
        reward = pool.value(state.visible_text)
    spans = state.macro.spans
    return Episode(
        item_id=item.id,
        question=item.question,
        gold=item.answer or None,
        visible_text=state.visible_text,
        reward=reward,
        correct=qa_correct(state.visible_text, item.answer) if item.answer else None,
        actions=[step["action"] for step in state.macro_trace()],
        tokens=state.macro.tokens_used,
        thought_tokens=sum(len(s) for s in spans if s.thought),
        fed_tokens=root_state.spent["fed"],
        search_steps=root_state.spent["steps"],
        seconds=round(time.perf_counter() - start, 3),
        trace=state.macro_trace(),
        final=state,
        steps=steps,
        tree=tree,
    )


def _search_rounds(mcts: MCTS, state: LMEnvironment, root, rounds: int, explore: bool, pool: AnswerPool | None):
    """One move's search: ``rounds`` runs of the tree from ``state`` (noise on the first only when exploring),
    stopping early once the answer pool agrees."""
    for round_index in range(rounds):
        root = mcts.run(state, add_noise=explore and round_index == 0, root=root)
        if pool is not None and pool.settled():
            break
    return root


def _majority_end(pool: AnswerPool, state: LMEnvironment) -> LMEnvironment:
    """The state an agreement-valued episode ends on: the branch carrying the majority answer."""
    best = pool.best()  # the played path's end joined the pool when it was scored
    if best is not None:
        return pool.states[best]
    if not state.is_terminal():  # every finished reply was blank: finish the played path
        return rollout(state)
    return state


# --- a self-play run folder -------------------------------------------------------------------------------
# settings added after run folders were first written, with the value those folders were played with
_EARLIER_DEFAULTS = {"parallel_leaves": 1, "topic_drift": False}


@dataclass
class SelfPlayReport:
    """What one :func:`self_play` call added."""

    episodes: list[Episode]
    first_episode: int
    positions: int
    buffer_size: int
    seconds: float

    @property
    def mean_reward(self) -> float:
        return float(np.mean([e.reward for e in self.episodes])) if self.episodes else float("nan")


def _saved_config(run_dir: Path) -> dict | None:
    path = run_dir / CONFIG_FILE
    return {**_EARLIER_DEFAULTS, **json.loads(path.read_text(encoding="utf-8"))} if path.is_file() else None


def _check_config(run_dir: Path, config: SelfPlayConfig, embedder: Embedder | None) -> None:
    wanted = {**asdict(config), "topic_drift": embedder is not None}
    saved = _saved_config(run_dir)
    if saved is None:
        atomic_write_json(run_dir / CONFIG_FILE, wanted)
    elif saved != wanted:
        changed = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
        raise ValueError(
            f"{run_dir / CONFIG_FILE} was made with other settings ({', '.join(changed)} differ); "
            "use another run folder or delete this one"
        )


def recorded_topic_drift(run_dir: str | Path) -> bool | None:
    """Whether the positions of a self-play folder carry topic drift (False for folders written before it was
    recorded: their features hold 0 there), or None before the folder's first self-play."""
    saved = _saved_config(Path(run_dir))
    return None if saved is None else bool(saved["topic_drift"])


def network_path(run_dir: str | Path) -> Path:
    """The run's trained policy-value network (``network/network.pt``)."""
    return Path(run_dir) / NETWORK_DIR / NETWORK_FILE


def network_metrics_path(run_dir: str | Path) -> Path:
    """The network's training log, one JSON line per step (``network/metrics.jsonl``)."""
    return Path(run_dir) / NETWORK_DIR / METRICS_FILE


def current_network(run_dir: str | Path, model, config: SelfPlayConfig) -> PolicyValueNet:
    """The run's trained network, or (before any training) a fresh one initialised from the seed."""
    path = network_path(run_dir)
    if path.is_file():
        return load_network(path)
    torch.manual_seed(config.seed)
    return PolicyValueNet(feature_dim(model), hidden=config.hidden)


def episodes_done(run_dir: str | Path) -> list[dict]:
    """The records of ``episodes.jsonl`` (an unfinished last line, from a crash, is ignored)."""
    path = Path(run_dir) / EPISODES_FILE
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return records


def _drop_partial_line(path: Path) -> int:
    """Cut an unfinished last line (a crash mid-write) so appends start clean; returns the episodes done."""
    records = episodes_done(path.parent)
    if path.is_file() and len(path.read_text(encoding="utf-8").splitlines()) != len(records):
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return len(records)


def self_play(
    model,
    items: Sequence[TaskItem],
    run_dir: str | Path,
    episodes: int,
    config: SelfPlayConfig = SelfPlayConfig(),
    embedder: Embedder | None = None,
    progress: bool = True,
    log=None,
) -> SelfPlayReport:
    """Play ``episodes`` more self-play episodes into ``run_dir`` with the run's current network.

    ``embedder`` (e.g. :func:`~slmlab.mcts.features.default_embedder`, as the chapter's runs pass it) gives the
    topic-drift feature; without it the feature is 0. A folder keeps the choice it was started with.
    ``log`` (e.g. ``print``) receives one line per episode with its reward and actions.
    """
    if episodes < 0 or not items:
        raise ValueError("self_play needs episodes >= 0 and at least one QA item")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    _check_config(run_dir, config, embedder)
    net = current_network(run_dir, model, config)
    featurizer = Featurizer(embedder)
    evaluator = NetworkEvaluator(net, featurizer)
    buffer = ReplayBuffer(run_dir / REPLAY_DIR, config.replay_capacity, net.config.feature_dim)
    first = _drop_partial_line(run_dir / EPISODES_FILE)
    start, played, positions = time.perf_counter(), [], 0
    bar = tqdm(range(first, first + episodes), desc="self-play", unit="episode", disable=not progress)
    with (run_dir / EPISODES_FILE).open("a", encoding="utf-8") as out:
        for index in bar:
            item = items[index % len(items)]
            episode = search_episode(
                model, item, evaluator, config.env_config(), config.search(index), featurizer, use_gold=True, explore=True
            )
            value = 2.0 * episode.reward - 1.0  # the search's value range
            positions += buffer.add_episode(((f, m, p) for f, m, p in episode.steps), value)
            out.write(json.dumps({"episode": index, **episode.record()}) + "\n")
            out.flush()
            played.append(episode)
            bar.set_postfix(reward=f"{episode.reward:.3f}")
            if log is not None:
                log(
                    f"episode {index} {item.id} reward={episode.reward:.3f} correct={episode.correct} "
                    f"actions={','.join(episode.actions)} tokens={episode.tokens}"
                )
    return SelfPlayReport(played, first, positions, len(buffer), round(time.perf_counter() - start, 2))


def train_round(
    run_dir: str | Path, model, config: SelfPlayConfig, settings: TrainSettings, progress: bool = True
) -> TrainReport:
    """Train the run's network on its replay buffer up to ``settings.steps`` (resuming where it stopped)."""
    run_dir = Path(run_dir)
    net = current_network(run_dir, model, config)
    buffer = ReplayBuffer.open(run_dir / REPLAY_DIR)
    return train_network(net, buffer, settings, out_dir=run_dir / NETWORK_DIR, progress=progress)
