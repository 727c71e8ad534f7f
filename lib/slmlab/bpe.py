"""Byte-level BPE tokenizers trained from text with Hugging Face ``tokenizers`` and wrapped for transformers: the one
recipe behind chapter 07's tokenizer and chapter 08's code tokenizer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

BYTE_ALPHABET = 256  # a byte-level BPE starts from every byte value, so no text is ever unknown


def train_byte_bpe(
    pieces: Iterable[str],
    vocab_size: int,
    special_tokens: Sequence[str],
    min_frequency: int = 2,
    progress: bool = False,
    model_max_length: int = 1024,
    length: int | None = None,
) -> PreTrainedTokenizerFast:
    """A byte-level BPE of ``vocab_size`` tokens trained on ``pieces``; deterministic for the same input.

    ``special_tokens`` take the first ids in order and are never split; the first four are the wrapper's pad, unk,
    bos and eos tokens. Decoding never tidies spaces, so text round-trips exactly.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(unk_token=special_tokens[1]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=progress,
    )
    backend.train_from_iterator(pieces, trainer=trainer, length=length)
    pad, unk, bos, eos = special_tokens[:4]
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=pad,
        unk_token=unk,
        bos_token=bos,
        eos_token=eos,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )
