"""Summaries of ACE results (Markdown and CSV): per epoch, per test split (exact match, token F1, MiniLM
similarity, parse failures) and baseline vs ACE per domain and split."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from slmlab.ace.spec import RESULTS_FILE, STATS_FILE, SUMMARY_FILE, AceRunError
from slmlab.io import atomic_write_text
from slmlab.metrics import token_f1

GROUP = ["model_id", "task_name", "mode", "epoch"]
SPLIT_GROUP = ["model_id", "task_name", "split", "mode", "epoch"]


def load_results(paths: str | Path | Sequence[str | Path]) -> pd.DataFrame:
    """Every results file (``results.csv``) under the given folders (or the given CSV files), in one frame."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    files = []
    for path in map(Path, paths):
        files += sorted(path.rglob(RESULTS_FILE)) if path.is_dir() else [path]
    frames = [pd.read_csv(f, dtype={"sample_id": str, "gold": str, "pred": str}, keep_default_na=False) for f in files]
    if not frames:
        raise AceRunError(f"No {RESULTS_FILE} under {', '.join(map(str, paths))}")
    frame = pd.concat(frames, ignore_index=True)
    if "epoch" not in frame:
        frame["epoch"] = 0
    frame["epoch"] = pd.to_numeric(frame["epoch"], errors="coerce").fillna(0).astype(int)
    frame["correct"] = frame["correct"].astype(str).str.lower() == "true"
    if "split" not in frame:  # results written before runs had test splits
        frame["split"] = "test"
    if "token_f1" not in frame:
        frame["token_f1"] = [token_f1(str(p), str(g)) for p, g in zip(frame["pred"], frame["gold"])]
    frame["token_f1"] = pd.to_numeric(frame["token_f1"], errors="coerce")
    frame["semantic"] = pd.to_numeric(frame["semantic"], errors="coerce") if "semantic" in frame else float("nan")
    return frame


def task_label(task_name: str, split: str) -> str:
    """One name per task and test split: ``finance/transfer``; a task file's only split keeps the plain name."""
    return task_name if split in ("test", "") else f"{task_name}/{split}"


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    """Accuracy (%), token F1 (%), latency p50/p95/p99 (ms), samples and parse failures per
    model/task/mode/epoch; each test split of a domain counts as a task of its own (``finance/transfer``)."""
    frame = frame.assign(task_name=[task_label(t, s) for t, s in zip(frame["task_name"], frame["split"])])
    latency = frame.groupby(GROUP)["latency_ms"]
    frame = frame.assign(f1=[token_f1(str(p), str(g)) for p, g in zip(frame["pred"], frame["gold"])])
    table = pd.DataFrame(
        {
            "samples": frame.groupby(GROUP)["sample_id"].count(),
            "accuracy": (100 * frame.groupby(GROUP)["correct"].mean()).round(1),
            "token_f1": (100 * frame.groupby(GROUP)["f1"].mean()).round(1),
            "latency_p50_ms": latency.quantile(0.50).round(1),
            "latency_p95_ms": latency.quantile(0.95).round(1),
            "latency_p99_ms": latency.quantile(0.99).round(1),
        }
    )
    if "parse" in frame:
        table["parse_failures"] = frame.assign(failed=frame["parse"] == "failed").groupby(GROUP)["failed"].sum()
    return table.reset_index()


def split_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per model/task/split/mode/epoch: samples, exact match (%), token F1 (%), semantic similarity (%, MiniLM
    cosine between answer and gold: partial credit) and the Generator's parse-failure rate (%)."""
    groups = frame.assign(failed=frame["parse"] == "failed").groupby(SPLIT_GROUP)
    table = pd.DataFrame(
        {
            "samples": groups["sample_id"].count(),
            "exact_match": (100 * groups["correct"].mean()).round(1),
            "token_f1": (100 * groups["token_f1"].mean()).round(1),
            "semantic": (100 * groups["semantic"].mean()).round(1),
            "parse_failure_rate": (100 * groups["failed"].mean()).round(1),
        }
    )
    return table.reset_index()


def reflection_failure_rates(run_dirs: Sequence[str | Path]) -> dict[str, float | None]:
    """Task name → share (%) of the Reflector's replies that could not be parsed, over all epochs of a run."""
    rates = {}
    for run_dir in map(Path, run_dirs):
        task = json.loads((run_dir / SUMMARY_FILE).read_text())["task_name"]
        parses = [e.get("reflection_parses", {}) for e in json.loads((run_dir / STATS_FILE).read_text()).values()]
        total = sum(sum(p.values()) for p in parses)
        rates[task] = round(100 * sum(p.get("failed", 0) for p in parses) / total, 1) if total else None
    return rates


def baseline_vs_ace_by_split(table: pd.DataFrame, run_dirs: Sequence[str | Path] = ()) -> pd.DataFrame:
    """One row per model, task and test split of the ACE runs in a :func:`split_summary` table: exact match,
    token F1 and semantic similarity at epoch 0 (no playbook) and after the last epoch, the gain in points, and
    (with ``run_dirs``) the Reflector's parse-failure rate."""
    rates = reflection_failure_rates(run_dirs) if run_dirs else {}
    rows = []
    for (model, task, split), group in table[table["mode"] != "baseline"].groupby(["model_id", "task_name", "split"]):
        group = group.sort_values("epoch")
        first, last = group.iloc[0], group.iloc[-1]
        row = {
            "model_id": model,
            "task": task,
            "split": split,
            "samples": int(last["samples"]),
            "epoch": int(last["epoch"]),
            "baseline_em": first["exact_match"],
            "ace_em": last["exact_match"],
            "gain_points": round(last["exact_match"] - first["exact_match"], 1),
            "baseline_f1": first["token_f1"],
            "ace_f1": last["token_f1"],
            "baseline_semantic": first["semantic"],
            "ace_semantic": last["semantic"],
            "parse_failure_rate": last["parse_failure_rate"],
        }
        if rates:
            row["reflection_parse_failure_rate"] = rates.get(task)
        rows.append(row)
    return pd.DataFrame(rows)


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (pandas + tabulate)."""
    return table.to_markdown(index=False)


def write_summary(table: pd.DataFrame, stem: str | Path) -> tuple[Path, Path]:
    """``<stem>.md`` and ``<stem>.csv``, written atomically."""
    stem = Path(stem)
    markdown = atomic_write_text(stem.with_suffix(".md"), to_markdown(table) + "\n")
    csv_path = atomic_write_text(stem.with_suffix(".csv"), table.to_csv(index=False))
    return markdown, csv_path
