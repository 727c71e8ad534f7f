"""The generic MCTS core (PUCT, Dirichlet noise, backup signs, visit policies) checked against exact
tic-tac-toe minimax, plus the tic-tac-toe rules and a single-player chain."""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass

import pytest

from slmlab.mcts.core import (
    MCTS,
    MCTSConfig,
    Node,
    UniformRandomRollout,
    child_q,
    puct_score,
    search_tree,
    select_action,
    visit_policy,
)
from slmlab.mcts.games import TicTacToe, best_actions, minimax_value


def search(state, num_simulations: int, seed: int = 0, add_noise: bool = False) -> Node:
    config = MCTSConfig(num_simulations=num_simulations, seed=seed)
    return MCTS(config, UniformRandomRollout(seed)).run(state, add_noise=add_noise)


def most_visited(root: Node):
    return select_action(root, temperature=0)


def root_with_visits(*visits: int) -> Node:
    root = Node(prior=1.0, to_play=1, visit_count=sum(visits))
    for action, n in enumerate(visits):
        root.children[action] = Node(prior=1 / len(visits), to_play=-1, visit_count=n)
    return root


def random_positions(count: int, seed: int) -> list[TicTacToe]:
    """Non-terminal positions reached by random play from the empty board."""
    rng, positions = random.Random(seed), []
    while len(positions) < count:
        state = TicTacToe()
        for _ in range(rng.randrange(8)):
            if state.is_terminal():
                break
            state = state.step(rng.choice(state.legal_actions()))
        if not state.is_terminal():
            positions.append(state)
    return positions


@dataclass(frozen=True)
class Chain:
    """Single-player: three binary choices; only 1, 1, 1 earns reward 1, every other ending 0."""

    path: tuple[int, ...] = ()

    def legal_actions(self) -> tuple[int, ...]:
        return () if self.is_terminal() else (0, 1)

    def step(self, action: int) -> Chain:
        if action not in self.legal_actions():
            raise ValueError(f"illegal action {action}")
        return Chain(self.path + (action,))

    def is_terminal(self) -> bool:
        return len(self.path) == 3

    def terminal_value(self) -> float:
        return 1.0 if self.path == (1, 1, 1) else 0.0

    def to_play(self) -> int:
        return 0


# --- tic-tac-toe and the solver ---------------------------------------------------------------------


def test_from_string_round_trips_and_infers_the_player_to_move():
    state = TicTacToe.from_string("x.o/.x./..o")
    assert state.board == (1, 0, -1, 0, 1, 0, 0, 0, -1) and state.to_play() == 1
    assert TicTacToe.from_string(str(state)) == state
    assert TicTacToe.from_string("x../.../...").to_play() == -1


@pytest.mark.parametrize("text", ["xx./.../...", "o../.../...", "x.o/...", "x.q/.../..."])
def test_from_string_rejects_impossible_boards(text):
    with pytest.raises(ValueError):
        TicTacToe.from_string(text)


@pytest.mark.parametrize("action", [0, 9, -1, "a"])
def test_illegal_moves_raise(action):
    with pytest.raises(ValueError, match="illegal move"):
        TicTacToe.from_string("x../.../...").step(action)


def test_no_move_is_legal_after_a_win():
    won = TicTacToe.from_string("xxx/oo./...")
    assert won.is_terminal() and won.legal_actions() == ()
    with pytest.raises(ValueError, match="illegal move"):
        won.step(5)


def test_step_returns_a_new_state_and_leaves_the_old_one_unchanged():
    state = TicTacToe.from_string("x../.o./...")
    after = state.step(8)
    assert state == TicTacToe.from_string("x../.o./...") and state.legal_actions() == (1, 2, 3, 5, 6, 7, 8)
    assert after.board[8] == 1 and after.to_play() == -1


def test_terminal_value_is_seen_by_the_player_to_move():
    assert TicTacToe.from_string("xxx/oo./...").terminal_value() == -1.0  # o to move, x has won
    assert TicTacToe.from_string("xox/xoo/oxx").terminal_value() == 0.0
    with pytest.raises(ValueError):
        TicTacToe().terminal_value()


def test_minimax_knows_tic_tac_toe():
    assert minimax_value(TicTacToe()) == 0
    assert best_actions(TicTacToe()) == set(range(9))  # every opening move holds the draw
    assert best_actions(TicTacToe.from_string("x../.../...")) == {4}  # against a corner only the centre draws
    assert minimax_value(TicTacToe.from_string("xx./oo./...")) == 1
    assert minimax_value(TicTacToe.from_string(".o./.x./..x")) == -1


# --- the search on tic-tac-toe ----------------------------------------------------------------------


@pytest.mark.parametrize("add_noise", [False, True])
@pytest.mark.parametrize("num_simulations", [1, 2, 10, 57])
def test_root_children_visits_sum_to_num_simulations(num_simulations, add_noise):
    root = search(TicTacToe.from_string("x../.o./..."), num_simulations, add_noise=add_noise)
    assert sum(child.visit_count for child in root.children.values()) == num_simulations
    assert root.visit_count == num_simulations


def test_one_simulation_per_visit_even_when_only_terminal_children_remain():
    root = search(TicTacToe.from_string("xox/xoo/ox."), 25)  # one square left: the child ends the game
    assert root.children[8].visit_count == 25 and root.children[8].terminal


# (position, minimax value for the player to move, simulations)
SOLVED = {
    "one-move win": ("xx./oo./...", 1, 400),
    "fork (win in two)": ("x../oox/...", 1, 800),
    "block that forks": ("..o/.xo/x..", 1, 800),
    "forced draw (only block)": ("xox/.o./...", 0, 800),
    "forced loss": (".o./.x./..x", -1, 800),
    "forced loss, late": ("oox/x../.x.", -1, 400),
}


@pytest.mark.parametrize("text, value, num_simulations", SOLVED.values(), ids=SOLVED.keys())
def test_search_solves_positions_with_a_known_outcome(text, value, num_simulations):
    state = TicTacToe.from_string(text)
    assert minimax_value(state) == value
    root = search(state, num_simulations)
    assert most_visited(root) in best_actions(state)
    if value == 0:
        assert abs(root.value()) < 0.2
    else:
        assert root.value() * value > 0.5  # the sign matches minimax, clearly


def test_fork_position_has_no_immediate_win():
    # so the fork case above needs the search to look two own moves ahead
    state = TicTacToe.from_string("x../oox/...")
    assert not any(state.step(action).winner for action in state.legal_actions())
    assert best_actions(state) == {2}


def test_search_finds_the_only_drawing_reply_to_a_corner_opening():
    # far from the end random rollouts make the draw look slightly lost, so only the move is checked
    state = TicTacToe.from_string("x../.../...")
    assert most_visited(search(state, 2000)) == 4


def test_search_agrees_with_minimax_on_random_positions():
    disagreements = []
    for state in random_positions(20, seed=0):
        action = most_visited(search(state, 2000))
        if action not in best_actions(state):
            disagreements.append((str(state), action, best_actions(state)))
    assert not disagreements


def test_run_refuses_a_terminal_state():
    with pytest.raises(ValueError, match="terminal"):
        search(TicTacToe.from_string("xxx/oo./..."), 10)


# --- evaluators ----------------------------------------------------------------------------------------


def test_random_rollout_gives_uniform_priors_and_values_for_the_player_to_move():
    evaluator = UniformRandomRollout(seed=3)
    priors, value = evaluator.evaluate(TicTacToe.from_string("xx./oox/oxo"))  # x completes the top row
    assert priors == {2: 1.0} and value == 1.0
    priors, value = evaluator.evaluate(TicTacToe.from_string(".x./oxo/xox"))  # o moves, then x wins
    assert priors == {0: 0.5, 2: 0.5} and value == -1.0


def test_a_plain_function_is_an_evaluator_and_its_priors_are_renormalised_over_legal_moves():
    def evaluate(state):
        return {0: 5.0, 4: 3.0, 8: 1.0, 99: 100.0}, 0.0  # 0 is taken, 99 does not exist

    root = MCTS(MCTSConfig(num_simulations=1), evaluate).run(TicTacToe.from_string("x../.../..."))
    priors = {action: child.prior for action, child in root.children.items()}
    assert priors[4] == pytest.approx(0.75) and priors[8] == pytest.approx(0.25)
    assert sum(priors.values()) == pytest.approx(1.0) and 0 not in priors


# --- PUCT, noise, policies, config ------------------------------------------------------------------


def test_puct_score_matches_a_hand_computed_value():
    config = MCTSConfig(c_init=1.0, c_base=10)
    parent = Node(prior=1.0, to_play=1, visit_count=9)
    child = Node(prior=0.5, to_play=-1, visit_count=2, value_sum=-1.0)  # -0.5 for the opponent
    # c = log((9 + 10 + 1) / 10) + 1 = 1 + log 2;  U = c * 0.5 * sqrt(9) / (1 + 2);  Q = +0.5
    assert puct_score(parent, child, config) == pytest.approx(0.5 + (1 + math.log(2)) * 0.5, abs=1e-12)
    assert puct_score(parent, child, config) == pytest.approx(1.3465735902799727, abs=1e-12)


def test_q_is_zero_for_unvisited_children_and_negated_only_across_players():
    parent = Node(prior=1.0, to_play=1, visit_count=4)
    assert child_q(parent, Node(prior=0.3)) == 0.0
    assert child_q(parent, Node(prior=0.3, to_play=-1, visit_count=2, value_sum=1.0)) == -0.5
    assert child_q(parent, Node(prior=0.3, to_play=1, visit_count=2, value_sum=1.0)) == 0.5


def test_puct_exploration_grows_with_the_parent_visits():
    config = MCTSConfig()
    child = Node(prior=0.2)
    few, many = (puct_score(Node(prior=1.0, visit_count=n), child, config) for n in (4, 100_000))
    assert few == pytest.approx(1.25 * 0.2 * 2, rel=1e-3)  # c ≈ c_init while N_parent << c_base
    assert many > 1.25 * 0.2 * math.sqrt(100_000) * 1.1


def root_priors(root: Node) -> list[float]:
    return [child.prior for child in root.children.values()]


def test_dirichlet_noise_changes_root_priors_keeps_them_normalised_and_is_reproducible():
    state = TicTacToe.from_string("x../.o./...")
    plain = root_priors(search(state, 8))
    noisy = root_priors(search(state, 8, add_noise=True))
    assert plain == pytest.approx([1 / 7] * 7)
    assert noisy != pytest.approx(plain)
    assert sum(noisy) == pytest.approx(1.0)
    assert min(noisy) >= 0.75 / 7 - 1e-12  # at most the noise fraction moves
    assert root_priors(search(state, 8, add_noise=True)) == noisy
    assert root_priors(search(state, 8, seed=1, add_noise=True)) != pytest.approx(noisy)


def test_noise_reaches_only_the_root():
    root = search(TicTacToe(), 200, add_noise=True)
    grandchild_priors = [c.prior for child in root.children.values() for c in child.children.values()]
    assert grandchild_priors and set(grandchild_priors) == {1 / 8}


def test_visit_policy_temperatures():
    root = root_with_visits(1, 3, 6, 0)
    assert visit_policy(root, 1.0) == pytest.approx({0: 0.1, 1: 0.3, 2: 0.6, 3: 0.0})
    assert visit_policy(root, 0.5) == pytest.approx({0: 1 / 46, 1: 9 / 46, 2: 36 / 46, 3: 0.0})
    assert visit_policy(root, 0) == {0: 0.0, 1: 0.0, 2: 1.0, 3: 0.0}
    assert visit_policy(root, 0.01)[2] == pytest.approx(1.0)  # a small temperature does not overflow
    with pytest.raises(ValueError):
        visit_policy(root, -1.0)


def test_ties_go_to_the_earliest_legal_action():
    assert visit_policy(root_with_visits(2, 5, 5), 0) == {0: 0.0, 1: 1.0, 2: 0.0}
    assert select_action(root_with_visits(2, 5, 5), 0) == 1


def test_select_action_samples_in_proportion_to_visits():
    root, rng = root_with_visits(1, 3, 6, 0), random.Random(0)
    counts = Counter(select_action(root, 1.0, rng) for _ in range(4000))
    assert counts[3] == 0
    assert [counts[a] / 4000 for a in (0, 1, 2)] == pytest.approx([0.1, 0.3, 0.6], abs=0.03)
    with pytest.raises(ValueError, match="rng"):
        select_action(root, 1.0)


@pytest.mark.parametrize(
    "field, value",
    [
        ("num_simulations", 0),
        ("num_simulations", 2.5),
        ("c_init", -0.1),
        ("c_base", 0),
        ("dirichlet_alpha", 0.0),
        ("dirichlet_fraction", 1.5),
        ("dirichlet_fraction", -0.1),
    ],
)
def test_config_rejects_out_of_range_values_by_name(field, value):
    with pytest.raises(ValueError, match=field):
        MCTSConfig(**{field: value})


def test_search_tree_describes_the_visited_tree_to_a_depth():
    root = search(TicTacToe.from_string("xx./oo./..."), 100)
    tree = search_tree(root, max_depth=1)
    assert tree["action"] is None and tree["visits"] == 100 and tree["value"] == root.value()
    first = tree["children"][0]
    assert first["action"] == 2 and first["value"] == 1.0  # the winning move, valued by the one who plays it
    assert [c["visits"] for c in tree["children"]] == sorted((c["visits"] for c in tree["children"]), reverse=True)
    assert sum(c["visits"] for c in tree["children"]) == 100
    assert all(c["children"] == [] for c in tree["children"])
    assert set(first) == {"action", "visits", "value", "prior", "children"}
    assert search_tree(root, max_depth=0)["children"] == []


# --- single player ---------------------------------------------------------------------------------


def test_single_player_values_are_never_negated():
    root = MCTS(MCTSConfig(num_simulations=200), UniformRandomRollout(0)).run(Chain())
    assert most_visited(root) == 1
    node = root
    for _ in range(3):  # every node on the rewarding path sees a positive value, whatever its depth
        assert node.value() > 0.5
        node = node.children[1]
    assert node.terminal and node.value() == 1.0
    assert all(child["value"] >= 0 for child in search_tree(root, 3)["children"])


def test_tree_reuse_keeps_the_subtree_and_adds_simulations():
    mcts = MCTS(MCTSConfig(num_simulations=60, seed=0), UniformRandomRollout(0))
    root = mcts.run(TicTacToe())
    action = most_visited(root)
    child = root.children[action]
    before = child.visit_count
    assert before > 0 and child.state is not None
    again = mcts.run(child.state, root=child)
    assert again is child
    assert sum(c.visit_count for c in again.children.values()) == before - 1 + 60  # its first visit expanded it
    with pytest.raises(ValueError, match="reused root"):
        mcts.run(TicTacToe(), root=child)


# --- batched leaves (virtual loss) and batched stepping -------------------------------------------------


def batched(state, num_simulations: int, leaves: int, siblings: bool = False, seed: int = 0) -> Node:
    config = MCTSConfig(num_simulations=num_simulations, seed=seed, parallel_leaves=leaves, expand_siblings=siblings)
    return MCTS(config, UniformRandomRollout(seed)).run(state)


def all_nodes(root: Node) -> list[Node]:
    nodes, stack = [], [root]
    while stack:
        node = stack.pop()
        nodes.append(node)
        stack.extend(node.children.values())
    return nodes


@pytest.mark.parametrize("leaves", [2, 3, 8])
def test_batched_rounds_run_exactly_num_simulations_and_leave_no_pending_visit(leaves):
    root = batched(TicTacToe.from_string("x../.o./..."), 57, leaves)
    assert root.visit_count == 57 == sum(child.visit_count for child in root.children.values())
    assert all(node.virtual_visits == 0 for node in all_nodes(root))


def test_one_leaf_with_siblings_stepped_early_gives_the_plain_search_tree():
    state = TicTacToe.from_string("x../.o./...")
    plain, eager = search(state, 200), batched(state, 200, leaves=1, siblings=True)
    assert search_tree(plain, max_depth=4) == search_tree(eager, max_depth=4)
    stepped = [c for c in eager.children.values() if c.state is not None]
    assert len(stepped) == len(eager.children)  # every root child got its state in the root's first batch


@pytest.mark.parametrize("text, value, num_simulations", SOLVED.values(), ids=SOLVED.keys())
def test_batched_search_still_solves_positions_with_a_known_outcome(text, value, num_simulations):
    state = TicTacToe.from_string(text)
    root = batched(state, num_simulations, leaves=4)
    assert most_visited(root) in best_actions(state)
    assert root.value() * value > 0.5 if value else abs(root.value()) < 0.2


def test_virtual_loss_sends_the_next_leaf_of_a_round_elsewhere():
    root = root_with_visits(0, 0)
    root.children[0].virtual_visits = 1
    root.virtual_visits = 1
    config = MCTSConfig()
    assert puct_score(root, root.children[0], config) < puct_score(root, root.children[1], config)
    assert MCTS(config, UniformRandomRollout(0))._select_child(root)[0] == 1


@dataclass(frozen=True)
class CountedChain(Chain):
    """The chain, with every ``step_batch`` call recorded (class-wide) so a test can see the batching."""

    def step(self, action: int) -> CountedChain:
        return CountedChain(super().step(action).path)

    @staticmethod
    def step_batch(pairs):
        BATCHES.append(len(pairs))
        return [state.step(action) for state, action in pairs]


BATCHES: list[int] = []


def test_environments_with_step_batch_are_stepped_in_one_call_per_round():
    BATCHES.clear()
    root = MCTS(MCTSConfig(num_simulations=12, parallel_leaves=4, expand_siblings=True), UniformRandomRollout(0)).run(
        CountedChain()
    )
    assert root.visit_count == 12 and BATCHES and max(BATCHES) > 1
    assert sum(BATCHES) <= 14  # each of the chain's 14 non-root states is stepped at most once
    assert most_visited(root) == 1
