"""Chapter 06: a Monte-Carlo tree search controller that steers a frozen model with macro-actions.

:mod:`slmlab.mcts.core` is the generic search (PUCT, Dirichlet noise, visit-count policies, tree reuse), tested
on tic-tac-toe in :mod:`slmlab.mcts.games`; :mod:`slmlab.mcts.macro` holds the macro-actions and their rules,
the trace steps with thought redaction and the controller result type;
:mod:`slmlab.mcts.lm_env` the language-model environment (KV-cache forks); :mod:`slmlab.mcts.features`,
:mod:`slmlab.mcts.reward`, :mod:`slmlab.mcts.network`, :mod:`slmlab.mcts.replay` and
:mod:`slmlab.mcts.learning` what the AlphaZero-style learning needs; :mod:`slmlab.mcts.selfplay` plays the
episodes; :mod:`slmlab.mcts.evaluate` compares the controller with greedy and best-of-n;
:mod:`slmlab.mcts.runs` is the chapter's entry point (:func:`~slmlab.mcts.runs.run_chapter`);
:mod:`slmlab.mcts.controller` and :mod:`slmlab.mcts.serve` put the controller behind HTTP.

The names below are the chapter's public entry points (``from slmlab.mcts import run_chapter``). Each is
imported from its module on first use, so importing the package needs neither torch nor the HTTP server's
fastapi: only a cell that asks for ``create_app`` loads the server.
"""

from importlib import import_module

_EXPORTS = {
    "ChapterSettings": "runs", "chapter_items": "runs", "default_run_dir": "runs", "evaluate_run": "runs",
    "run_chapter": "runs",
    "EvalSettings": "evaluate", "conclusion": "evaluate", "conclusion_figures": "evaluate",
    "evaluate_controllers": "evaluate", "summarize_evaluation": "evaluate",
    "FEATURE_NAMES": "features", "state_features": "features",
    "EnvConfig": "lm_env", "LMEnvironment": "lm_env", "greedy_episode": "lm_env",
    "Macro": "macro", "MacroActionError": "macro", "MacroState": "macro",
    "NetworkEvaluator": "network", "load_network": "network",
    "Featurizer": "selfplay", "SearchSettings": "selfplay", "current_network": "selfplay",
    "episodes_done": "selfplay", "search_episode": "selfplay",
    "MCTSController": "controller", "create_app": "serve",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    """Import an entry point from its module the first time it is asked for."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
