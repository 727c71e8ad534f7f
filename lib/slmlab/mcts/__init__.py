"""Chapter 06: a Monte-Carlo tree search controller that steers a frozen model with macro-actions.

:mod:`slmlab.mcts.core` is the generic search (PUCT, Dirichlet noise, visit-count policies, tree reuse), tested
on tic-tac-toe in :mod:`slmlab.mcts.games`; :mod:`slmlab.mcts.macro` holds the macro-actions and their rules,
the trace steps with thought redaction and the controller result type;
:mod:`slmlab.mcts.lm_env` the language-model environment (KV-cache forks); :mod:`slmlab.mcts.features`,
:mod:`slmlab.mcts.reward`, :mod:`slmlab.mcts.network`, :mod:`slmlab.mcts.replay` and
:mod:`slmlab.mcts.learning` what the AlphaZero-style learning needs; :mod:`slmlab.mcts.selfplay` plays the
episodes; :mod:`slmlab.mcts.consistency` is the test-time value without gold (self-consistency among finished
branches); :mod:`slmlab.mcts.evaluate` compares the controller with greedy, best-of-n and majority vote;
:mod:`slmlab.mcts.runs` is the chapter's entry point (:func:`~slmlab.mcts.runs.run_chapter`);
:mod:`slmlab.mcts.controller` and :mod:`slmlab.mcts.serve` put the controller behind HTTP.
Part two searches code, where a checkable signal exists: :mod:`slmlab.mcts.code_env` steps a program line by line,
:mod:`slmlab.mcts.code` searches it valued by the visible tests, and :mod:`slmlab.mcts.code_compare` measures greedy,
sampling + filtering and MCTS on hidden tests (entry point: :func:`~slmlab.mcts.code_compare.compare_code`).

The names below are the chapter's public entry points (``from slmlab.mcts import run_chapter``). Each is
imported from its module on first use, so importing the package needs neither torch nor the HTTP server's
fastapi: only a cell that asks for ``create_app`` loads the server.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "spec": [
            "ChapterSettings",
            "CodeComparisonConfig",
            "CodeSearchConfig",
            "ConsistencySettings",
            "EnvConfig",
            "EvalSettings",
            "SearchSettings",
        ],
        "code": ["describe_tree", "filter_programs", "greedy_program", "search_program"],
        "code_compare": [
            "compare_code",
            "comparison_reading",
            "comparison_tasks",
            "composed_table",
            "notable_tasks",
            "summarize_comparison",
        ],
        "runs": ["chapter_items", "default_run_dir", "evaluate_run", "long_run_dir", "run_chapter"],
        "evaluate": [
            "METHODS",
            "conclusion",
            "conclusion_figures",
            "evaluate_controllers",
            "summarize_evaluation",
        ],
        "consistency": ["AnswerPool", "answer_key", "consistency_values", "majority_answer"],
        "features": ["FEATURE_NAMES", "state_features"],
        "lm_env": ["LMEnvironment", "greedy_episode"],
        "macro": ["Macro", "MacroActionError", "MacroState"],
        "network": ["NetworkEvaluator", "load_network"],
        "selfplay": [
            "Featurizer",
            "current_network",
            "episodes_done",
            "network_metrics_path",
            "network_path",
            "search_episode",
        ],
        "controller": ["MCTSController"],
        "serve": ["create_app"],
    },
)
