"""Chapter 08: learning to code from execution feedback — coding tasks, a sandbox for generated programs, and a
scorer with partial credit whose reward is the only teacher.

:mod:`slmlab.rl.tasks` loads task files (and HumanEval's problems) and generates the seeded task families;
:mod:`slmlab.rl.sandbox` runs a program in a separate, limited process; :mod:`slmlab.rl.scoring` scores a program
against a task's tests (the reward scale is in its docstring); :mod:`slmlab.rl.fingerprint` recognises an attempt
seen before; :mod:`slmlab.rl.hints` gives a task's hints only when training is stuck, with exponential backoff;
:mod:`slmlab.rl.initialization` checks (and repairs) a from-scratch policy's initial weights and output entropy;
:mod:`slmlab.rl.codetext` normalizes code and writes its block structure as INDENT/DEDENT tokens;
:mod:`slmlab.rl.evaluate` measures a model's greedy pass@1.

The names below are imported from their modules on first use.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(__name__, submod_attrs={
    "tasks": ["CodeTask", "TestCase", "generate_families", "load_humaneval", "load_tasks", "validate_task", "write_tasks"],
    "sandbox": ["SandboxLimits", "SandboxResult", "run_python", "sandbox_report"],
    "scoring": ["RewardNormalizer", "Score", "score_program", "score_programs"],
    "evaluate": ["EvalSettings", "by_family", "extract_code", "pass_at_1", "task_prompt"],
    "fingerprint": ["FingerprintSet", "fingerprint", "normalize_code"],
    "hints": ["HintConfig", "HintSchedule", "prompt_with_hint"],
    "initialization": ["INIT_SCHEMES", "InitCheckConfig", "check_initialization", "ensure_good_initialization",
                       "histogram_data", "initialize", "output_entropy", "weight_statistics"],
    "codetext": ["decode_code", "decode_structure", "encode_code", "encode_structure", "normalize_source",
                 "train_code_tokenizer"],
})
