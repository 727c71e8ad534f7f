"""Chapter 05: Agentic Context Engineering — the model adapts through a playbook in its context.

This package grows with the chapter; :mod:`slmlab.ace.playbook` holds the playbook itself.
"""

from slmlab.ace.playbook import Bullet, DeltaOp, Playbook, PlaybookError

__all__ = ["Bullet", "DeltaOp", "Playbook", "PlaybookError"]
