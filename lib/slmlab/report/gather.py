"""Chapter 09's gathering: every lever's figures read back from the artifacts on disk, each with where it came from.

Entry point: :func:`gather`. A section whose file is missing says "not run" and gives the command that makes it;
one whose file is half-written or from an older format says so, and the other sections still come. No number is
made up: each :class:`Number` names its file, its field and when the file was made.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from slmlab import spec as core
from slmlab.ace import spec as ace
from slmlab.lora import spec as lora
from slmlab.mcts import spec as mcts
from slmlab.report.artifacts import UnreadableArtifact as _Unreadable
from slmlab.report.artifacts import field_at, read_csv, read_json
from slmlab.rl import spec as rl
from slmlab.tinylm import spec as lm

NOT_RUN, OK, UNREADABLE = "not run", "ok", "unreadable"


@dataclass(frozen=True)
class Number:
    """One figure of the report and its provenance (``source`` is relative to the artifacts root)."""

    label: str
    value: float | int | str
    source: str
    field: str
    created: str
    chart: str = ""  # the report's figure plots a number with a chart: one panel per chart, bars by group and series
    group: str = ""
    series: str = ""


@dataclass
class Section:
    key: str
    title: str
    command: str
    status: str = OK
    problem: str = ""
    numbers: list[Number] = field(default_factory=list)


@dataclass
class _Reader:
    """Reads JSON results under ``root`` and records every number it hands out."""

    root: Path
    section: Section

    def relative(self, path: Path) -> str:
        """A path of the tree as the report names it: relative to the root, with forward slashes."""
        return path.relative_to(self.root).as_posix()

    def load(self, relative: str) -> dict | list | None:
        path = self.root / relative
        return read_json(path, relative) if path.is_file() else None

    get = staticmethod(field_at)  # the field at a path of keys and indices, or UnreadableArtifact naming it

    def load_csv(self, relative: str, columns: tuple[str, ...]) -> list[dict[str, str]] | None:
        """The rows of a CSV results file, or None when it is missing; :class:`UnreadableArtifact` without
        ``columns`` or rows."""
        path = self.root / relative
        if not path.is_file():
            return None
        rows = read_csv(path, relative, columns)
        if not rows:
            raise _Unreadable(f"{relative}: no rows (half-written?)")
        return rows

    def number(self, label: str, relative: str, data, *path: str | int, chart: str = "", group: str = "", series: str = ""):
        """:meth:`get`, recorded as a figure of the section with its provenance (and where it goes in the figure)."""
        value = self.get(relative, data, *path)
        self.record(
            Number(
                label, value, relative, ".".join(str(p) for p in path), _created(self.root / relative, data), chart, group, series
            )
        )
        return value

    def cell(self, label: str, relative: str, row: dict[str, str], key: str, column: str, **chart: str):
        """One CSV cell as a figure: its field reads ``column where key=value``."""
        raw = row[column]
        try:
            value: float | int | str = int(raw) if raw.lstrip("-").isdigit() else float(raw)
        except ValueError:
            value = raw
        self.record(
            Number(label, value, relative, f"{column} where {key}={row[key]}", _created(self.root / relative, None), **chart)
        )
        return value

    def record(self, number: Number) -> None:
        self.section.numbers.append(number)


def _created(path: Path, data) -> str:
    """The file's own ``created`` field when it has one, else its modification time (UTC, ISO 8601)."""
    if isinstance(data, dict) and isinstance(data.get("created"), str):
        return data["created"]
    stamp = dt.datetime.fromtimestamp(path.stat().st_mtime, tz=dt.timezone.utc)
    return stamp.isoformat(timespec="seconds")


ENVIRONMENT_FIGURES = (
    ("model", ("model", "model")),
    ("parameters", ("model", "parameters")),
    ("backend", ("model", "backend")),
    ("device", ("model", "device")),
    ("python", ("environment", "python")),
    ("cpu cores", ("environment", "cpu cores")),
    ("RAM total (GiB)", ("environment", "RAM total (GiB)")),
    ("CUDA", ("environment", "CUDA")),
    ("torch", ("environment", "torch version")),
    ("transformers", ("environment", "transformers version")),
)


def _setup(read: _Reader, source: str, data: dict) -> None:
    for label, path in ENVIRONMENT_FIGURES:
        read.number(label, source, data, *path)


def _data(read: _Reader) -> bool:
    counts, stats, manifest = (read.relative(f(read.root)) for f in (lora.counts_file, lora.stats_file, lora.manifest_file))
    pattern_rows = read.load_csv(counts, ("category", "patterns", "paraphrases"))
    split_rows = read.load_csv(stats, ("category", "train", "valid", "test"))
    data = read.load(manifest)
    if pattern_rows is None and split_rows is None and data is None:
        return False
    for row in pattern_rows or []:
        read.cell(f"{row['category']} patterns", counts, row, "category", "patterns")
    for row in split_rows or []:
        for split in ("train", "valid", "test"):
            chart = {"chart": "rows per split", "group": row["category"], "series": split}
            read.cell(
                f"{row['category']} {split} rows", stats, row, "category", split, **(chart if row["category"] != "total" else {})
            )
    if data is not None:
        for split in ("train", "valid", "test"):
            read.number(f"{split} rows in all", manifest, data, "counts", split)
    return True


def _lora(read: _Reader) -> bool:
    metrics_source, comparison_source = (read.relative(f(read.root)) for f in (lora.training_metrics_file, lora.comparison_file))
    metrics, comparison = read.load(metrics_source), read.load(comparison_source)
    if metrics is None and comparison is None:
        return False
    if metrics is not None:
        source = metrics_source
        for label, key in (
            ("training steps", "steps"),
            ("training seconds", "train_seconds"),
            ("training tokens/s", "tokens_per_second"),
        ):
            read.number(label, source, metrics, key)
    if comparison is not None:
        source = comparison_source
        for model in ("baseline", "tuned"):
            read.number(
                f"{model} normalized match %",
                source,
                comparison,
                model,
                "normalized_match",
                chart=MATCH,
                group="all",
                series=model,
            )
        for model in ("baseline", "tuned"):
            for category in sorted(read.get(source, comparison, model, "per_category")):
                read.number(
                    f"{model} {category} %",
                    source,
                    comparison,
                    model,
                    "per_category",
                    category,
                    "normalized",
                    chart=MATCH,
                    group=category,
                    series=model,
                )
    return True


MATCH = "normalized match on held-out paraphrases (%)"


def _ace(read: _Reader) -> bool:
    summaries = ace.summary_files(read.root)
    problems = []
    for path in summaries:  # one run folder per task: an old or broken one is named, the others still count
        relative = read.relative(path)
        try:
            _ace_run(read, relative)
        except _Unreadable as problem:
            problems.append(str(problem))
    if problems and len(problems) == len(summaries):
        raise _Unreadable("; ".join(problems))
    read.section.problem = "; ".join(problems)
    return bool(summaries)


def _ace_run(read: _Reader, relative: str) -> None:
    data = read.load(relative)
    task = read.get(relative, data, "task_name")
    by_epoch = read.get(relative, data, "accuracy_by_split")
    last = max(by_epoch, key=int)
    for split in sorted(read.get(relative, by_epoch, "0")):
        read.get(relative, data, "accuracy_by_split", last, split)  # checked before either figure is kept
        chart = {"chart": "exact match (%)", "group": f"{task}\n{split}"}
        read.number(f"{task} {split} baseline EM %", relative, data, "accuracy_by_split", "0", split, series="baseline", **chart)
        read.number(
            f"{task} {split} ACE EM % (epoch {last})", relative, data, "accuracy_by_split", last, split, series="ACE", **chart
        )


def _one_file(path_of: Callable[[Path], Path], figures: Callable[[_Reader, str, dict], None]) -> Callable[[_Reader], bool]:
    """A section read from one results file (``path_of(root)``): False (not run) when it is missing, else ``figures``
    records its numbers."""

    def read_section(read: _Reader) -> bool:
        source = read.relative(path_of(read.root))
        data = read.load(source)
        if data is not None:
            figures(read, source, data)
        return data is not None

    return read_section


def _mcts(read: _Reader, source: str, data: dict) -> None:
    for index in range(len(read.get(source, data, "evaluation"))):
        method = read.get(source, data, "evaluation", index, "method")
        read.number(
            f"{method} exact match %",
            source,
            data,
            "evaluation",
            index,
            "accuracy",
            chart="exact match (%)",
            group=method,
            series="exact match",
        )
        read.number(
            f"{method} tokens spent",
            source,
            data,
            "evaluation",
            index,
            "tokens_spent",
            chart="tokens spent per question",
            group=method,
            series="tokens",
        )


def _tiny_lm(read: _Reader) -> bool:
    source = read.relative(lm.eval_file(read.root))
    data = read.load(source)
    if data is None:
        return False
    chart = {"chart": "bits per byte on held-out text (lower is better)", "series": "bits per byte"}
    read.number("tiny LM bits per byte", source, data, "model", "bits_per_byte", group="tiny LM", **chart)
    read.number("bigram baseline bits per byte", source, data, "bigram", "bits_per_byte", group="bigram", **chart)
    read.number("tiny LM perplexity", source, data, "model", "perplexity")
    read.number("tiny LM continuation BLEU", source, data, "model", "bleu")
    samples = read.relative(lm.continuations_file(read.root))
    for row in (read.load_csv(samples, ("document", "prefix", "truth", "model")) or [])[:LM_SAMPLES]:
        for column in ("prefix", "model", "truth"):
            row[column] = " ".join(row[column].split())[:SAMPLE_CHARS]
            read.cell(f"sample {row['document']}: {column}", samples, row, "document", column)
    return True


LM_SAMPLES, SAMPLE_CHARS = 2, 160  # continuations shown in the report, each cut to this many characters


def _rl(read: _Reader, source: str, data: dict) -> None:
    for split in ("heldout", "humaneval"):
        for stage, value in sorted(read.get(source, data, split).items()) if split in data else ():
            if isinstance(value, (int, float)):
                chart = {"chart": "pass@1 (fraction of tasks)", "group": split, "series": stage}
                read.number(f"{split} {stage}", source, data, split, stage, **(chart if stage in PASS_STAGES else {}))


PASS_STAGES = ("before", "after")


def _course_runs(read: _Reader, source: str, data: dict) -> None:
    for chapter in sorted(data):
        read.number(
            f"{chapter} seconds", source, data, chapter, "seconds", chart="wall time (s)", group=chapter, series="seconds"
        )
        read.number(
            f"{chapter} peak MB", source, data, chapter, "peak_rss_mb", chart="peak memory (MB)", group=chapter, series="MB"
        )
        if read.get(source, data, chapter, "energy_j") is None:
            read.number(f"{chapter} energy", source, data, chapter, "energy_source")
        else:
            read.number(f"{chapter} energy J", source, data, chapter, "energy_j", chart="energy (J)", group=chapter, series="J")
            read.number(f"{chapter} energy method", source, data, chapter, "energy_source")


BENCHMARK_RATIOS = {  # benchmark name → the fields of its results file holding its headline ratio
    "lora": ("ratio",),
    "lm": ("throughput", "ratio"),
    "rl": ("ratio_completions_per_s",),
    "mcts": ("ratio",),
}


def _benchmarks(read: _Reader) -> bool:
    found = False
    for key, path in BENCHMARK_RATIOS.items():
        relative = read.relative(core.benchmark_file(read.root, key))
        data = read.load(relative)
        if data is not None:
            found = True
            read.number(f"{key} ratio", relative, data, *path, chart=SPEED_UP, group=key, series="ratio")
    found = _generation_goals(read) or found
    return _backend_agreement(read) or found


SPEED_UP = "speed-up over the reference (×)"


def _generation_goals(read: _Reader) -> bool:
    relative = read.relative(core.benchmark_file(read.root, "generation"))
    data = read.load(relative)
    for index in range(len(read.get(relative, data, "goals"))) if data is not None else ():
        name = read.get(relative, data, "goals", index, "name")
        read.number(
            f"generation {name} ratio",
            relative,
            data,
            "goals",
            index,
            "ratio",
            chart=SPEED_UP,
            group=f"generation\n{name}",
            series="ratio",
        )
    return data is not None


def _backend_agreement(read: _Reader) -> bool:
    relative = read.relative(core.benchmark_file(read.root, "agreement"))
    data = read.load(relative)
    for model in sorted(read.get(relative, data, "models")) if data is not None else ():
        read.number(
            f"greedy replies identical on torch and llama.cpp ({model})",
            relative,
            data,
            "models",
            model,
            "agreement",
            "identical",
        )
        read.number(f"greedy replies compared ({model})", relative, data, "models", model, "agreement", "total")
    return data is not None


def _grids(read: _Reader) -> bool:
    folders = sorted(folder for folder in core.grids_path(read.root).glob("*") if folder.is_dir())
    records = [path for folder in folders for path in _cells_in_file_order(folder)]
    for path in records:  # each cell's own record: the grid summary only holds the latest run (skips included)
        relative = read.relative(path)
        data = read.load(relative)
        grid, cell = path.parent.parent.name, path.parent.name
        if read.number(f"{grid} {cell} status", relative, data, "status") == "ok":
            keys, values = zip(*(part.partition("=")[::2] for part in cell.split(",")))
            read.number(
                f"{grid} {cell} seconds",
                relative,
                data,
                "seconds",
                chart=f"{grid}: seconds per cell\n(ticks: {' / '.join(keys)})",
                group="\n".join(values),
                series="seconds",
            )
    return bool(records)


def _cells_in_file_order(folder: Path) -> list[Path]:
    """The grid's cell records in the order of its grid file (as its summary lists them), then any others."""
    records = {path.parent.name: path for path in folder.glob(f"*/{core.CELL_RECORD_FILE}")}
    try:
        summary = json.loads((folder / core.GRID_SUMMARY_FILE).read_text(encoding="utf-8"))
        listed = [cell["id"] for cell in summary["cells"]]
    except (OSError, ValueError, KeyError, TypeError):  # no summary, or an unreadable one: folder order
        listed = []
    order = [cell for cell in listed if cell in records] + sorted(set(records) - set(listed))
    return [records[cell] for cell in order]


SECTIONS: tuple[tuple[str, str, str, Callable[[_Reader], bool]], ...] = (
    ("setup", "Environment and model (chapter 00)", "slmlab course --chapters 00", _one_file(core.environment_file, _setup)),
    ("data", "Patterns and data (chapters 01–02)", "slmlab patterns validate && slmlab data", _data),
    (lora.KEY, lora.TITLE, lora.RUN_COMMAND, _lora),
    (ace.KEY, ace.TITLE, ace.RUN_COMMAND, _ace),
    (mcts.KEY, mcts.TITLE, mcts.RUN_COMMAND, _one_file(mcts.summary_file, _mcts)),
    (lm.KEY, lm.TITLE, lm.RUN_COMMAND, _tiny_lm),
    (rl.KEY, rl.TITLE, rl.RUN_COMMAND, _one_file(rl.eval_file, _rl)),
    ("benchmarks", "Benchmarks (same-run ratios)", "make bench", _benchmarks),
    ("grids", "Experiment grids (slmlab grid)", "slmlab grid grids/<file>.yaml", _grids),
    (
        "runs",
        "Course runs: wall time, peak memory, energy per chapter",
        "make course",
        _one_file(core.course_runs_file, _course_runs),
    ),
)


def gather(root: str | Path) -> list[Section]:
    """Every section read from the artifacts tree ``root`` (the folder holding ``results/`` and ``adapters/``)."""
    root = Path(root)
    sections = []
    for key, title, command, read_section in SECTIONS:
        section = Section(key, title, command)
        try:
            if not read_section(_Reader(root, section)):
                section.status = NOT_RUN
        except _Unreadable as problem:
            section.status, section.problem, section.numbers = UNREADABLE, str(problem), []
        sections.append(section)
    return sections


def format_value(value: float | int | str) -> str:
    """One way to print every figure: integers as they are, other numbers to four significant digits."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return str(value) if isinstance(value, int) else f"{value:.4g}"


def sections_markdown(sections: list[Section]) -> str:
    """The sections as Markdown: one table per section (figure, value, source file and field, made), or its status."""
    lines: list[str] = []
    for section in sections:
        lines += [f"## {section.title}", ""]
        if section.status == NOT_RUN:
            lines += [f"Not run: `{section.command}` makes it.", ""]
            continue
        if section.status == UNREADABLE:
            lines += [f"Unreadable: {section.problem}. Run `{section.command}` again.", ""]
            continue
        if section.problem:
            lines += [f"Skipped: {section.problem}.", ""]
        lines += ["| figure | value | from | made |", "|---|---|---|---|"]
        lines += [f"| {n.label} | {format_value(n.value)} | `{n.source}` : `{n.field}` | {n.created} |" for n in section.numbers]
        lines.append("")
    return "\n".join(lines)
