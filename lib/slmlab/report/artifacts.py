"""Reading the chapters' results files for chapter 09 (the report and the demos), one way: a file that is there
but half-written or from an older format raises :class:`UnreadableArtifact` naming the file and the field."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path


class UnreadableArtifact(Exception):
    """A results file that exists but cannot be read as its format says (half-written, older format)."""


def read_json(path: Path, relative: str) -> dict | list:
    """The JSON at ``path`` (named ``relative`` in messages)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise UnreadableArtifact(f"{relative}: not valid JSON at line {error.lineno} (half-written?)") from error


def field_at(relative: str, data, *path: str | int):
    """The field at ``path`` (keys and indices) of ``data`` read from ``relative``."""
    value = data
    for step in path:
        try:
            value = value[step]
        except (KeyError, IndexError, TypeError) as error:
            dotted = ".".join(str(p) for p in path)
            raise UnreadableArtifact(f"{relative}: no field {dotted} (a file from an older format?)") from error
    return value


def read_csv(path: Path, relative: str, columns: Sequence[str]) -> list[dict[str, str]]:
    """The CSV's rows; every name in ``columns`` must be one of its columns."""
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        rows, missing = list(reader), [c for c in columns if c not in (reader.fieldnames or ())]
    if missing:
        raise UnreadableArtifact(f"{relative}: no column {', '.join(missing)} (a file from an older format?)")
    return rows
