"""Chapter 07's data preparation: a corpus split by document, a BPE tokenizer trained on the training side, and
both sides encoded into memory-mapped token files — the folder :func:`slmlab.tinylm.training.train_lm` reads.

Folder layout (``data/lm/<name>/``): ``tokenizer/`` (a ``PreTrainedTokenizerFast``), ``train.bin`` and
``valid.bin`` (token ids, each with a ``.json`` sidecar), ``valid.jsonl`` (the held-out documents as text, for
bits per byte and continuations) and ``summary.json`` (sizes, settings, bytes per token).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

from slmlab.io import atomic_folder, atomic_write_json
from slmlab.settings import artifacts_root, quick_mode
from slmlab.tinylm import spec
from slmlab.tinylm.corpus import Document, load_documents, split_documents
from slmlab.tinylm.spec import PrepareConfig as PrepareConfig
from slmlab.tinylm.tokenizer import bytes_per_token, train_tokenizer
from slmlab.tinylm.tokens import TokenFile, TokenLoader, encode_documents

SPLITS = ("train", "valid")


def default_data_dir(quick: bool | None = None, name: str = spec.CORPUS) -> Path:
    """``data/lm/<name>`` (under ``quick/`` in quick mode)."""
    return spec.data_dir(artifacts_root(quick), name)


def prepare_corpus(
    corpus: str | Path | Sequence[str | Path] | None = None,
    out_dir: str | Path | None = None,
    config: PrepareConfig | None = None,
    progress: bool = True,
) -> PreparedData:
    """Load ``corpus`` (None: the standard library's source), split it, train the tokenizer, encode both splits.

    The folder is written atomically: a half-prepared corpus is never read by a trainer.
    """
    config = config or (PrepareConfig.quick() if quick_mode() else PrepareConfig())
    out_dir = Path(out_dir) if out_dir else default_data_dir()
    documents = load_documents(corpus, max_bytes=config.max_bytes, seed=config.seed)
    train_docs, valid_docs = split_corpus(documents, config.valid_fraction, config.seed)
    tokenizer = train_tokenizer(
        (doc.text for doc in train_docs), vocab_size=config.vocab_size, min_frequency=config.min_frequency, progress=progress
    )
    with atomic_folder(out_dir) as folder:
        tokenizer.save_pretrained(folder / "tokenizer")
        files = {
            split: encode_documents(tokenizer, docs, folder / f"{split}.bin", progress=progress)
            for split, docs in zip(SPLITS, (train_docs, valid_docs))
        }
        _write_documents(valid_docs, folder / spec.VALID_DOCUMENTS_FILE)
        summary = {
            "corpus": str(corpus) if corpus is not None else "python standard library",
            "documents": {"train": len(train_docs), "valid": len(valid_docs)},
            "bytes": {split: sum(doc.n_bytes for doc in docs) for split, docs in zip(SPLITS, (train_docs, valid_docs))},
            "tokens": {split: files[split].tokens for split in SPLITS},
            "bytes_per_token": round(bytes_per_token(tokenizer, [doc.text for doc in valid_docs]), 3),
            "vocab_size": len(tokenizer),
            "config": asdict(config),
        }
        atomic_write_json(folder / spec.DATA_SUMMARY_FILE, summary)
    return PreparedData(out_dir)


def split_corpus(
    documents: Sequence[Document], valid_fraction: float = 0.1, seed: int = 0, min_documents: int = 10
) -> tuple[list[Document], list[Document]]:
    """Train and validation documents: a seeded split by document, or — for a corpus of fewer than
    ``min_documents`` documents, such as one book — the last ``valid_fraction`` of each document, cut at a line
    break, held out (as nanoGPT holds out the tail of its text)."""
    if len(documents) >= min_documents:
        return split_documents(documents, valid_fraction, seed)
    train, valid = [], []
    for doc in documents:
        tail = int(len(doc.text) * (1 - valid_fraction))
        cut = doc.text.rfind("\n", 0, tail) + 1 or tail  # at the last line break before the tail, if there is one
        train.append(Document(doc.source, doc.text[:cut]))
        valid.append(Document(f"{doc.source} (last {valid_fraction:.0%})", doc.text[cut:]))
    return train, [doc for doc in valid if doc.text.strip()]


@dataclass(frozen=True)
class PreparedData:
    """A prepared token folder, read back."""

    folder: Path

    def __post_init__(self) -> None:
        if not (self.folder / spec.DATA_SUMMARY_FILE).is_file():
            raise FileNotFoundError(
                f"{self.folder} is not a prepared corpus (no {spec.DATA_SUMMARY_FILE}); "
                "run `slmlab lm tokenizer` or slmlab.tinylm.prepare_corpus first"
            )

    @property
    def summary(self) -> dict:
        return json.loads((self.folder / spec.DATA_SUMMARY_FILE).read_text(encoding="utf-8"))

    def tokenizer(self, model_max_length: int | None = None):
        from transformers import AutoTokenizer

        options = {"model_max_length": model_max_length} if model_max_length else {}
        return AutoTokenizer.from_pretrained(self.folder / "tokenizer", **options)

    def token_file(self, split: str) -> TokenFile:
        return TokenFile.open(self.folder / f"{split}.bin")

    @cached_property
    def pad_id(self) -> int:
        return self.tokenizer().pad_token_id

    def loader(
        self, split: str, context_length: int, batch_size: int, mode: str = "random", seed: int = 0, shuffle: bool = True
    ) -> TokenLoader:
        return TokenLoader(
            [self.token_file(split)], context_length, batch_size, mode=mode, shuffle=shuffle, seed=seed, pad_id=self.pad_id
        )

    def valid_documents(self) -> list[Document]:
        lines = (self.folder / spec.VALID_DOCUMENTS_FILE).read_text(encoding="utf-8").splitlines()
        return [Document(**json.loads(line)) for line in lines if line.strip()]

    def fingerprint(self) -> dict:
        """What identifies the data for a resume check: token counts, vocabulary and settings."""
        summary = self.summary
        return {"tokens": summary["tokens"], "vocab_size": summary["vocab_size"], "config": summary["config"]}


def _write_documents(documents: Sequence[Document], path: Path) -> None:
    lines = "".join(json.dumps({"source": doc.source, "text": doc.text}) + "\n" for doc in documents)
    path.write_text(lines, encoding="utf-8")
