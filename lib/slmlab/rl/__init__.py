"""Chapter 08: learning to code from execution feedback — a policy whose only teacher is the reward of the core's
scorer (partial credit for programs run in the sandbox).

:mod:`slmlab.rl.tasks` generates the seeded task families (the task format, the sandbox and the scorer are the
core's :mod:`slmlab.execution`);
:mod:`slmlab.rl.hints` gives a task's hints only when training is stuck, with exponential backoff;
:mod:`slmlab.rl.initialization` checks (and repairs) a from-scratch policy's initial weights and output entropy;
:mod:`slmlab.rl.codetext` normalizes code and writes its block structure as INDENT/DEDENT tokens;
:mod:`slmlab.rl.evaluate` measures a model's greedy pass@1;
:mod:`slmlab.rl.spec` holds the training settings (:class:`RLConfig`) with the chapter's names and paths,
:mod:`slmlab.rl.policy` the policies (LoRA on SmolLM2, or a tiny model from scratch) and :mod:`slmlab.rl.learner`
REINFORCE itself; :mod:`slmlab.rl.monitor` watches a run (token analytics, weight changes, the live panel, the run
log) and :mod:`slmlab.rl.views` draws it;
:mod:`slmlab.rl.trl_runner` trains with TRL's GRPO or RLOO on the same reward; :mod:`slmlab.rl.runs` is the chapter's
measured result, pass@1 before and after (entry point: :func:`train_and_measure`).

The names below are imported from their modules on first use.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "tasks": ["default_tasks_dir", "generate_families"],
        "evaluate": ["PassAtOneSettings", "by_family", "pass_at_1", "score_replies"],
        "hints": ["HintConfig", "HintSchedule", "prompt_with_hint"],
        "initialization": [
            "INIT_SCHEMES",
            "InitCheckConfig",
            "check_initialization",
            "ensure_good_initialization",
            "histogram_data",
            "initialize",
            "output_entropy",
            "weight_statistics",
        ],
        "spec": ["RLConfig"],
        "policy": ["LoraPolicy", "TinyPolicy", "TinyPolicyConfig", "build_policy"],
        "learner": ["RLResult", "policy_pass_at_1", "read_attempts", "read_metrics", "sample_programs", "train_policy"],
        "runs": [
            "ChapterRun",
            "Measurement",
            "before_after",
            "default_results_dir",
            "measure",
            "save_measurements",
            "task_set",
            "train_and_measure",
        ],
        "monitor": ["LivePanel", "WeightChangeMonitor", "next_token_table", "per_task_curves", "attempts_table", "token_report"],
        "trl_runner": ["train_with_trl"],
        "views": [
            "plot_hint_events",
            "plot_next_token_probabilities",
            "plot_pass_at_1",
            "plot_task_curves",
            "plot_token_usage",
            "plot_training_curves",
            "plot_weight_histograms",
        ],
        "codetext": [
            "decode_code",
            "decode_structure",
            "encode_code",
            "encode_structure",
            "normalize_source",
            "train_code_tokenizer",
        ],
    },
)
