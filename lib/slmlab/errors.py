"""Exceptions raised by slmlab: one class per thing a user can fix, each with a one-sentence message."""


class SlmLabError(Exception):
    """Base class of every error slmlab raises on purpose."""


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
