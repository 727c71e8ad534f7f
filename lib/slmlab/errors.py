"""Exceptions raised by slmlab: one class per thing a user can fix, each with a one-sentence message."""


class SlmLabError(Exception):
    """Base class of every error slmlab raises on purpose."""


class ProblemListError(SlmLabError, ValueError):
    """A file with one or more problems, each ``file:line: why``: the message lists them (the first
    ``MAX_PROBLEMS``), ``problems`` keeps them all."""

    MAX_PROBLEMS = 20

    def __init__(self, problems: list[str]):
        self.problems = problems
        shown = problems[: self.MAX_PROBLEMS]
        if len(problems) > self.MAX_PROBLEMS:
            shown.append(f"... and {len(problems) - self.MAX_PROBLEMS} more")
        super().__init__(shown[0] if len(problems) == 1 else f"{len(problems)} problems:\n" + "\n".join(shown))


class UnknownModelError(SlmLabError, ValueError):
    """A model name that is neither a registry name, a Hugging Face id nor a local folder."""


class ModelUnavailableError(SlmLabError):
    """A model that exists in principle but cannot be had here (no hub, missing package or folder)."""


class ModelCacheError(SlmLabError):
    """A converted-model cache folder that is missing files or is corrupt."""


class BackendError(SlmLabError, ValueError):
    """An unknown backend, a backend that cannot run here, or a feature a backend lacks."""


class CorpusError(SlmLabError, ValueError):
    """A corpus that cannot be trained on: missing, empty, binary, or smaller than one training window."""


class CheckpointShapeError(SlmLabError, ValueError):
    """A checkpoint whose tensors do not fit the model it is loaded into (another shape or vocabulary)."""
