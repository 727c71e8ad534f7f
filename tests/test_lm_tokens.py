"""Token files and the streaming loader: memory-mapped ids, windows, packing, padding, seeding and rank slices.

Synthetic id files (ids = positions) make every window checkable against the file; memory is measured on small sizes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from slmlab.errors import CorpusError
from slmlab.tinylm.tokenizer import train_tokenizer
from slmlab.tinylm.tokens import (
    IGNORE_INDEX,
    TokenFile,
    TokenLoader,
    encode_documents,
    sidecar_path,
    streaming_rss,
    write_tokens,
)

VOCAB = 60_000  # ids up to 59,999 fit uint16


@dataclass(frozen=True)
class Doc:
    source: str
    text: str


def positions(tmp_path, name: str, tokens: int, first: int = 0) -> TokenFile:
    """A token file whose id at each position is ``first + position``."""
    return write_tokens([np.arange(first, first + tokens)], tmp_path / name, VOCAB, eos_id=VOCAB - 1)


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(["def f(x):\n    return x\n", "print('héllo')\n"] * 10, vocab_size=300)


def test_encode_documents_writes_ids_and_eos_per_document(tok, tmp_path):
    docs = [Doc("a.py", "def f(x):\n    return x\n"), "print('héllo')\n", Doc("c.py", "x = 1\n")]
    file = encode_documents(tok, docs, tmp_path / "train.bin", batch_documents=2)
    expected = []
    for text in ["def f(x):\n    return x\n", "print('héllo')\n", "x = 1\n"]:
        expected += tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert file.ids.tolist() == expected
    assert isinstance(file.ids, np.memmap) and file.ids.dtype == np.uint16 and not file.ids.flags.writeable
    assert (file.tokens, file.documents, file.eos_id, file.vocab_size) == (len(expected), 3, tok.eos_token_id, len(tok))
    assert file.bytes == sum(len(t.encode()) for t in ["def f(x):\n    return x\n", "print('héllo')\n", "x = 1\n"])
    assert sidecar_path(file.path).name == "train.bin.json"
    reopened = TokenFile.open(tmp_path / "train.bin")
    assert isinstance(reopened.ids, np.memmap) and reopened.ids.tolist() == expected
    from_generator = encode_documents(tok, (d for d in docs), tmp_path / "gen.bin")
    assert from_generator.ids.tolist() == expected


def test_an_empty_corpus_is_refused(tok, tmp_path):
    with pytest.raises(CorpusError, match="empty"):
        encode_documents(tok, [], tmp_path / "empty.bin")
    assert not (tmp_path / "empty.bin").exists()


def test_random_windows_are_slices_of_the_file_with_hf_label_conventions(tmp_path):
    file = positions(tmp_path, "a.bin", 1000)
    loader = TokenLoader([file], context_length=32, batch_size=8, seed=3)
    batch = loader.batch(5)
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert all(t.dtype == torch.int64 and t.shape == (8, 32) for t in batch.values())
    _, starts = loader.windows(5)
    for row, start in zip(batch["input_ids"], starts):
        assert row.tolist() == file.ids[start : start + 32].tolist()
    assert batch["attention_mask"].eq(1).all()
    assert torch.equal(batch["labels"], batch["input_ids"])  # HF causal LMs shift inside the model
    assert loader.tokens_per_batch == 256 and loader.windows_per_epoch == 1000 // 32 and len(loader) == 4


def test_sequential_mode_visits_every_window_once_per_epoch(tmp_path):
    file = positions(tmp_path, "a.bin", 1000)  # 15 full windows of 64 and one of 40
    for shuffle in (False, True):
        loader = TokenLoader([file], context_length=64, batch_size=4, mode="sequential", shuffle=shuffle, seed=1)
        assert loader.windows_per_epoch == 16 and len(loader) == 4
        epochs = [[int(s) for step in range(e * 4, e * 4 + 4) for s in loader.windows(step)[1]] for e in range(2)]
        for starts in epochs:
            assert sorted(starts) == list(range(0, 1000, 64))
        assert (epochs[0] == sorted(epochs[0])) != shuffle
        if shuffle:
            assert epochs[0] != epochs[1]  # a fresh order per epoch


def test_the_last_short_window_is_padded_and_masked(tmp_path):
    file = positions(tmp_path, "a.bin", 1000, first=1)  # no id 0, so padding is visible
    loader = TokenLoader([file], context_length=64, batch_size=4, mode="sequential", shuffle=False, pad_id=0)
    batch = loader.batch(3)
    last = {key: value[-1] for key, value in batch.items()}
    assert last["attention_mask"].tolist() == [1] * 40 + [0] * 24
    assert last["input_ids"].tolist() == list(range(961, 1001)) + [0] * 24
    assert last["labels"].tolist() == list(range(961, 1001)) + [IGNORE_INDEX] * 24
    assert batch["attention_mask"][:-1].eq(1).all()


@pytest.mark.parametrize("mode", ["random", "sequential"])
def test_the_batch_is_a_function_of_seed_and_step_only(tmp_path, mode):
    file = positions(tmp_path, "a.bin", 5000)
    first = TokenLoader([file], 32, 8, mode=mode, seed=7)
    fresh = TokenLoader([file], 32, 8, mode=mode, seed=7)
    first.batch(40)
    first.batch(2)  # calls in another order leave no state behind
    assert torch.equal(first.batch(9)["input_ids"], fresh.batch(9)["input_ids"])
    assert not torch.equal(first.batch(9)["input_ids"], first.batch(10)["input_ids"])
    other = TokenLoader([file], 32, 8, mode=mode, seed=8)
    assert not torch.equal(other.batch(9)["input_ids"], fresh.batch(9)["input_ids"])
    streamed = [batch["input_ids"] for _, batch in zip(range(3), first.iter_batches(start_step=9))]
    assert all(torch.equal(got, fresh.batch(step)["input_ids"]) for got, step in zip(streamed, (9, 10, 11)))


@pytest.mark.parametrize("mode", ["random", "sequential"])
def test_rank_slices_concatenate_to_the_global_batch(tmp_path, mode):
    loader = TokenLoader([positions(tmp_path, "a.bin", 3000)], 32, 8, mode=mode, seed=2)
    whole = loader.batch(6)
    for key in whole:
        parts = [loader.batch(6, rank=rank, world_size=4)[key] for rank in range(4)]
        assert all(part.shape == (2, 32) for part in parts)
        assert torch.equal(torch.cat(parts), whole[key])


def test_a_batch_size_not_divisible_by_world_size_is_refused(tmp_path):
    loader = TokenLoader([positions(tmp_path, "a.bin", 1000)], 32, 6)
    with pytest.raises(ValueError, match=r"batch_size 6.*world_size 4"):
        loader.batch(0, rank=0, world_size=4)
    with pytest.raises(ValueError, match="rank"):
        loader.batch(0, rank=3, world_size=3)


def test_windows_never_cross_files_and_files_count_by_length(tmp_path):
    small, large = positions(tmp_path, "a.bin", 1000), positions(tmp_path, "b.bin", 3000, first=10_000)
    for mode in ("random", "sequential"):
        loader = TokenLoader([small, large], 50, 8, mode=mode, seed=0)
        rows = torch.cat([loader.batch(step)["input_ids"] for step in range(100)])
        masks = torch.cat([loader.batch(step)["attention_mask"] for step in range(100)])
        for row, mask in zip(rows, masks):
            real = row[mask == 1]
            assert torch.equal(torch.diff(real), torch.ones(len(real) - 1, dtype=torch.int64))  # one slice of one file
        share = (rows[:, 0] >= 10_000).float().mean().item()
        assert 0.65 < share < 0.85  # the larger file holds three quarters of the windows


def test_token_ids_are_memory_mapped(tmp_path):
    positions(tmp_path, "a.bin", 500)
    loader = TokenLoader([tmp_path / "a.bin"], 16, 2)  # opened from the path
    assert isinstance(loader.files[0].ids, np.memmap)
    assert Path(loader.files[0].ids.filename) == (tmp_path / "a.bin").resolve()


def test_a_file_smaller_than_one_window_is_refused(tmp_path):
    file = positions(tmp_path, "tiny.bin", 64)
    with pytest.raises(CorpusError, match=r"tiny\.bin.*64 tokens.*64 \+ 1"):
        TokenLoader([file], context_length=64, batch_size=2)


def test_memory_stays_flat_while_streaming(tmp_path):
    table = streaming_rss(sizes=(200_000, 1_000_000), batches=20, context_length=64, batch_size=8, folder=tmp_path)
    assert table["corpus tokens"].tolist() == [200_000, 1_000_000]
    assert table["file MB"].tolist() == [0.4, 2.0]
    assert {"rss before MB", "rss peak MB", "rss growth MB", "read MB"} <= set(table.columns)
    assert (table["rss growth MB"] < table["file MB"].max() / 4).all()
