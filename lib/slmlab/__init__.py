"""SLM Lab: the helper library behind the notebook course.

The top level is the shared core: ``models`` and ``backends`` (load any model on torch or MLX),
``generation`` (decoding settings), ``io`` (atomic files and folders), ``settings`` (quick mode and the
artifact folders), ``errors``, ``trainloop``, ``checkpoints`` and ``runlog`` (the one training loop, its checkpoint
folders and step log), ``tasks`` and ``metrics`` (items with gold answers and how answers are scored), ``bpe`` (the byte-level
BPE tokenizer recipe), ``adapters``
(PEFT and mlx-lm LoRA folders), ``course`` (the papermill runner) and ``cli``. Each teaching lever is one
subpackage with one entry point and a ``views`` module for its plots and widgets:

==========================  =================  ==========================================
chapter                     subpackage         entry point
==========================  =================  ==========================================
00 setup, playground        ``playground``     :func:`slmlab.load_model`, ``playground``
01–04 patterns → LoRA       ``lora``           ``load_patterns``, ``generate_dataset``,
                                               ``train_lora``, ``compare_models``
05 ACE playbook             ``ace``            ``run_ace``
06 MCTS controller          ``mcts``           ``run_chapter``
07 tiny LM from scratch     ``tinylm``         ``prepare_corpus``, ``train_lm``,
                                               ``evaluate_run``
08 RL codegen              ``rl``             ``train_and_measure``, ``train_policy``,
                                               ``load_tasks``, ``run_python``
==========================  =================  ==========================================
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
