"""Tic-tac-toe and an exact minimax solver: the ground truth the generic search is tested against."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, cached_property

from slmlab.mcts.core import Action, Environment

X, O, EMPTY = 1, -1, 0
_SYMBOLS = {X: "x", O: "o", EMPTY: "."}
_LINES = ((0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6))


@dataclass(frozen=True)
class TicTacToe:
    """An immutable tic-tac-toe position. Squares 0-8 row by row hold +1 (x), -1 (o) or 0; x moves
    first; the actions are the indices of the empty squares."""

    board: tuple[int, ...] = (EMPTY,) * 9
    player: int = X

    def __post_init__(self) -> None:
        if len(self.board) != 9 or any(square not in _SYMBOLS for square in self.board):
            raise ValueError(f"a board is 9 squares of +1, -1 or 0, got {self.board!r}")
        if self.player not in (X, O):
            raise ValueError(f"player must be +1 (x) or -1 (o), got {self.player!r}")

    @classmethod
    def from_string(cls, text: str) -> TicTacToe:
        """A position from rows such as ``"x.o/.x./..o"`` (rows split by ``/`` or newlines); the player
        to move follows from the counts, since x moves first."""
        cells = [c for c in text.lower() if c not in "/\n\t "]
        if len(cells) != 9 or any(c not in "xo." for c in cells):
            raise ValueError(f"expected 9 squares of 'x', 'o' or '.', got {text!r}")
        board = tuple({"x": X, "o": O, ".": EMPTY}[c] for c in cells)
        lead = board.count(X) - board.count(O)
        if lead not in (0, 1):
            raise ValueError(f"x moves first, so x has as many marks as o or one more: {text!r}")
        return cls(board, X if lead == 0 else O)

    @cached_property
    def winner(self) -> int:
        """+1 or -1 for the player with three in a row, 0 for none."""
        for a, b, c in _LINES:
            if self.board[a] != EMPTY and self.board[a] == self.board[b] == self.board[c]:
                return self.board[a]
        return EMPTY

    def legal_actions(self) -> tuple[int, ...]:
        if self.winner:
            return ()
        return tuple(i for i, square in enumerate(self.board) if square == EMPTY)

    def step(self, action: Action) -> TicTacToe:
        if action not in self.legal_actions():
            raise ValueError(f"illegal move {action!r} in\n{self}")
        board = list(self.board)
        board[action] = self.player
        return TicTacToe(tuple(board), -self.player)

    def is_terminal(self) -> bool:
        return bool(self.winner) or EMPTY not in self.board

    def terminal_value(self) -> float:
        """-1 if the previous player completed a line (the player to move has lost), 0 for a draw."""
        if not self.is_terminal():
            raise ValueError("terminal_value of a game that is not over")
        return float(self.winner * self.player)

    def to_play(self) -> int:
        return self.player

    def __str__(self) -> str:
        rows = ("".join(_SYMBOLS[s] for s in self.board[i : i + 3]) for i in (0, 3, 6))
        return "\n".join(rows)


@cache
def minimax_value(state: Environment) -> int:
    """The exact game value for the player to move: +1 win, 0 draw, -1 loss (memoised; ``state`` must be
    hashable, like :class:`TicTacToe`)."""
    if state.is_terminal():
        return round(state.terminal_value())
    return max(_value_after(state, action) for action in state.legal_actions())


def best_actions(state: Environment) -> set[Action]:
    """Every action that achieves :func:`minimax_value`; empty for a terminal state."""
    if state.is_terminal():
        return set()
    value = minimax_value(state)
    return {action for action in state.legal_actions() if _value_after(state, action) == value}


def _value_after(state: Environment, action: Action) -> int:
    """The value of playing ``action`` for the player who plays it."""
    after = state.step(action)
    value = minimax_value(after)
    return value if after.to_play() == state.to_play() else -value
