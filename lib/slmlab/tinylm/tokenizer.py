"""Byte-level BPE tokenizer for the tiny LM: trained with Hugging Face ``tokenizers``, wrapped for transformers.

Any text round-trips exactly; helpers show the learned merges and tokenized pieces as readable text.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache

from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from slmlab.bpe import BYTE_ALPHABET, train_byte_bpe

SPECIAL_TOKENS = ("<PAD>", "<UNK>", "<BOS>", "<EOS>")  # ids 0..3 in this order


@dataclass(frozen=True)
class TokenizerConfig:
    """Defaults of the chapter's tokenizer."""

    vocab_size: int = 4096
    min_frequency: int = 2  # a pair seen fewer times is never merged
    model_max_length: int = 1024  # the longest sequence the model takes; the lead sets the model's context length
    batch_documents: int = 256  # documents tokenized per call when encoding a corpus


def min_vocab_size() -> int:
    """The smallest vocabulary a byte-level BPE can have: every byte plus the special tokens."""
    return BYTE_ALPHABET + len(SPECIAL_TOKENS)


def _texts(items: Iterable[object]) -> Iterator[str]:
    for item in items:
        yield item if isinstance(item, str) else item.text


def train_tokenizer(
    texts: Iterable[object],
    vocab_size: int = TokenizerConfig.vocab_size,
    min_frequency: int = TokenizerConfig.min_frequency,
    progress: bool = False,
    model_max_length: int = TokenizerConfig.model_max_length,
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on ``texts`` (strings or objects with ``.text``) and wrap it for transformers.

    Special tokens get ids 0..3 (:data:`SPECIAL_TOKENS`) and are never added when encoding. Training is
    deterministic: the same texts give the same vocabulary and merges.
    """
    if vocab_size < min_vocab_size():
        raise ValueError(
            f"vocab_size {vocab_size} is smaller than the byte alphabet plus special tokens "
            f"({BYTE_ALPHABET} + {len(SPECIAL_TOKENS)} = {min_vocab_size()})"
        )
    length = len(texts) if hasattr(texts, "__len__") else None
    return train_byte_bpe(_texts(texts), vocab_size, SPECIAL_TOKENS, min_frequency, progress, model_max_length, length)


@lru_cache(maxsize=1)
def _unicode_to_byte() -> dict[str, int]:
    # GPT-2's byte-to-symbol table that byte-level BPE uses; tokenizers does not export it, so it is rebuilt here:
    # printable bytes stand for themselves, the others are shifted to code points 256 and up ('Ġ' = space).
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, shifted = {}, 0
    for byte in range(BYTE_ALPHABET):
        if byte in printable:
            table[chr(byte)] = byte
        else:
            table[chr(BYTE_ALPHABET + shifted)] = byte
            shifted += 1
    return table


def readable(token: str) -> str:
    """A byte-level token as the text it stands for ('Ġ' → ' ', 'Ċ' → '\\n'); bytes of a split character as \\xNN."""
    table = _unicode_to_byte()
    if token in SPECIAL_TOKENS or any(char not in table for char in token):
        return token
    return bytes(table[char] for char in token).decode("utf-8", errors="backslashreplace")


def merges(tokenizer: PreTrainedTokenizerBase, n: int | None = None) -> list[tuple[str, str]]:
    """The first ``n`` merges (all when None) in the order they were learned, as readable text."""
    learned = json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]
    pairs = [tuple(pair) if isinstance(pair, list) else tuple(pair.split(" ", 1)) for pair in learned[:n]]
    return [(readable(left), readable(right)) for left, right in pairs]


def token_pieces(tokenizer: PreTrainedTokenizerBase, text: str) -> list[str]:
    """``text`` cut into its tokens, each shown as readable text."""
    ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    return [readable(token) for token in tokenizer.convert_ids_to_tokens(ids)]


def bytes_per_token(
    tokenizer: PreTrainedTokenizerBase, texts: Iterable[object], batch_documents: int = TokenizerConfig.batch_documents
) -> float:
    """UTF-8 bytes of ``texts`` divided by their number of tokens (no special tokens): the compression."""
    text_bytes = tokens = 0
    items = _texts(texts)
    while batch := list(itertools.islice(items, batch_documents)):
        encoded = tokenizer(batch, add_special_tokens=False, verbose=False, return_attention_mask=False)["input_ids"]
        tokens += sum(len(ids) for ids in encoded)
        text_bytes += sum(len(text.encode("utf-8")) for text in batch)
    if tokens == 0:
        raise ValueError("bytes_per_token needs at least one non-empty text")
    return text_bytes / tokens
