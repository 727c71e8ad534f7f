"""Summaries of ACE results (Markdown and CSV) and the grid runner (model × task × mode from YAML)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from slmlab.ace.runs import AceConfig, AceRunError, config_from, default_run_dir, run_ace
from slmlab.io import atomic_write_text
from slmlab.metrics import token_f1

GROUP = ["model_id", "task_name", "mode", "epoch"]


def load_results(paths: str | Path | Sequence[str | Path]) -> pd.DataFrame:
    """Every ``results.csv`` under the given folders (or the given CSV files), in one frame."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    files = []
    for path in map(Path, paths):
        files += sorted(path.rglob("results.csv")) if path.is_dir() else [path]
    frames = [pd.read_csv(f, dtype={"sample_id": str, "gold": str, "pred": str}, keep_default_na=False) for f in files]
    if not frames:
        raise AceRunError(f"No results.csv under {', '.join(map(str, paths))}")
    frame = pd.concat(frames, ignore_index=True)
    if "epoch" not in frame:
        frame["epoch"] = 0
    frame["epoch"] = pd.to_numeric(frame["epoch"], errors="coerce").fillna(0).astype(int)
    frame["correct"] = frame["correct"].astype(str).str.lower() == "true"
    return frame


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    """Accuracy (%), token F1 (%), latency p50/p95/p99 (ms), samples and parse failures per
    model/task/mode/epoch."""
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


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (pandas + tabulate)."""
    return table.to_markdown(index=False)


def write_summary(table: pd.DataFrame, stem: str | Path) -> tuple[Path, Path]:
    """``<stem>.md`` and ``<stem>.csv``, written atomically."""
    stem = Path(stem)
    markdown = atomic_write_text(stem.with_suffix(".md"), to_markdown(table) + "\n")
    csv_path = atomic_write_text(stem.with_suffix(".csv"), table.to_csv(index=False))
    return markdown, csv_path


# --- grid -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GridCell:
    config: AceConfig
    run_dir: Path
    done: bool  # a finished run with the same settings is already on disk

    def describe(self) -> str:
        state = "done, skipped" if self.done else "to run"
        return f"{self.config.model_id} × {self.config.task} × {self.config.mode}: {state} ({self.run_dir})"


def _as_list(value, key: str, source: Path) -> list:
    if value is None:
        raise AceRunError(f"{source}: the grid needs a '{key}' list")
    return list(value) if isinstance(value, (list, tuple)) else [value]


def plan_grid(
    path: str | Path, limit: int | None = None, model_ids: Sequence[str] = (), root: str | Path | None = None
) -> list[GridCell]:
    """The cells of a grid file: ``models``, ``tasks`` and ``modes`` lists, plus any :class:`AceConfig`
    setting shared by all cells (``epochs``, ``seed``, ...). ``limit`` and ``model_ids`` filter."""
    import yaml

    path = Path(path)
    spec = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(spec, dict):
        raise AceRunError(f"{path}: a grid file is a mapping with models, tasks and modes")
    models = _as_list(spec.pop("models", None), "models", path)
    tasks = _as_list(spec.pop("tasks", None), "tasks", path)
    modes = _as_list(spec.pop("modes", ["baseline", "ace"]), "modes", path)
    root = spec.pop("out", None) if root is None else root
    if limit is not None:
        spec["limit"] = limit
    if model_ids:
        models = [m for m in models if m in model_ids]
    cells = []
    for model in models:
        for task in tasks:
            for mode in modes:
                config = config_from({**spec, "model_id": model, "task": task, "mode": mode})
                run_dir = default_run_dir(config, root)
                cells.append(GridCell(config, run_dir, finished(config, run_dir)))
    return cells


def finished(config: AceConfig, run_dir: Path) -> bool:
    """True when ``run_dir`` holds a completed run of exactly ``config``."""
    import json

    summary = run_dir / "summary.json"
    return summary.is_file() and json.loads(summary.read_text()).get("config") == asdict(config)


def run_grid(cells: Sequence[GridCell], progress: bool = True) -> list[Path]:
    """Run the cells not yet done, one model loaded at a time; returns the results CSVs of all cells."""
    from slmlab.models import load_model

    loaded: dict[tuple[str, str], object] = {}
    outputs = []
    for cell in cells:
        if cell.done:
            outputs.append(cell.run_dir / "results.csv")
            continue
        key = (cell.config.model_id, cell.config.backend)
        if key not in loaded:
            loaded.clear()  # keep one model in memory
            loaded[key] = load_model(cell.config.model_id, backend=cell.config.backend)
        outputs.append(run_ace(cell.config, cell.run_dir, model=loaded[key], progress=progress))
    return outputs
