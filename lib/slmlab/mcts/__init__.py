"""Chapter 06: a Monte-Carlo tree search controller that steers a frozen model with macro-actions.

:mod:`slmlab.mcts.core` is the generic search (PUCT, Dirichlet noise, visit-count policies, tree reuse), tested
on tic-tac-toe in :mod:`slmlab.mcts.games`; :mod:`slmlab.mcts.macro` holds the macro-actions and their rules;
:mod:`slmlab.mcts.lm_env` the language-model environment (KV-cache forks); :mod:`slmlab.mcts.features`,
:mod:`slmlab.mcts.reward`, :mod:`slmlab.mcts.network`, :mod:`slmlab.mcts.replay` and
:mod:`slmlab.mcts.learning` what the AlphaZero-style learning needs; :mod:`slmlab.mcts.selfplay` plays the
episodes; :mod:`slmlab.mcts.evaluate` compares the controller with greedy and best-of-n;
:mod:`slmlab.mcts.runs` is the chapter's entry point (:func:`~slmlab.mcts.runs.run_chapter`);
:mod:`slmlab.mcts.controller` and :mod:`slmlab.mcts.serve` put the controller behind HTTP.
"""
