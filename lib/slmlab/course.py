"""Run the numbered course notebooks headless with papermill, in order, and report the first failure.

Entry point: :func:`run_course` (what ``make course`` and ``slmlab course`` call). Executed copies land
in ``results/notebooks/``; a failing chapter stops the run, because later chapters read its artifacts.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from slmlab.errors import SlmLabError
from slmlab.settings import project_root, quick_mode

_NUMBERED = re.compile(r"^(\d\d)_[\w-]+\.ipynb$")


class CourseError(SlmLabError):
    """A chapter failed; the message names the notebook, the cell and the error."""


@dataclass
class ChapterResult:
    chapter: str
    notebook: Path
    output: Path
    seconds: float
    ok: bool
    error: str = ""


@dataclass
class CourseReport:
    results: list[ChapterResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def table(self) -> str:
        """A Markdown table of chapters, status and time."""
        rows = ["| chapter | status | seconds | executed copy |", "|---|---|---|---|"]
        for r in self.results:
            status = "ok" if r.ok else "FAILED"
            rows.append(f"| {r.notebook.stem} | {status} | {r.seconds:.1f} | {r.output} |")
        return "\n".join(rows)


def discover_chapters(folder: Path) -> list[Path]:
    """The numbered notebooks (``NN_name.ipynb``) of a folder, in chapter order."""
    return sorted(p for p in Path(folder).glob("*.ipynb") if _NUMBERED.match(p.name))


def parse_chapters(spec: str | Iterable[int] | None) -> set[int] | None:
    """``"00-03,05"`` or ``[0, 1]`` → a set of chapter numbers; None or ``"all"`` → None (every chapter)."""
    if spec is None or spec == "all":
        return None
    if not isinstance(spec, str):
        return {int(n) for n in spec}
    chosen: set[int] = set()
    for part in filter(None, (p.strip() for p in spec.split(","))):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not match:
            raise ValueError(f"Bad chapter selection '{part}': use numbers and ranges such as 00-03,05")
        low, high = int(match[1]), int(match[2] or match[1])
        if high < low:
            raise ValueError(f"Bad chapter range '{part}': the end comes before the start")
        chosen.update(range(low, high + 1))
    return chosen


def describe_failure(notebook: Path, output: Path, exc: Exception) -> str:
    """One paragraph naming the notebook, the failing cell and the error."""
    cell = getattr(exc, "cell_index", None)
    where = f"cell {cell}" if cell is not None else "before any cell ran"
    if getattr(exc, "exec_count", None):
        where += f" (execution count {exc.exec_count})"
    error = f"{exc.ename}: {exc.evalue}" if hasattr(exc, "ename") else f"{type(exc).__name__}: {exc}"
    source = (getattr(exc, "source", "") or "").strip().splitlines()
    first = f"\n  cell starts: {source[0][:100]}" if source else ""
    return f"{notebook.name} failed in {where}: {error}{first}\n  executed copy with the full traceback: {output}"


def run_course(
    chapters: str | Iterable[int] | None = None,
    parameters: Mapping[str, object] | None = None,
    quick: bool | None = None,
    seed: int | None = None,
    model: str | None = None,
    notebooks_dir: Path | None = None,
    output_dir: Path | None = None,
    kernel_name: str | None = None,
    progress: bool = True,
    raise_on_error: bool = True,
) -> CourseReport:
    """Execute the selected chapters in order with papermill.

    ``quick``, ``seed`` and ``model`` become the notebooks' ``QUICK``, ``SEED`` and ``MODEL`` parameters
    (``quick`` defaults to ``SLMLAB_QUICK``); ``parameters`` adds or overrides any other.
    """
    import papermill

    root = project_root()
    notebooks_dir = Path(notebooks_dir or root / "notebooks")
    output_dir = Path(output_dir or root / "results" / "notebooks")
    output_dir.mkdir(parents=True, exist_ok=True)
    wanted = parse_chapters(chapters)
    selected = [nb for nb in discover_chapters(notebooks_dir) if wanted is None or int(nb.name[:2]) in wanted]
    if not selected:
        raise CourseError(f"No numbered notebooks match chapters={chapters!r} in {notebooks_dir}")

    params: dict[str, object] = {"QUICK": quick_mode(quick)}
    if seed is not None:
        params["SEED"] = seed
    if model is not None:
        params["MODEL"] = model
    params.update(parameters or {})

    report = CourseReport()
    bar = tqdm(selected, desc="course", unit="chapter", disable=not progress)
    for notebook in bar:
        bar.set_postfix_str(notebook.stem)
        output = output_dir / notebook.name
        start = time.perf_counter()
        try:
            papermill.execute_notebook(
                str(notebook), str(output), parameters=params, kernel_name=kernel_name,
                progress_bar=False, cwd=str(notebook.parent),
            )
        except Exception as exc:  # papermill raises its own error for a failing cell, others for setup
            message = describe_failure(notebook, output, exc)
            report.results.append(ChapterResult(notebook.stem[:2], notebook, output, time.perf_counter() - start, False, message))
            if raise_on_error:
                raise CourseError(message) from exc
            break
        report.results.append(ChapterResult(notebook.stem[:2], notebook, output, time.perf_counter() - start, True))
    return report
