"""The course's chapters in one list: each names its notebooks and its spec (the one screen of its settings,
commands and artifact paths). The report, the demos, the grid, the course runner and the CLI read specs through it.

Importing this imports every spec, which is cheap by rule: a spec imports no torch, pandas or fastapi.
"""

from __future__ import annotations

from types import ModuleType

from slmlab import spec as core
from slmlab.ace import spec as ace
from slmlab.lora import spec as lora
from slmlab.mcts import spec as mcts
from slmlab.report import spec as report
from slmlab.rl import spec as rl
from slmlab.tinylm import spec as lm

SPECS: tuple[ModuleType, ...] = (lora, ace, mcts, lm, rl, report)  # in course order; chapter 00 is the core's
LEVERS: tuple[ModuleType, ...] = tuple(s for s in SPECS if hasattr(s, "TAUGHT_THROUGH"))  # what teaches the model
BY_KEY: dict[str, ModuleType] = {s.KEY: s for s in SPECS}


def spec_of_notebook(notebook: str) -> ModuleType:
    """The spec of the chapter a notebook (``"03_lora_training"`` or its file name) belongs to; the core's for 00."""
    stem = notebook.removesuffix(".ipynb")
    return next((s for s in SPECS if stem in s.NOTEBOOKS), core)


def model_words(command: str) -> tuple[str, ...]:
    """The special values a command's ``--model`` accepts besides model names (``rl train``: ``tiny``)."""
    return next((getattr(s, "MODEL_WORDS", ()) for s in SPECS if command in s.COMMANDS), ())


def model_is_folder(command: str) -> bool:
    """Whether a command's ``--model`` is a trained folder of its chapter (every ``lm ...``), not a model name."""
    word = command.split()[0] if command.strip() else ""
    return any(getattr(s, "MODEL_IS_FOLDER", False) and word in {c.split()[0] for c in s.COMMANDS} for s in SPECS)
