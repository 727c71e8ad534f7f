"""Text corpora for the tiny language model: documents from the standard library, a file, a folder or a glob.

Loads them deterministically (a seeded subset by size when asked), splits them by document and writes corpus folders.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import random
import re
import sysconfig
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from slmlab.errors import CorpusError
from slmlab.io import atomic_write_folder
from slmlab.tinylm.spec import MANIFEST_FILE

DEFAULT_SUFFIXES = (".py",)  # what the default corpus (the standard library) is made of
# Folders left out of the default corpus: installed packages and bytecode are not the standard library's source,
# and its test suites (about 19 MB, with deliberately broken encodings) would outweigh the library itself.
STDLIB_EXCLUDED_FOLDERS = frozenset({"site-packages", "dist-packages", "__pycache__", "test", "tests", "idle_test"})
GLOB_CHARACTERS = frozenset("*?[")
SNIFF_BYTES = 8192  # a NUL byte among the first this many bytes marks a file as binary

CorpusSpec = str | os.PathLike | Sequence[str | os.PathLike] | None


@dataclass(frozen=True)
class Document:
    """One document of a corpus: where it came from (a file path or URL) and its text."""

    source: str
    text: str

    @property
    def n_bytes(self) -> int:
        return len(self.text.encode("utf-8"))


class _Unusable(Exception):
    """A file that holds no usable text; the message says why (empty, binary, not UTF-8)."""

    def __init__(self, message: str, empty: bool = False) -> None:
        super().__init__(message)
        self.empty = empty


def default_corpus() -> Path:
    """The folder of the Python standard library's source: a corpus every machine has, offline."""
    return Path(sysconfig.get_paths()["stdlib"])


def load_documents(
    spec: CorpusSpec = None, max_bytes: int | None = None, seed: int = 0, suffixes: Sequence[str] | None = None
) -> list[Document]:
    """Read a corpus as one :class:`Document` per file, sorted by file path.

    ``spec`` is None (the standard library's ``.py`` files, without its test suites and installed packages),
    a text file, a folder (read recursively; hidden files and a top-level ``manifest.json`` are skipped, and the
    manifest's sources are restored), a glob pattern, or a list of those. ``suffixes`` keeps only files with those
    endings (default: every file, or ``.py`` for the standard library). ``max_bytes`` keeps a seeded random subset
    of the documents of at most that many UTF-8 bytes, chosen by file size so that only the chosen files are read.

    A file named explicitly that is empty or binary raises :class:`CorpusError` naming it; in a folder or a glob
    such files are skipped with a warning that counts them, and a folder or glob with nothing usable left raises
    :class:`CorpusError` naming it.
    """
    if max_bytes is not None and max_bytes < 1:
        raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
    groups = [_default_group(suffixes)] if spec is None else [_group(item, suffixes) for item in _spec_items(spec)]
    rng = random.Random(seed)
    documents: list[tuple[Path, Document]] = []
    budget, seen = max_bytes, set()
    for group in groups:
        files = [file for file in group.files if file.resolve() not in seen]  # a file two items name is read once
        seen.update(file.resolve() for file in files)
        files = files if budget is None else rng.sample(files, len(files))
        group_documents = _read_group(group, files, budget)
        if budget is not None:
            budget -= sum(document.n_bytes for _, document in group_documents)
        documents.extend(group_documents)
    if not documents:
        where = ", ".join(group.label for group in groups)
        raise CorpusError(f"No document of {where} fits in max_bytes={max_bytes}: every usable file is larger.")
    return [document for _, document in sorted(documents, key=lambda pair: str(pair[0]))]


def split_documents(
    documents: Sequence[Document], valid_fraction: float = 0.1, seed: int = 0
) -> tuple[list[Document], list[Document]]:
    """Split documents into (train, validation) by document, seeded; each side keeps the input order.

    With two documents or more each side gets at least one; a single document goes to training.
    """
    if not 0.0 < valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be between 0 and 1, got {valid_fraction}")
    count = len(documents)
    if count < 2:
        return list(documents), []
    n_valid = min(max(round(count * valid_fraction), 1), count - 1)
    valid_indices = set(random.Random(seed).sample(range(count), n_valid))
    train = [document for index, document in enumerate(documents) if index not in valid_indices]
    valid = [document for index, document in enumerate(documents) if index in valid_indices]
    return train, valid


def document_file_name(index: int, source: str) -> str:
    """A deterministic, readable file name for the ``index``-th document of a corpus folder."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", source).strip("-.")[-60:].strip("-.") or "document"
    return f"{index:05d}-{slug}.txt"


def file_digest(data: bytes) -> dict[str, object]:
    """The manifest's description of a file's content: its size in bytes and its SHA-256."""
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def write_corpus_folder(documents: Sequence[Document], folder: str | Path) -> Path:
    """Write one UTF-8 ``.txt`` file per document and a ``manifest.json`` (source, file, bytes, sha256), atomically.

    ``load_documents(folder)`` reads the documents back, in the same order and with their sources (the file
    names begin with the document's index).
    """

    def write(tmp: Path) -> None:
        entries = []
        for index, document in enumerate(documents):
            name = document_file_name(index, document.source)
            data = document.text.encode("utf-8")
            (tmp / name).write_bytes(data)
            entries.append({"source": document.source, "file": name, **file_digest(data)})
        manifest = {"documents": entries, "bytes": sum(entry["bytes"] for entry in entries)}
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    return atomic_write_folder(folder, write)


class _Group(NamedTuple):
    """The files one item of a corpus specification names."""

    label: str  # the file, folder or pattern, for messages
    explicit: bool  # a file named on its own: an unusable one is an error, not a skip
    files: list[Path]  # sorted
    sources: dict[Path, str]  # a corpus folder's manifest: file → original source or URL


def _spec_items(spec: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str | os.PathLike]:
    if isinstance(spec, (str, os.PathLike)):
        return [spec]
    if not spec:
        raise CorpusError("The corpus specification is an empty list: name at least one file, folder or glob.")
    return list(spec)


def _default_group(suffixes: Sequence[str] | None) -> _Group:
    root = default_corpus()
    return _Group(str(root), False, _folder_files(root, suffixes or DEFAULT_SUFFIXES, STDLIB_EXCLUDED_FOLDERS), {})


def _group(item: str | os.PathLike, suffixes: Sequence[str] | None) -> _Group:
    path = Path(item).expanduser()
    if path.is_file():
        return _Group(str(path), True, [path], {})
    if path.is_dir():
        files = _folder_files(path, suffixes, frozenset())
        if not files:
            raise CorpusError(f"The corpus folder {path} holds no files{_suffix_note(suffixes)}.")
        return _Group(str(path), False, files, _manifest_sources(path))
    if GLOB_CHARACTERS & set(str(item)):
        matches = sorted(Path(name) for name in glob.glob(str(path), recursive=True))
        files = [file for file in matches if file.is_file() and _has_suffix(file, suffixes) and file.name != MANIFEST_FILE]
        if not files:
            raise CorpusError(f"No file matches the corpus pattern {item}{_suffix_note(suffixes)}.")
        return _Group(str(item), False, files, {})
    raise CorpusError(f"The corpus {path} does not exist (expected a text file, a folder or a glob pattern).")


def _folder_files(root: Path, suffixes: Sequence[str] | None, excluded: frozenset[str]) -> list[Path]:
    files = []
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = [name for name in subfolders if name not in excluded and not name.startswith(".")]
        for name in names:
            if name.startswith(".") or not _has_suffix(Path(name), suffixes):
                continue
            if name == MANIFEST_FILE and Path(folder) == root:
                continue
            files.append(Path(folder) / name)
    return sorted(files)


def _has_suffix(path: Path, suffixes: Sequence[str] | None) -> bool:
    return suffixes is None or path.name.endswith(tuple(suffixes))


def _suffix_note(suffixes: Sequence[str] | None) -> str:
    return "" if suffixes is None else f" ending in {', '.join(suffixes)}"


def _read_group(group: _Group, files: list[Path], budget: int | None) -> list[tuple[Path, Document]]:
    """(file, document) for the usable ``files`` in that order; with a budget, only files that still fit are read.

    Empty files (a package's bare ``__init__.py``) are left out quietly; binary and undecodable ones with a warning.
    """
    documents, unusable, n_empty = [], [], 0
    for file in files:
        if budget is not None and file.stat().st_size > budget:
            continue  # a valid UTF-8 file has as many bytes on disk as its text has
        try:
            text = _read_text(file)
        except _Unusable as problem:
            if group.explicit:
                raise CorpusError(f"The corpus file {file} is {problem}.") from None
            n_empty += problem.empty
            if not problem.empty:
                unusable.append(f"{_relative(file, group.label)} ({problem})")
            continue
        document = Document(source=group.sources.get(file, str(file)), text=text)
        documents.append((file, document))
        if budget is not None:
            budget -= document.n_bytes
    examples = "; ".join(unusable[:3]) + ("; ..." if len(unusable) > 3 else "")
    if not documents and (unusable or n_empty):
        raise CorpusError(
            f"Nothing usable in the corpus {group.label}: of the {len(unusable) + n_empty} files read, "
            f"{n_empty} are empty and {len(unusable)} binary or not UTF-8{f' ({examples})' if examples else ''}."
        )
    if unusable:
        warnings.warn(
            f"Skipped {len(unusable)} of {len(files)} files of {group.label} that are binary or not UTF-8 ({examples}).",
            stacklevel=3,
        )
    return documents


def _relative(file: Path, label: str) -> str:
    return str(file.relative_to(label)) if file.is_relative_to(label) else str(file)


def _read_text(file: Path) -> str:
    data = file.read_bytes()
    if not data.strip():
        raise _Unusable("empty" if not data else f"empty ({len(data)} bytes of whitespace)", empty=True)
    if b"\x00" in data[:SNIFF_BYTES]:
        raise _Unusable(f"binary ({len(data)} bytes with NUL bytes)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _Unusable(f"binary or not UTF-8 ({len(data)} bytes, undecodable at byte {error.start})") from None


def _manifest_sources(folder: Path) -> dict[Path, str]:
    """File → original source (or URL) from a corpus folder's manifest, when it has a readable one."""
    manifest = folder / MANIFEST_FILE
    if not manifest.is_file():
        return {}
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
        entries = data.get("documents") or data.get("pages") or []
        return {folder / entry["file"]: entry.get("source") or entry["url"] for entry in entries}
    except (ValueError, KeyError, TypeError, AttributeError):
        return {}  # not a corpus manifest: the files keep their paths as sources
