"""A generic AlphaZero-style Monte-Carlo tree search: PUCT selection, Dirichlet noise at the root,
sign-aware value backup, visit-count policies, and batched leaves with virtual loss.

Value convention, used everywhere: a value lies in [-1, 1] and is seen from the perspective of the
player *to move* in the state it belongs to. Two-player zero-sum games negate a value whenever the
player changes between a node and its parent; single-player environments return a constant
:meth:`Environment.to_play`, so their values are never negated.

Nothing here knows about language models: an environment and an evaluator are all the search needs.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from slmlab.mcts.spec import MCTSConfig

Action = Hashable
Policy = dict[Action, float]


class Environment(Protocol):
    """An immutable state of a game or task."""

    def legal_actions(self) -> Sequence[Action]:
        """The actions allowed here, in a fixed order (the order breaks ties); empty when terminal."""

    def step(self, action: Action) -> Environment:
        """The state after ``action``; a new object, this one is left unchanged."""

    def is_terminal(self) -> bool:
        """Whether the episode is over."""

    def terminal_value(self) -> float:
        """The outcome in [-1, 1] for the player to move in this terminal state (in tic-tac-toe the
        player who just lost is the one to move, so a finished win reads -1)."""

    def to_play(self) -> int:
        """The player to move; a constant for single-player environments."""


class BatchStepper(Protocol):
    """Optional: an environment class whose ``step_batch`` steps several (state, action) pairs at once
    (e.g. one batched forward pass of a language model); it must return what ``state.step(action)``
    would, in order. Environments without it are stepped one pair at a time."""

    @staticmethod
    def step_batch(pairs: Sequence[tuple[Environment, Action]]) -> list[Environment]: ...


class Evaluator(Protocol):
    """Priors over the legal actions and a value estimate, both for the player to move in ``state``."""

    def evaluate(self, state: Environment) -> tuple[Policy, float]: ...


@dataclass(eq=False)
class Node:
    """One state in the search tree. ``state`` and ``to_play`` are filled in when the node is first
    reached, so unvisited children cost only their prior."""

    prior: float
    state: Environment | None = None
    to_play: int | None = None
    visit_count: int = 0
    value_sum: float = 0.0  # from the perspective of this node's ``to_play``
    terminal: bool = False
    virtual_visits: int = 0  # simulations of the current round that passed here and are not backed up yet
    children: dict[Action, Node] = field(default_factory=dict, repr=False)  # a full tree would flood a notebook

    @property
    def expanded(self) -> bool:
        return bool(self.children) or self.terminal

    def value(self) -> float:
        """Mean backed-up value for this node's player to move; 0 before the first visit."""
        return self.value_sum / self.visit_count if self.visit_count else 0.0


class UniformRandomRollout:
    """Uniform priors; the value is the outcome of one uniformly random playout to the end."""

    def __init__(self, seed: int = 0) -> None:
        self._rng = random.Random(seed)

    def evaluate(self, state: Environment) -> tuple[Policy, float]:
        actions = list(state.legal_actions())
        priors = {action: 1.0 / len(actions) for action in actions}
        end = state
        while not end.is_terminal():
            end = end.step(self._rng.choice(list(end.legal_actions())))
        value = end.terminal_value()
        return priors, value if end.to_play() == state.to_play() else -value


def child_q(parent: Node, child: Node) -> float:
    """The child's mean value from the parent's player's perspective. An unvisited child counts as 0,
    a neutral guess between loss and win, so the prior alone decides the order of first visits."""
    if child.visit_count == 0:
        return 0.0
    return child.value() if child.to_play == parent.to_play else -child.value()


def puct_score(parent: Node, child: Node, config: MCTSConfig) -> float:
    """AlphaZero's PUCT: Q + c(N) * prior * sqrt(N_parent) / (1 + N_child), with the exploration
    weight c(N) = log((N_parent + c_base + 1) / c_base) + c_init growing slowly with the parent's visits.

    Pending visits of a batched round (virtual loss) count as visits that lost ``config.virtual_loss``
    for the player choosing the child; without any pending visit this is the plain formula."""
    parent_visits = parent.visit_count + parent.virtual_visits
    visits, pending = child.visit_count + child.virtual_visits, child.virtual_visits
    c = math.log((parent_visits + config.c_base + 1) / config.c_base) + config.c_init
    u = c * child.prior * math.sqrt(parent_visits) / (1 + visits)
    if not pending:
        return child_q(parent, child) + u
    q = (child_q(parent, child) * child.visit_count - config.virtual_loss * pending) / visits
    return q + u


class MCTS:
    """AlphaZero-style search: every simulation walks down by PUCT, evaluates one new leaf (or scores a
    terminal one) and backs the value up the path."""

    def __init__(self, config: MCTSConfig, evaluator: Evaluator | Callable[[Environment], tuple[Policy, float]]):
        self.config = config
        self._evaluate = evaluator.evaluate if hasattr(evaluator, "evaluate") else evaluator
        self._rng = np.random.default_rng(config.seed)

    def run(self, state: Environment, add_noise: bool = False, root: Node | None = None) -> Node:
        """Search from ``state`` with exactly ``num_simulations`` simulations; returns the root, whose
        children's visit counts sum to ``num_simulations``. The root's own evaluation only expands it
        and is not counted as a simulation.

        ``root`` continues an earlier search: pass the child node of the action just played (its
        ``state`` must be ``state``), and its subtree — visits, values and every state already computed
        under it — is kept, so the new simulations add to the old ones (AlphaZero's tree reuse)."""
        if state.is_terminal():
            raise ValueError("cannot search from a terminal state: it has no actions")
        if root is None:
            root = Node(prior=1.0, state=state)
        elif root.state is not state:
            raise ValueError("the reused root must be the node of the state searched from")
        if not root.expanded:
            self._expand(root)
        if add_noise:
            self._add_dirichlet_noise(root)
        done = 0
        while done < self.config.num_simulations:
            leaves = min(self.config.parallel_leaves, self.config.num_simulations - done)
            self._simulate_round(root, leaves)
            done += leaves
        return root

    def _simulate_round(self, root: Node, leaves: int) -> None:
        """``leaves`` simulations: walk down ``leaves`` paths (each marking its nodes as pending, so the
        next walk sees a virtual loss there), step the new states together, evaluate each new leaf once
        and back every path up. With one leaf this is the classic simulation."""
        paths = []
        for _ in range(leaves):
            path = self._descend(root)
            for node in path:
                node.virtual_visits += 1
            paths.append(path)
        self._step_new_states(paths)
        values: dict[int, float] = {}
        for path in paths:  # paths that met at one leaf share its single evaluation
            leaf = path[-1]
            if id(leaf) not in values:
                values[id(leaf)] = leaf.state.terminal_value() if leaf.expanded else self._expand(leaf)
        for path in paths:
            leaf, value = path[-1], values[id(path[-1])]
            for visited in path:  # zero-sum: a value is negated for the other player
                visited.virtual_visits -= 1
                visited.visit_count += 1
                visited.value_sum += value if visited.to_play == leaf.to_play else -value

    def _descend(self, root: Node) -> list[Node]:
        """The PUCT path from the root to a leaf: a node not expanded yet (its state may still be
        unstepped) or a terminal one."""
        node, path = root, [root]
        while node.expanded and not node.terminal:
            _, node = self._select_child(node)
            path.append(node)
            if node.state is None:
                break
        return path

    def _step_new_states(self, paths: list[list[Node]]) -> None:
        """Fill in the state of every path's unstepped leaf (and, with ``expand_siblings``, of its
        unstepped siblings), all in one ``step_batch`` call when the environment offers it."""
        todo: dict[int, tuple[Node, Action, Node]] = {}
        for path in paths:
            if path[-1].state is not None:
                continue
            parent = path[-2]
            for action, child in parent.children.items():
                if child.state is None and (child is path[-1] or self.config.expand_siblings):
                    todo.setdefault(id(child), (parent, action, child))
        if not todo:
            return
        pairs = [(parent.state, action) for parent, action, _ in todo.values()]
        step_batch = getattr(type(pairs[0][0]), "step_batch", None)
        states = step_batch(pairs) if step_batch is not None and len(pairs) > 1 else [s.step(a) for s, a in pairs]
        for (_, _, child), state in zip(todo.values(), states):
            child.state = state

    def _select_child(self, node: Node) -> tuple[Action, Node]:
        # max() keeps the first of equal scores, so ties go to the earliest legal action
        return max(node.children.items(), key=lambda item: puct_score(node, item[1], self.config))

    def _expand(self, node: Node) -> float:
        """Fill in the node's player and children; returns its value for that player."""
        state = node.state
        node.to_play = state.to_play()
        if state.is_terminal():
            node.terminal = True
            return state.terminal_value()
        priors, value = self._evaluate(state)
        actions = list(state.legal_actions())
        if not actions:
            raise ValueError("a non-terminal state must have at least one legal action")
        weights = [max(priors.get(action, 0.0), 0.0) for action in actions]
        total = sum(weights)
        for action, weight in zip(actions, weights):  # renormalised over the legal actions only
            node.children[action] = Node(prior=weight / total if total > 0 else 1.0 / len(actions))
        return value

    def _add_dirichlet_noise(self, root: Node) -> None:
        """Mix Dir(alpha) noise into the root priors so self-play explores moves the evaluator dislikes."""
        noise = self._rng.dirichlet([self.config.dirichlet_alpha] * len(root.children))
        frac = self.config.dirichlet_fraction
        for child, eta in zip(root.children.values(), noise):
            child.prior = (1 - frac) * child.prior + frac * float(eta)


def visit_policy(root: Node, temperature: float = 1.0) -> Policy:
    """Move probabilities from the root's visit counts: proportional to N^(1/T), or for T = 0 one-hot
    on the most visited action (ties go to the earliest legal action)."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if not root.children:
        raise ValueError("the root has no children; run a search first")
    visits = {action: child.visit_count for action, child in root.children.items()}
    most = max(visits.values())
    if temperature == 0 or most == 0:
        best = next(action for action, n in visits.items() if n == most)
        return {action: float(action == best) for action in visits}
    # scaled by the maximum first so that a small temperature cannot overflow
    weights = {action: (n / most) ** (1 / temperature) for action, n in visits.items()}
    total = sum(weights.values())
    return {action: w / total for action, w in weights.items()}


def select_action(root: Node, temperature: float = 0.0, rng: random.Random | np.random.Generator | None = None) -> Action:
    """An action drawn from :func:`visit_policy`; ``rng`` (anything with ``random()``) is needed when
    the temperature is above 0."""
    policy = visit_policy(root, temperature)
    if temperature == 0:
        return max(policy, key=policy.__getitem__)
    if rng is None:
        raise ValueError("select_action needs an rng when temperature > 0")
    threshold, cumulative = float(rng.random()), 0.0
    for action, p in policy.items():
        cumulative += p
        if threshold < cumulative:
            return action
    return next(action for action, p in reversed(policy.items()) if p > 0)  # rounding left a sliver


def search_tree(root: Node, max_depth: int = 2) -> dict[str, Any]:
    """The visited part of the tree as nested dicts (action, visits, value, prior, children), children
    most visited first, for drawing. ``value`` is the mean from the perspective of the player who chose
    the action (at the root: the root's player to move)."""

    def describe(node: Node, action: Action, value: float, depth: int) -> dict[str, Any]:
        visited = [(a, c) for a, c in node.children.items() if c.visit_count] if depth < max_depth else []
        visited.sort(key=lambda item: -item[1].visit_count)  # stable: equal counts keep the legal order
        children = [describe(child, a, child_q(node, child), depth + 1) for a, child in visited]
        return {"action": action, "visits": node.visit_count, "value": value, "prior": node.prior, "children": children}

    return describe(root, None, root.value(), 0)
