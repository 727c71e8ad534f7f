"""Chapter 05: Agentic Context Engineering — the model adapts through a playbook in its context.

Entry point: :func:`run_ace` (one run of an :class:`AceConfig` into its folder, :func:`default_run_dir`);
:mod:`slmlab.ace.playbook` holds the playbook itself, :mod:`slmlab.ace.report` the summaries across runs,
:mod:`slmlab.ace.views` the chapter's tables and plots. The task sets come from the core (:mod:`slmlab.tasks`).

Each name below is imported from its module on first use, so importing the package stays cheap (no pandas
until a name that needs it is asked for).
"""

from importlib import import_module

_EXPORTS = {
    "Bullet": "slmlab.ace.playbook", "DeltaOp": "slmlab.ace.playbook", "Playbook": "slmlab.ace.playbook",
    "PlaybookError": "slmlab.ace.playbook",
    "AceConfig": "slmlab.ace.runs", "AceRunError": "slmlab.ace.runs", "default_run_dir": "slmlab.ace.runs",
    "run_ace": "slmlab.ace.runs",
    "load_results": "slmlab.ace.report", "summarize": "slmlab.ace.report", "to_markdown": "slmlab.ace.report",
    "write_summary": "slmlab.ace.report",
    "question_block": "slmlab.ace.roles",
    "load_task": "slmlab.tasks", "task_split": "slmlab.tasks",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    """Import an entry point from its module the first time it is asked for."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
