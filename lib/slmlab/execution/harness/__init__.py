"""The programs the chapter 08 scorer runs in the sandbox as main.py, read as text and never imported by slmlab:
the candidate's side and the trusted checker's side of a check task, and the typed-values codec both of them use."""

from __future__ import annotations

import functools
import json
import secrets
from pathlib import Path

HERE = Path(__file__).resolve().parent


@functools.lru_cache(maxsize=None)
def harness_source(name: str) -> str:
    """The text of ``<name>.py`` in this folder (``candidate``, ``checker`` or ``typed_values``), read once."""
    return (HERE / f"{name}.py").read_text(encoding="utf-8")


def new_frame() -> str:
    """A fresh per-run token that starts each line a harness writes for the parent (it tells them from prints)."""
    return "slmlab-result-" + secrets.token_hex(16)


def split_framed(stdout: str, frame: str) -> tuple[list[str], str]:
    """(the payloads of the lines that start with the frame, the rest of the output: the program's own)."""
    prefix, payloads, own = frame + " ", [], []
    for line in stdout.split("\n"):
        if line.startswith(prefix):
            payloads.append(line[len(prefix) :])
        elif line:
            own.append(line)
    return payloads, "\n".join(own)


def in_order(record: dict, index: int) -> bool:
    """Whether a decoded result line is the ``index``-th one: {"i": index, "value": ...} or {"i": index, "error": ...}."""
    return type(record.get("i")) is int and record["i"] == index and set(record) in ({"i", "value"}, {"i", "error"})


def _reject(value: str) -> None:
    raise ValueError(f"{value} is not plain JSON")


def decode_records(payloads: list[str], truncated: bool) -> list[dict] | None:
    """Decoded result lines, None when one is not a plain JSON object (a cut last line is dropped instead)."""
    records = []
    for number, payload in enumerate(payloads):
        try:
            record = json.loads(payload, parse_constant=_reject)
        except ValueError:
            if truncated and number == len(payloads) - 1:
                break
            return None
        if not isinstance(record, dict):
            return None
        records.append(record)
    return records
