"""SLM Lab: the helper library behind the notebook course.

Each chapter has one module with one obvious entry point; this package root re-exports the ones a
notebook reaches for first.
"""

from slmlab.errors import BackendError, ModelCacheError, ModelUnavailableError, SlmLabError, UnknownModelError
from slmlab.generation import DecodingConfig
from slmlab.models import DEFAULT_MODEL, load_model, resolve_model
from slmlab.settings import env_flag, quick_mode

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODEL",
    "BackendError",
    "DecodingConfig",
    "ModelCacheError",
    "ModelUnavailableError",
    "SlmLabError",
    "UnknownModelError",
    "env_flag",
    "load_model",
    "quick_mode",
    "resolve_model",
]
