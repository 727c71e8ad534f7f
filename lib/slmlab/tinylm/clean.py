"""Cleaning a corpus before tokenizer and model training: normalization, length and non-text filters, deduplication.

Each step is counted (documents and bytes in and out) in a report table, and every removed document keeps its reason.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import pandas as pd
from datasketch import MinHash, MinHashLSH

from slmlab.tinylm.corpus import Document
from slmlab.tinylm.spec import CleanConfig as CleanConfig

REPORT_COLUMNS = ("step", "documents_in", "documents_out", "bytes_in", "bytes_out", "removed")
REPLACEMENT_CHARACTER = "\ufffd"  # what a decoder leaves for bytes it could not read


@dataclass
class CleanResult:
    """The kept documents (in input order), one report row per step and the removed (source, reason) pairs."""

    documents: list[Document]
    report: pd.DataFrame
    removed: list[tuple[str, str]] = field(default_factory=list)


Step = Callable[[list[Document], CleanConfig], tuple[list[Document], list[tuple[str, str]]]]


def clean_corpus(documents: Sequence[Document], config: CleanConfig | None = None, **overrides: object) -> CleanResult:
    """Run the cleaning steps in order: normalize, length, non-text, exact duplicates, near duplicates.

    ``overrides`` replace fields of ``config`` (``clean_corpus(docs, min_chars=10)``). Deterministic for a seed.
    """
    config = replace(config or CleanConfig(), **overrides)
    current, rows, removed = list(documents), [], []
    for name, step in STEPS:
        kept, dropped = step(current, config)
        rows.append(
            {
                "step": name,
                "documents_in": len(current),
                "documents_out": len(kept),
                "bytes_in": _total_bytes(current),
                "bytes_out": _total_bytes(kept),
                "removed": len(dropped),
            }
        )
        removed.extend(dropped)
        current = kept
    return CleanResult(documents=current, report=pd.DataFrame(rows, columns=list(REPORT_COLUMNS)), removed=removed)


def clean_text(text: str, config: CleanConfig | None = None) -> str:
    """Unicode normalization, ``\\n`` line endings, no trailing whitespace, at most ``max_blank_lines`` blank lines."""
    config = config or CleanConfig()
    text = unicodedata.normalize(config.unicode_form, text).replace("\r\n", "\n").replace("\r", "\n")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    text = re.sub(r"\n{%d,}" % (config.max_blank_lines + 2), "\n" * (config.max_blank_lines + 1), text)
    text = text.strip("\n")
    return text + "\n" if text else ""


def text_fractions(text: str) -> dict[str, float]:
    """Shares of printable-or-whitespace characters, letters and replacement characters in ``text``."""
    count = max(len(text), 1)
    return {
        "printable": sum(char.isprintable() or char.isspace() for char in text) / count,
        "alpha": sum(char.isalpha() for char in text) / count,
        "replacement": text.count(REPLACEMENT_CHARACTER) / count,
    }


def word_shingles(text: str, size: int) -> set[str]:
    """The set of runs of ``size`` consecutive words of ``text`` (the whole text when it has fewer words)."""
    words = text.split()
    if len(words) <= size:
        return {" ".join(words)}
    return {" ".join(words[start : start + size]) for start in range(len(words) - size + 1)}


def _normalize(documents: list[Document], config: CleanConfig) -> tuple[list[Document], list[tuple[str, str]]]:
    kept, removed = [], []
    for document in documents:
        text = clean_text(document.text, config)
        if text:
            kept.append(Document(source=document.source, text=text))
        else:
            removed.append((document.source, "empty after normalization"))
    return kept, removed


def _length(documents: list[Document], config: CleanConfig) -> tuple[list[Document], list[tuple[str, str]]]:
    kept, removed = [], []
    for document in documents:
        size = len(document.text)
        if size < config.min_chars:
            removed.append((document.source, f"too short ({size} < {config.min_chars} characters)"))
        elif size > config.max_chars:
            removed.append((document.source, f"too long ({size} > {config.max_chars} characters)"))
        else:
            kept.append(document)
    return kept, removed


def _non_text(documents: list[Document], config: CleanConfig) -> tuple[list[Document], list[tuple[str, str]]]:
    kept, removed = [], []
    for document in documents:
        problem = _non_text_problem(text_fractions(document.text), config)
        if problem:
            removed.append((document.source, problem))
        else:
            kept.append(document)
    return kept, removed


def _non_text_problem(fractions: dict[str, float], config: CleanConfig) -> str | None:
    if fractions["printable"] < config.min_printable_fraction:
        return f"non-text ({fractions['printable']:.0%} printable < {config.min_printable_fraction:.0%})"
    if fractions["alpha"] < config.min_alpha_fraction:
        return f"non-text ({fractions['alpha']:.0%} letters < {config.min_alpha_fraction:.0%})"
    if fractions["replacement"] > config.max_replacement_fraction:
        return f"non-text ({fractions['replacement']:.1%} replacement characters > {config.max_replacement_fraction:.1%})"
    return None


def _exact_duplicates(documents: list[Document], config: CleanConfig) -> tuple[list[Document], list[tuple[str, str]]]:
    kept, removed, first_source = [], [], {}
    for document in documents:
        digest = hashlib.sha256(document.text.encode("utf-8")).hexdigest()
        if digest in first_source:
            removed.append((document.source, f"exact duplicate of {first_source[digest]}"))
        else:
            first_source[digest] = document.source
            kept.append(document)
    return kept, removed


def _near_duplicates(documents: list[Document], config: CleanConfig) -> tuple[list[Document], list[tuple[str, str]]]:
    """Keep each document unless MinHash LSH finds an earlier kept one at least ``near_duplicate_threshold`` alike.

    LSH only proposes candidates; the MinHash estimate of the Jaccard similarity decides.
    """
    try:
        index = MinHashLSH(threshold=config.near_duplicate_threshold, num_perm=config.num_perm)
    except ValueError as error:
        raise ValueError(
            f"near_duplicate_threshold={config.near_duplicate_threshold} does not work with "
            f"num_perm={config.num_perm} ({error}): lower the threshold or raise num_perm."
        ) from None
    signatures: dict[str, MinHash] = {}
    kept, removed = [], []
    for position, document in enumerate(documents):
        signature = MinHash(num_perm=config.num_perm, seed=config.seed)
        signature.update_batch([shingle.encode("utf-8") for shingle in word_shingles(document.text, config.shingle_words)])
        match = _closest(signature, index.query(signature), signatures, config.near_duplicate_threshold)
        if match is not None:
            removed.append(
                (
                    document.source,
                    f"near duplicate of {documents[int(match)].source} (similarity {signature.jaccard(signatures[match]):.2f})",
                )
            )
            continue
        key = str(position)
        index.insert(key, signature)
        signatures[key] = signature
        kept.append(document)
    return kept, removed


def _closest(signature: MinHash, candidates: list[str], signatures: dict[str, MinHash], threshold: float) -> str | None:
    scored = sorted((-signature.jaccard(signatures[key]), int(key)) for key in candidates)
    return str(scored[0][1]) if scored and -scored[0][0] >= threshold else None


def _total_bytes(documents: Sequence[Document]) -> int:
    return sum(document.n_bytes for document in documents)


STEPS: tuple[tuple[str, Step], ...] = (
    ("normalize", _normalize),
    ("length", _length),
    ("non-text", _non_text),
    ("exact duplicates", _exact_duplicates),
    ("near duplicates", _near_duplicates),
)
