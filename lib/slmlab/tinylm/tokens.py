"""Token files and the streaming loader: corpus ids in memory-mapped numpy files, batches drawn from (seed, step).

Memory stays flat as the corpus grows: only the windows of a batch are read, never the whole file.
"""

from __future__ import annotations

import gc
import itertools
import json
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
import psutil
import torch
from tqdm.auto import tqdm

from slmlab.errors import CorpusError
from slmlab.io import atomic_write, atomic_write_json
from slmlab.tinylm.tokenizer import TokenizerConfig
from slmlab.trainloop import IGNORE_INDEX as IGNORE_INDEX  # re-exported: its home before the core held it

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

SIDECAR_SUFFIX = ".json"
Mode = Literal["random", "sequential"]


@dataclass(frozen=True)
class LoaderConfig:
    """Defaults of the streaming loader."""

    mode: Mode = "random"
    shuffle: bool = True
    seed: int = 0
    pad_id: int = 0  # <PAD>


@dataclass(frozen=True)
class StreamingConfig:
    """Defaults of :func:`streaming_rss`: two synthetic corpora of different sizes streamed the same way."""

    sizes: tuple[int, ...] = (2_000_000, 20_000_000)  # tokens per synthetic file
    batches: int = 200
    context_length: int = 256
    batch_size: int = 16
    vocab_size: int = 4096
    mode: Mode = "sequential"
    shuffle: bool = False
    seed: int = 0


def sidecar_path(path: str | Path) -> Path:
    """Where the JSON description of a token file lives: ``<path>.json``."""
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits, else uint32."""
    return np.dtype(np.uint16 if vocab_size <= np.iinfo(np.uint16).max else np.uint32)


@dataclass(frozen=True)
class TokenFile:
    """A raw file of token ids (read-only memory map) and its sidecar's description."""

    path: Path
    ids: np.memmap
    meta: dict

    @classmethod
    def open(cls, path: str | Path) -> TokenFile:
        """Memory-map the ids at ``path`` as described by ``<path>.json``."""
        path = Path(path)
        sidecar = sidecar_path(path)
        if not path.is_file() or not sidecar.is_file():
            raise CorpusError(f"token file {path} or its description {sidecar.name} is missing")
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        dtype = np.dtype(meta["dtype"])
        expected = meta["tokens"] * dtype.itemsize
        if meta["tokens"] == 0 or path.stat().st_size != expected:
            raise CorpusError(
                f"token file {path} holds {path.stat().st_size} bytes, its description says "
                f"{meta['tokens']} tokens of {dtype.name} ({expected} bytes)"
            )
        return cls(path, np.memmap(path, dtype=dtype, mode="r", shape=(meta["tokens"],)), meta)

    @property
    def tokens(self) -> int:
        return int(self.meta["tokens"])

    @property
    def bytes(self) -> int:
        """UTF-8 bytes of the text the ids were encoded from."""
        return int(self.meta["bytes"])

    @property
    def documents(self) -> int:
        return int(self.meta["documents"])

    @property
    def eos_id(self) -> int:
        return int(self.meta["eos_id"])

    @property
    def vocab_size(self) -> int:
        return int(self.meta["vocab_size"])

    def __len__(self) -> int:
        return self.tokens


def _write(chunks: Iterable[np.ndarray], path: Path, vocab_size: int, eos_id: int, counts: dict[str, int]) -> TokenFile:
    """Write the chunks to ``path`` atomically, then the sidecar; ``counts`` is read after the last chunk."""
    dtype = token_dtype(vocab_size)
    tokens = 0

    def write(tmp: Path) -> None:
        nonlocal tokens
        with open(tmp, "wb") as handle:
            for chunk in chunks:
                np.asarray(chunk).astype(dtype, copy=False).tofile(handle)
                tokens += len(chunk)

    atomic_write(path, write)
    if tokens == 0:
        path.unlink()
        raise CorpusError(f"no tokens to write to {path}: the corpus is empty")
    atomic_write_json(
        sidecar_path(path),
        {
            "dtype": dtype.name,
            "tokens": tokens,
            "documents": counts.get("documents", 0),
            "bytes": counts.get("bytes", 0),
            "vocab_size": vocab_size,
            "eos_id": eos_id,
        },
    )
    return TokenFile.open(path)


def write_tokens(
    chunks: Iterable[np.ndarray], path: str | Path, vocab_size: int, eos_id: int, documents: int = 0, text_bytes: int = 0
) -> TokenFile:
    """Write id ``chunks`` one after another to ``path`` (atomically) plus its sidecar; return the opened file."""
    return _write(chunks, Path(path), vocab_size, eos_id, {"documents": documents, "bytes": text_bytes})


def encode_documents(
    tokenizer: PreTrainedTokenizerBase,
    docs: Iterable[object],
    path: str | Path,
    progress: bool = False,
    batch_documents: int = TokenizerConfig.batch_documents,
) -> TokenFile:
    """Tokenize ``docs`` (strings or objects with ``.text``) in batches, EOS after each document, into ``path``.

    The ids are written chunk by chunk (one chunk per batch of documents), never held for the whole corpus.
    """
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no EOS token; train it with slmlab.tinylm.tokenizer.train_tokenizer")
    counts = {"documents": 0, "bytes": 0}
    bar = tqdm(total=len(docs) if hasattr(docs, "__len__") else None, desc="encoding", unit="doc", disable=not progress)

    def chunks() -> Iterator[np.ndarray]:
        items = iter(docs)
        while batch := list(itertools.islice(items, batch_documents)):
            texts = [item if isinstance(item, str) else item.text for item in batch]
            encoded = tokenizer(texts, add_special_tokens=False, verbose=False, return_attention_mask=False)["input_ids"]
            counts["documents"] += len(texts)
            counts["bytes"] += sum(len(text.encode("utf-8")) for text in texts)
            bar.update(len(texts))
            yield np.fromiter(itertools.chain.from_iterable(ids + [eos] for ids in encoded), dtype=np.int64)

    try:
        return _write(chunks(), Path(path), len(tokenizer), eos, counts)
    finally:
        bar.close()


class TokenLoader:
    """Batches of fixed-length windows from one or more token files; the global batch depends on (seed, step) only.

    ``random``: window starts drawn from ``np.random.default_rng((seed, step))``, each window inside one file,
    every possible window equally likely (so files count in proportion to their length). ``sequential``: each
    file cut into consecutive windows (documents packed, joined by EOS), the last one of a file padded; an
    epoch visits every window once, in a seeded order per epoch when ``shuffle``, in file order when not.
    Rank ``r`` of ``world_size`` ``w`` gets rows ``r*B/w ... (r+1)*B/w`` of the global batch.
    """

    def __init__(
        self,
        files: Sequence[TokenFile | str | Path],
        context_length: int,
        batch_size: int,
        mode: Mode = LoaderConfig.mode,
        shuffle: bool = LoaderConfig.shuffle,
        seed: int = LoaderConfig.seed,
        pad_id: int = LoaderConfig.pad_id,
    ) -> None:
        if mode not in ("random", "sequential"):
            raise ValueError(f"mode must be 'random' or 'sequential', not {mode!r}")
        if context_length < 1 or batch_size < 1:
            raise ValueError(f"context_length ({context_length}) and batch_size ({batch_size}) must be at least 1")
        if not files:
            raise ValueError("TokenLoader needs at least one token file")
        self.files = [item if isinstance(item, TokenFile) else TokenFile.open(item) for item in files]
        for item in self.files:
            if item.tokens < context_length + 1:
                raise CorpusError(
                    f"token file {item.path} holds {item.tokens} tokens, fewer than one window of {context_length} + 1 tokens"
                )
        self.context_length, self.batch_size, self.mode = context_length, batch_size, mode
        self.shuffle, self.seed, self.pad_id = shuffle, seed, pad_id
        lengths = np.array([item.tokens for item in self.files], dtype=np.int64)
        self._starts = lengths - context_length + 1  # possible window starts per file (random mode)
        self._windows = -(-lengths // context_length)  # consecutive windows per file, the last maybe short
        self._offsets = np.concatenate([[0], np.cumsum(self._windows)])
        self._permutations: dict[int, np.ndarray] = {}

    @property
    def windows_per_epoch(self) -> int:
        """Windows in one pass over the data (random mode: as many non-overlapping windows as the tokens hold)."""
        if self.mode == "sequential":
            return int(self._offsets[-1])
        return int(sum(item.tokens // self.context_length for item in self.files))

    @property
    def tokens_per_batch(self) -> int:
        return self.batch_size * self.context_length

    def __len__(self) -> int:
        """Batches per epoch."""
        return -(-self.windows_per_epoch // self.batch_size)

    def windows(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """The global batch of ``step`` as (file index, start token) per row."""
        if step < 0:
            raise ValueError(f"step must be at least 0, not {step}")
        if self.mode == "random":
            rng = np.random.default_rng((self.seed, step))
            files = rng.choice(len(self.files), size=self.batch_size, p=self._starts / self._starts.sum())
            return files, rng.integers(0, self._starts[files])
        positions = step * self.batch_size + np.arange(self.batch_size)
        total = int(self._offsets[-1])
        epochs, within = np.divmod(positions, total)
        window = np.array([self._order(int(epoch))[index] for epoch, index in zip(epochs, within)], dtype=np.int64)
        files = np.searchsorted(self._offsets, window, side="right") - 1
        return files, (window - self._offsets[files]) * self.context_length

    def _order(self, epoch: int) -> np.ndarray:
        if epoch not in self._permutations:
            total = int(self._offsets[-1])
            order = np.random.default_rng((self.seed, epoch)).permutation(total) if self.shuffle else np.arange(total)
            # keep the latest two epochs: a batch may straddle an epoch boundary
            self._permutations = {**dict(list(self._permutations.items())[-1:]), epoch: order}
        return self._permutations[epoch]

    def batch(self, step: int, rank: int = 0, world_size: int = 1) -> dict[str, torch.Tensor]:
        """``input_ids``, ``attention_mask`` and ``labels`` (IGNORE_INDEX on padding) of this rank's rows of ``step``."""
        if world_size < 1 or self.batch_size % world_size:
            raise ValueError(f"batch_size {self.batch_size} does not divide by world_size {world_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside 0 .. {world_size - 1}")
        rows = self.batch_size // world_size
        files, starts = self.windows(step)
        ids = np.full((rows, self.context_length), self.pad_id, dtype=np.int64)
        mask = np.zeros((rows, self.context_length), dtype=np.int64)
        for row, (file, start) in enumerate(zip(files[rank * rows : (rank + 1) * rows], starts[rank * rows : (rank + 1) * rows])):
            piece = self.files[file].ids[start : start + self.context_length]
            ids[row, : len(piece)] = piece
            mask[row, : len(piece)] = 1
        labels = np.where(mask == 1, ids, IGNORE_INDEX)
        return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask), "labels": torch.from_numpy(labels)}

    def iter_batches(self, start_step: int = 0, rank: int = 0, world_size: int = 1) -> Iterator[dict[str, torch.Tensor]]:
        """Batches of ``start_step``, ``start_step + 1``, ... without end."""
        for step in itertools.count(start_step):
            yield self.batch(step, rank, world_size)


def _rss() -> int:
    return psutil.Process().memory_info().rss


def _synthetic_chunks(tokens: int, vocab_size: int, seed: int, chunk: int = 1 << 20) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(seed)
    for start in range(0, tokens, chunk):
        yield rng.integers(0, vocab_size, size=min(chunk, tokens - start), dtype=np.int64)


def streaming_rss(
    sizes: Sequence[int] = StreamingConfig.sizes,
    batches: int = StreamingConfig.batches,
    context_length: int = StreamingConfig.context_length,
    batch_size: int = StreamingConfig.batch_size,
    vocab_size: int = StreamingConfig.vocab_size,
    mode: Mode = StreamingConfig.mode,
    shuffle: bool = StreamingConfig.shuffle,
    seed: int = StreamingConfig.seed,
    folder: str | Path | None = None,
) -> pd.DataFrame:
    """Stream the same number of batches from synthetic token files of each size and measure resident memory.

    One row per size: corpus tokens, file MB, MB of windows read, RSS before and at peak, and the growth —
    about the same for every size and far below the larger file, since only pages of the windows read become
    resident. Those are file pages the kernel can drop at any time, unlike heap memory; random windows spread
    over a file touch more of them (up to the whole file) than consecutive ones. Files go to a temporary
    folder unless ``folder`` is given.
    """
    with tempfile.TemporaryDirectory(prefix="slmlab-tokens-") as scratch:
        root = Path(folder) if folder is not None else Path(scratch)
        paths = [
            write_tokens(
                _synthetic_chunks(size, vocab_size, seed), root / f"synthetic-{size}.bin", vocab_size, eos_id=vocab_size - 1
            ).path
            for size in sizes
        ]
        rows = [_measure(path, batches, context_length, batch_size, mode, shuffle, seed) for path in paths]
    return pd.DataFrame(rows)


def _measure(path: Path, batches: int, context_length: int, batch_size: int, mode: Mode, shuffle: bool, seed: int) -> dict:
    gc.collect()
    loader = TokenLoader([path], context_length, batch_size, mode=mode, shuffle=shuffle, seed=seed)
    loader.batch(0)  # first call warms up lazily allocated state (torch, numpy) outside the measurement
    before = peak = _rss()
    for step in range(batches):
        loader.batch(step)
        peak = max(peak, _rss())
    read = batches * loader.tokens_per_batch * loader.files[0].ids.itemsize
    row = {
        "corpus tokens": loader.files[0].tokens,
        "file MB": path.stat().st_size / 1e6,
        "batches": batches,
        "read MB": read / 1e6,
        "rss before MB": before / 1e6,
        "rss peak MB": peak / 1e6,
        "rss growth MB": (peak - before) / 1e6,
    }
    del loader
    gc.collect()
    return row
