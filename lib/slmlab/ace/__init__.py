"""Chapter 05: Agentic Context Engineering — the model adapts through a playbook in its context.

Entry point: :func:`run_ace` (one run of an :class:`AceConfig` into its folder, :func:`run_dir_of`);
:mod:`slmlab.ace.playbook` holds the playbook itself, :mod:`slmlab.ace.report` the summaries across runs,
:mod:`slmlab.ace.views` the chapter's tables and plots, :mod:`slmlab.ace.spec` its sizes, settings and file names. The
task sets come from the core (:mod:`slmlab.tasks`).

Each name below is imported from its module on first use, so importing the package stays cheap (no pandas
until a name that needs it is asked for).
"""

import lazy_loader

from slmlab.tasks import load_task as load_task  # re-exported from the core: its task registry is light
from slmlab.tasks import task_split as task_split

__getattr__, _, _lazy = lazy_loader.attach(
    __name__,
    submod_attrs={
        "playbook": ["Bullet", "DeltaOp", "Playbook", "PlaybookError", "read_playbook", "write_playbook"],
        "runs": ["run_ace", "run_dir_of"],
        "spec": ["AceConfig", "AceRunError", "chapter_runs"],
        "report": ["baseline_vs_ace_by_split", "load_results", "split_summary", "summarize", "to_markdown", "write_summary"],
        "roles": ["question_block"],
        "tasks": ["transfer_path"],
    },
)
__all__ = sorted([*_lazy, "load_task", "task_split"])


def __dir__() -> list[str]:
    return list(__all__)
