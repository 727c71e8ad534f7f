"""Chapter 06: a Monte-Carlo tree search controller that steers a frozen model with macro-actions.

:mod:`slmlab.mcts.core` is the generic search (PUCT, Dirichlet noise, visit-count policies), tested on
tic-tac-toe in :mod:`slmlab.mcts.games`; :mod:`slmlab.mcts.macro` holds the macro-actions and their rules;
:mod:`slmlab.mcts.reward` the bounded reward.
"""
