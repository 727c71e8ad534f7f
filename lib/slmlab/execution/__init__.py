"""Code execution, shared by chapters 06 and 08: code tasks and their loader (:mod:`~slmlab.execution.tasks`), a
sandbox for untrusted programs (:mod:`~slmlab.execution.sandbox`) and the scorer that runs a program against a task's
tests there (:mod:`~slmlab.execution.scoring`, with :mod:`~slmlab.execution.checking` for HumanEval's ``check`` and
:mod:`~slmlab.execution.fingerprint` to recognise a program seen before).

The names below are imported from their modules on first use.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "tasks": [
            "CodeTask",
            "CodeTaskFileError",
            "TestCase",
            "VISIBLE_TESTS",
            "extract_code",
            "load_code_tasks",
            "load_humaneval",
            "task_prompt",
            "visible_test_count",
            "write_tasks",
        ],
        "examples": ["docstring_examples"],
        "sandbox": ["SandboxLimits", "SandboxResult", "run_python", "sandbox_report"],
        "scoring": [
            "CheckedExamples",
            "RewardNormalizer",
            "Score",
            "checked_examples",
            "score_program",
            "score_programs",
            "validate_task",
            "validate_tasks",
        ],
        "fingerprint": ["FingerprintSet", "fingerprint", "normalize_code"],
    },
)
