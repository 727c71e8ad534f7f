"""Corpus loading for chapter 07: the standard library by default, files, folders and globs, seeded splits by
document, clear errors for empty and binary input, and corpus folders that read back as they were written."""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from pathlib import Path

import pytest

from slmlab.errors import CorpusError
from slmlab.tinylm.corpus import (
    STDLIB_EXCLUDED_FOLDERS,
    Document,
    default_corpus,
    load_documents,
    split_documents,
    write_corpus_folder,
)
from slmlab.tinylm.spec import MANIFEST_FILE

BINARY = bytes(range(256)) * 4


def _text_folder(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("alpha text\n", encoding="utf-8")
    (root / "b.md").write_text("beta text\n", encoding="utf-8")
    (root / "sub" / "c.txt").write_text("gamma text\n", encoding="utf-8")
    (root / ".hidden.txt").write_text("never read\n", encoding="utf-8")
    return root


def test_default_corpus_is_the_standard_library_source():
    documents = load_documents(max_bytes=300_000, seed=0)
    stdlib = default_corpus()
    assert documents and sum(document.n_bytes for document in documents) <= 300_000
    for document in documents:
        path = Path(document.source)
        assert path.suffix == ".py" and path.is_relative_to(stdlib)
        assert not STDLIB_EXCLUDED_FOLDERS & set(path.relative_to(stdlib).parts[:-1])
        assert document.text and document.n_bytes == len(document.text.encode("utf-8"))
    assert [document.source for document in documents] == sorted(document.source for document in documents)


def test_max_bytes_subset_is_seeded():
    first = load_documents(max_bytes=200_000, seed=3)
    assert first == load_documents(max_bytes=200_000, seed=3)
    assert [d.source for d in first] != [d.source for d in load_documents(max_bytes=200_000, seed=4)]


def test_file_folder_glob_and_list_specs(tmp_path):
    root = _text_folder(tmp_path / "corpus")
    single = load_documents(root / "a.txt")
    assert single == [Document(str(root / "a.txt"), "alpha text\n")]
    folder = load_documents(root)
    assert [Path(d.source).name for d in folder] == ["a.txt", "b.md", "c.txt"]
    assert [d.text for d in folder] == ["alpha text\n", "beta text\n", "gamma text\n"]
    assert [Path(d.source).name for d in load_documents(str(root / "**" / "*.txt"))] == ["a.txt", "c.txt"]
    assert [Path(d.source).name for d in load_documents(root, suffixes=[".md"])] == ["b.md"]
    both = load_documents([root / "b.md", str(root / "sub" / "*.txt"), root / "b.md"])
    assert [Path(d.source).name for d in both] == ["b.md", "c.txt"]


def test_missing_path_and_unmatched_glob_are_errors(tmp_path):
    with pytest.raises(CorpusError, match="does not exist"):
        load_documents(tmp_path / "nowhere.txt")
    with pytest.raises(CorpusError, match=r"No file matches"):
        load_documents(str(tmp_path / "*.txt"))


def test_split_is_seeded_and_by_document():
    documents = [Document(f"doc{index}", f"text {index}\n") for index in range(40)]
    train, valid = split_documents(documents, valid_fraction=0.25, seed=1)
    assert len(valid) == 10 and len(train) == 30
    assert not {d.source for d in train} & {d.source for d in valid}
    assert sorted(train + valid, key=documents.index) == documents
    assert (train, valid) == split_documents(documents, valid_fraction=0.25, seed=1)
    assert valid != split_documents(documents, valid_fraction=0.25, seed=2)[1]


def test_split_keeps_one_document_on_each_side():
    two = [Document("a", "x\n"), Document("b", "y\n")]
    train, valid = split_documents(two, valid_fraction=0.01)
    assert len(train) == 1 and len(valid) == 1
    assert split_documents(two[:1]) == (two[:1], [])
    with pytest.raises(ValueError, match="valid_fraction"):
        split_documents(two, valid_fraction=1.0)


def test_empty_and_binary_files_are_errors_naming_the_file(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    binary = tmp_path / "blob.txt"
    binary.write_bytes(BINARY)
    latin = tmp_path / "latin.txt"
    latin.write_bytes("café".encode("latin-1"))
    with pytest.raises(CorpusError, match=r"empty\.txt.*empty"):
        load_documents(empty)
    with pytest.raises(CorpusError, match=r"blob\.txt.*binary"):
        load_documents(binary)
    with pytest.raises(CorpusError, match=r"latin\.txt.*not UTF-8"):
        load_documents(latin)


def test_folder_of_binary_files_is_an_error_naming_the_folder(tmp_path):
    folder = tmp_path / "blobs"
    folder.mkdir()
    (folder / "one.bin").write_bytes(BINARY)
    (folder / "two.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (folder / "empty.txt").write_bytes(b"")
    with pytest.raises(CorpusError, match=rf"{re.escape(str(folder))}.*3 files read.*1 are empty and 2 binary"):
        load_documents(folder)
    empty_folder = tmp_path / "nothing"
    empty_folder.mkdir()
    with pytest.raises(CorpusError, match=rf"{re.escape(str(empty_folder))} holds no files"):
        load_documents(empty_folder)


def test_binary_files_in_a_folder_are_skipped_with_a_warning(tmp_path):
    folder = _text_folder(tmp_path / "mixed")
    (folder / "image.png").write_bytes(BINARY)
    with pytest.warns(UserWarning, match=r"Skipped 1 of 4 files.*image\.png"):
        documents = load_documents(folder)
    assert len(documents) == 3


def test_max_bytes_smaller_than_every_file_is_an_error(tmp_path):
    folder = _text_folder(tmp_path / "small")
    with pytest.raises(CorpusError, match="max_bytes=3"):
        load_documents(folder, max_bytes=3)


def test_write_corpus_folder_round_trip(tmp_path):
    documents = [
        Document("https://example.invalid/a?page=1", "première page\n"),
        Document("/some/where/b.py", "print('b')\n"),
        Document("c", "third\n\nwith lines\n"),
    ]
    folder = write_corpus_folder(documents, tmp_path / "out")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the manifest is not read as a document
        assert load_documents(folder) == documents
    manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
    assert [entry["source"] for entry in manifest["documents"]] == [d.source for d in documents]
    for entry in manifest["documents"]:
        data = (folder / entry["file"]).read_bytes()
        assert entry["bytes"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert sorted(path.name for path in folder.iterdir()) == sorted([MANIFEST_FILE] + [e["file"] for e in manifest["documents"]])
