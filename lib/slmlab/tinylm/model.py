"""Chapter 07's model: a small Llama-style decoder built from a config and initialised at random, saved in the
stock transformers format (safetensors + config + tokenizer), which ``slmlab.load_model`` and ``mlx_lm.load`` read.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from slmlab.errors import CheckpointShapeError
from slmlab.io import atomic_write_folder
from slmlab.models.packaged import add_mlx_rope_theta
from slmlab.tinylm.spec import ModelConfig as ModelConfig

if TYPE_CHECKING:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

WEIGHTS_FILE = "model.safetensors"


def llama_config(config: ModelConfig, tokenizer: PreTrainedTokenizerFast) -> LlamaConfig:
    """The transformers config of the decoder for ``tokenizer``'s vocabulary and special tokens."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.layers,
        num_attention_heads=config.heads,
        num_key_value_heads=config.kv_heads,
        max_position_embeddings=config.context_length,
        rope_theta=config.rope_theta,
        tie_word_embeddings=config.tie_embeddings,
        initializer_range=config.init_std,
        attention_dropout=config.dropout,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def build_model(config: ModelConfig, tokenizer: PreTrainedTokenizerFast, seed: int = 0) -> LlamaForCausalLM:
    """A freshly initialised decoder (the same weights for the same seed and config)."""
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    return LlamaForCausalLM(llama_config(config, tokenizer))


def count_parameters(model: torch.nn.Module) -> int:
    """Trainable parameters, a tied matrix counted once."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def shape_mismatches(model: torch.nn.Module, weights: Mapping[str, torch.Tensor]) -> list[str]:
    """Every tensor that ``weights`` and ``model`` disagree on, as ``name: checkpoint [a, b] vs model [c, d]``."""
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    problems = []
    for name, tensor in weights.items():
        if name not in expected:
            problems.append(f"{name}: in the checkpoint, not in the model")
        elif tuple(tensor.shape) != expected[name]:
            problems.append(f"{name}: checkpoint {list(tensor.shape)} vs model {list(expected[name])}")
    tied = {"lm_head.weight"} if getattr(model.config, "tie_word_embeddings", False) else set()
    problems += [f"{name}: in the model, not in the checkpoint" for name in expected.keys() - weights.keys() - tied]
    return problems


def load_weights(model: torch.nn.Module, folder: str | Path) -> None:
    """Load a saved model folder's (or checkpoint's) weights into ``model``, refusing another shape.

    Raises :class:`~slmlab.errors.CheckpointShapeError` naming the tensors and both shapes when the checkpoint was
    made for another model (other width, depth or vocabulary).
    """
    from safetensors.torch import load_file

    path = Path(folder) / WEIGHTS_FILE
    if not path.is_file():
        raise CheckpointShapeError(f"{path} not found: not a saved model folder or checkpoint")
    weights = load_file(path)
    problems = shape_mismatches(model, weights)
    if problems:
        shown = "; ".join(problems[:4]) + (f"; and {len(problems) - 4} more" if len(problems) > 4 else "")
        raise CheckpointShapeError(f"{folder} holds another model shape: {shown}")
    model.load_state_dict(weights, strict=False)
    if getattr(model.config, "tie_word_embeddings", False):
        model.tie_weights()


def save_model_files(model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast, folder: Path) -> None:
    """Write the stock transformers folder (weights, config, generation config, tokenizer) into ``folder``."""
    from transformers.utils import logging

    shown = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()  # one "Writing model shards" bar per checkpoint would bury the training bar
    try:
        model.save_pretrained(folder)
    finally:
        if shown:
            logging.enable_progress_bar()
    tokenizer.save_pretrained(folder)
    add_mlx_rope_theta(folder)  # mlx-lm reads rope_theta at the top level of config.json


def save_model(model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast, folder: str | Path) -> Path:
    """:func:`save_model_files` into ``folder`` atomically, keeping files already there (a run's logs)."""
    return atomic_write_folder(folder, lambda tmp: save_model_files(model, tokenizer, tmp), merge=True)
