"""Compare two artifacts trees file by file: which results files are byte-identical, which differ and where (the JSON
fields or CSV columns that changed), which exist on one side only. Used to check that a refactoring changed no figure.

Usage: ``python scripts/compare_trees.py BEFORE AFTER [--ignore-field seconds ...]``; exits 1 when a compared file
differs in a field that is not ignored (timings and dates differ on every run and are ignored by default). A file that
names its own tree (an absolute path) is compared with BEFORE's path read as AFTER's.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path

COMPARED = {".json", ".jsonl", ".csv", ".md", ".tex", ".txt", ".yaml"}  # results; pictures and notebooks are not figures
# fields that hold a clock reading, a duration, a memory high-water mark or a rate, so they differ from run to run
VOLATILE = (
    "seconds",
    "created",
    "made",
    "time",
    "_s",
    "per_second",
    "per_s",
    "tok_s",
    "rss",
    "memory",
    "energy",
    "date",
    "elapsed",
    "latency",
    "_ms",
    "throughput",
    "duration",
    "started",
    "finished",
    "timestamp",
    "wall",
)


EXACT_VOLATILE = {"ms", "available"}  # short keys: a span's milliseconds; RAM still free
SETS = {"target_modules"}  # PEFT writes a set: its order follows the process's hash seed


def volatile(key: str, extra: tuple[str, ...]) -> bool:
    key = key.lower()
    return key in EXACT_VOLATILE or key.endswith("(gib)") and "available" in key or any(p in key for p in (*VOLATILE, *extra))


def json_differences(before, after, extra: tuple[str, ...], where: str = "") -> Iterator[str]:
    if isinstance(before, dict) and isinstance(after, dict):
        for key in sorted(set(before) | set(after), key=str):
            if volatile(str(key), extra):
                continue
            if key not in before or key not in after:
                yield f"{where}{key}: only {'after' if key not in before else 'before'}"
            elif key in SETS and isinstance(before[key], list) and isinstance(after[key], list):
                if sorted(map(str, before[key])) != sorted(map(str, after[key])):
                    yield f"{where}{key}: {sorted(before[key])} → {sorted(after[key])}"
            else:
                yield from json_differences(before[key], after[key], extra, f"{where}{key}.")
    elif isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        for index, (b, a) in enumerate(zip(before, after)):
            yield from json_differences(b, a, extra, f"{where}{index}.")
    elif before != after:
        yield f"{where.rstrip('.')}: {str(before)[:60]!r} → {str(after)[:60]!r}"


def csv_differences(before: str, after: str, extra: tuple[str, ...]) -> Iterator[str]:
    rows_b, rows_a = list(csv.DictReader(io.StringIO(before))), list(csv.DictReader(io.StringIO(after)))
    if len(rows_b) != len(rows_a):
        yield f"{len(rows_b)} rows → {len(rows_a)} rows"
        return
    for index, (b, a) in enumerate(zip(rows_b, rows_a)):
        yield from (f"row {index}: {line}" for line in json_differences(b, a, extra))


def differences(path: Path, before: bytes, after: bytes, extra: tuple[str, ...]) -> list[str]:
    text_b, text_a = before.decode("utf-8", "replace"), after.decode("utf-8", "replace")
    try:
        if path.suffix == ".json":
            return list(json_differences(json.loads(text_b), json.loads(text_a), extra))
        if path.suffix == ".jsonl":
            lines_b, lines_a = text_b.splitlines(), text_a.splitlines()
            return list(json_differences([json.loads(x) for x in lines_b], [json.loads(x) for x in lines_a], extra))
        if path.suffix == ".csv":
            return list(csv_differences(text_b, text_a, extra))
    except ValueError as exc:
        return [f"unreadable: {exc}"]
    changed = [f"line {i}" for i, (b, a) in enumerate(zip(text_b.splitlines(), text_a.splitlines()), 1) if b != a]
    return changed or [f"{len(text_b.splitlines())} lines → {len(text_a.splitlines())} lines"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--ignore-field", action="append", default=[], help="a field-name part that may differ")
    parser.add_argument("--show", type=int, default=3, help="differences shown per file")
    args = parser.parse_args()
    extra = tuple(args.ignore_field)
    files = lambda root: {p.relative_to(root) for p in root.rglob("*") if p.is_file() and p.suffix in COMPARED}  # noqa: E731
    before, after = files(args.before), files(args.after)
    identical, same_figures, changed = [], [], {}
    for relative in sorted(before & after):
        old, new = (args.before / relative).read_bytes(), (args.after / relative).read_bytes()
        old = old.replace(str(args.before.resolve()).encode(), str(args.after.resolve()).encode())  # a tree names itself
        if old == new:
            identical.append(relative)
            continue
        found = differences(relative, old, new, extra)
        (changed.__setitem__(relative, found) if found else same_figures.append(relative))
    print(
        f"{len(identical)} byte-identical, {len(same_figures)} differing only in timings/dates, {len(changed)} changed, "
        f"{len(before - after)} only before, {len(after - before)} only after"
    )
    for relative in same_figures:
        print(f"  timings only: {relative}")
    for relative, found in changed.items():
        print(
            f"  CHANGED {relative}: "
            + "; ".join(found[: args.show])
            + (f" (+{len(found) - args.show})" if len(found) > args.show else "")
        )
    for relative in sorted(before - after):
        print(f"  only before: {relative}")
    for relative in sorted(after - before):
        print(f"  only after: {relative}")
    return 1 if changed or before != after else 0


if __name__ == "__main__":
    sys.exit(main())
