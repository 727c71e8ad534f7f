"""Run the numbered course notebooks headless with papermill, in order, and report the first failure.

Entry point: :func:`run_course` (what ``make course`` and ``slmlab course`` call). Executed copies land
in ``results/notebooks/`` of the mode's artifacts tree (:func:`slmlab.settings.artifacts_root`); a failing
chapter stops the run, because later chapters read its artifacts.
While it runs, the terminal shows a bar over the chapters, a bar over the running chapter's cells, and the
chapter's own printed lines and progress bars.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from html import unescape
from pathlib import Path

from tqdm.auto import tqdm

from slmlab.environment import EnergyMeter, RssSampler, tree_rss_mb
from slmlab.errors import SlmLabError
from slmlab.io import atomic_write_json, created_now
from slmlab.settings import artifacts_root, project_root, quick_mode
from slmlab.spec import COURSE_RUNS_FILE, executed_notebooks

_NUMBERED = re.compile(r"^(\d\d)_[\w-]+\.ipynb$")
_ENGINE = "slmlab-course"
RUNS_FILE = COURSE_RUNS_FILE  # beside the executed notebooks: each chapter's latest wall time, memory and energy
UNENCRYPTED_TCP_WARNING = "Kernel is running over TCP without encryption."
_CLOSED_BAR_STYLES = ("success", "danger")  # what tqdm.notebook's close() sets, after the bar's last text

CellProgress = Callable[[str, int, int], None]
"""Called as ``(chapter, cells_done, cell_count)`` each time a cell of the running chapter finishes."""


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
    peak_rss_mb: float | None = None  # this process and the notebook's kernel together
    energy_j: float | None = None  # CPU package energy (RAPL) where readable, else codecarbon's estimate
    energy_source: str = ""


@dataclass
class CourseReport:
    results: list[ChapterResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.results)

    def table(self) -> str:
        """A Markdown table of chapters, status, wall time and peak memory (process + kernel), with a total row."""
        rows = ["| chapter | status | seconds | wall time | peak MB | executed copy |", "|---|---|---|---|---|---|"]
        for r in self.results:
            status = "ok" if r.ok else "FAILED"
            peak = "" if r.peak_rss_mb is None else f"{r.peak_rss_mb:.0f}"
            rows.append(
                f"| {r.notebook.stem} | {status} | {r.seconds:.1f} | {tqdm.format_interval(r.seconds)} | {peak} | {r.output} |"
            )
        total_status = "ok" if self.ok else "FAILED"
        peaks = [r.peak_rss_mb for r in self.results if r.peak_rss_mb is not None]
        peak = f"{max(peaks):.0f}" if peaks else ""
        rows.append(f"| total | {total_status} | {self.seconds:.1f} | {tqdm.format_interval(self.seconds)} | {peak} | |")
        return "\n".join(rows)


def _measured(
    notebook: Path, output: Path, start: float, memory: RssSampler, energy: EnergyMeter, error: str = ""
) -> ChapterResult:
    return ChapterResult(
        notebook.stem[:2],
        notebook,
        output,
        time.perf_counter() - start,
        not error,
        error,
        round(memory.peak, 1),
        energy.joules,
        energy.source,
    )


def record_run(path: Path, r: ChapterResult) -> Path:
    """Put one chapter's run into ``path`` (JSON keyed by notebook name), keeping the other chapters' records."""
    runs = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    runs[r.notebook.stem] = {
        "ok": r.ok,
        "seconds": round(r.seconds, 1),
        "peak_rss_mb": r.peak_rss_mb,
        "energy_j": r.energy_j,
        "energy_source": r.energy_source,
        "created": created_now(),
        "error": r.error,
    }
    return atomic_write_json(path, dict(sorted(runs.items())))


class UnencryptedTcpWarningFilter(logging.Filter):
    """Drops the kernel's "running over TCP without encryption" warning, which a local course run repeats per chapter.

    The kernel process imports it by name (see :func:`kernel_config`), so this module keeps its imports light.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(UNENCRYPTED_TCP_WARNING)


def kernel_config() -> dict[str, object]:
    """IPython kernel configuration that puts :class:`UnencryptedTcpWarningFilter` on the kernel app's logger."""
    filter_name = "unencrypted_tcp_warning"
    return {
        "IPKernelApp": {
            "logging_config": {
                "filters": {filter_name: {"()": f"{__name__}.{UnencryptedTcpWarningFilter.__name__}"}},
                "loggers": {"IPKernelApp": {"filters": [filter_name]}},
            }
        }
    }


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


def tqdm_widget_bar(widget_state: Mapping[str, Mapping[str, object]], comm_id: str) -> tuple[str, str, bool] | None:
    """The tqdm bar that widget ``comm_id`` belongs to, as ``(bar id, "LoRA:  40% 60/150 [00:10<00:15]", closed)``.

    Inside a kernel tqdm.auto draws ``HBox(HTML, progress, HTML)`` widgets; neither tqdm nor nbclient turns their
    state back into text, hence this reading of nbclient's ``widget_state``. None when the widget is no such bar.
    """
    reference = f"IPY_MODEL_{comm_id}"
    for bar_id, state in widget_state.items():
        children = state.get("children")
        if state.get("_model_name") != "HBoxModel" or not isinstance(children, list) or reference not in children:
            continue
        if len(children) != 3:
            return None
        left, progress, right = (widget_state.get(str(child).removeprefix("IPY_MODEL_"), {}) for child in children)
        if "max" not in progress or left.get("_model_name") != "HTMLModel" or right.get("_model_name") != "HTMLModel":
            return None
        text = " ".join(unescape(str(part.get("value", ""))).replace("\u2007", " ").strip() for part in (left, right))
        return bar_id, text.strip(), progress.get("bar_style") in _CLOSED_BAR_STYLES
    return None


def _write_above(text: str, stream: str) -> None:
    """One line above the bars, on our stdout or stderr like the cell wrote it (tqdm bars count as stderr)."""
    tqdm.write(text, file=sys.stdout if stream == "stdout" else sys.stderr)


class CourseDisplay:
    """The terminal view of a run: a bar over chapters, one over the running chapter's cells, and a status line.

    The chapter's printed lines go above the bars (``tqdm.write``); its progress bars, which redraw in place, show
    as the status line and are written above once closed, so the scrollback keeps one line per bar. The status
    line is drawn on a terminal only, at most every ``refresh_seconds``, so a log file gets no redraws.
    """

    refresh_seconds = 0.1

    def __init__(self, chapter_count: int, enabled: bool = True):
        self.enabled = enabled
        self.live = enabled and sys.stderr.isatty()
        self._shown_at = 0.0
        self.course = tqdm(total=chapter_count, desc="course", unit="chapter", disable=not enabled, position=0)
        self.cells: tqdm | None = None
        self.status: tqdm | None = None
        self._partial: dict[str, str] = {}
        self._open_bars: dict[str, str] = {}
        self._written_bars: set[str] = set()

    def start_chapter(self, chapter: str) -> None:
        self.course.set_postfix_str(chapter)

    def cells_done(self, chapter: str, done: int, total: int) -> None:
        """A :data:`CellProgress` callback: move the cell bar, and settle what the finished cell drew."""
        if self.cells is None:
            self.cells = tqdm(total=total, desc=chapter, unit="cell", leave=False, disable=not self.enabled, position=1)
            self.status = tqdm(bar_format="{desc}", leave=False, disable=not self.live, position=2)
        self._settle_cell()
        self.cells.total = total
        self.cells.update(done - self.cells.n)

    def stream(self, name: str, text: str) -> None:
        """Text a cell wrote to ``name`` (stdout or stderr): whole lines go above the bars, a redrawn tail to the status."""
        *lines, self._partial[name] = (self._partial.get(name, "") + text).split("\n")
        for line in lines:
            _write_above(line.rsplit("\r", 1)[-1], name)
        self._show(self._partial[name].rsplit("\r", 1)[-1])

    def widget_bar(self, bar_id: str, text: str, closed: bool) -> None:
        """A tqdm widget bar of the chapter changed: show it, and write it above once it is closed."""
        if bar_id in self._written_bars:
            return
        if closed:
            self._open_bars.pop(bar_id, None)
            self._written_bars.add(bar_id)
            _write_above(text, "stderr")
        else:
            self._open_bars[bar_id] = text
        self._show(text)

    def end_chapter(self) -> None:
        self._settle_cell()
        for bar in (self.status, self.cells):
            if bar is not None:
                bar.close()
        self.cells = self.status = None
        self._written_bars.clear()
        self.course.update(1)

    def close(self) -> None:
        self.course.close()

    def _settle_cell(self) -> None:
        """Write the last state of bars and unfinished lines the finished cell left, and clear the status line."""
        last_texts = [(bar, "stderr") for bar in self._open_bars.values()]
        last_texts += [(tail.rsplit("\r", 1)[-1], name) for name, tail in self._partial.items()]
        for text, name in last_texts:
            if text.strip():
                _write_above(text, name)
        self._open_bars.clear()
        self._partial.clear()
        self._show("", now=True)

    def _show(self, text: str, now: bool = False) -> None:
        if self.status is None:
            return
        self.status.set_description_str(text, refresh=False)
        if now or time.monotonic() - self._shown_at >= self.refresh_seconds:
            self.status.refresh()
            self._shown_at = time.monotonic()


class _StreamRelay:
    """The file-like object papermill writes a cell's ``stdout`` or ``stderr`` to as it arrives."""

    def __init__(self, name: str, display: CourseDisplay):
        self.name, self.display = name, display

    def write(self, text: str) -> None:
        self.display.stream(self.name, text)

    def flush(self) -> None:
        """Nothing is buffered here."""


class _ChapterHooks:
    """nbclient's hooks for one chapter, turned into :data:`CellProgress` calls (cells done of all cells)."""

    def __init__(self, chapter: str, listeners: list[CellProgress]):
        self.chapter, self.listeners = chapter, listeners
        self.total, self.done = 0, -1

    def as_kwargs(self) -> dict[str, Callable[..., None]]:
        return {
            "on_notebook_start": self._notebook_start,
            "on_cell_start": self._cell_start,
            "on_cell_executed": self._cell_executed,
        }

    def finish(self) -> None:
        """The chapter ran to its end (trailing Markdown cells start no hook after the last code cell)."""
        self._report(self.total)

    def _report(self, done: int) -> None:
        if done != self.done:
            self.done = done
            for listener in self.listeners:
                listener(self.chapter, done, self.total)

    def _notebook_start(self, notebook, **_) -> None:
        self.total = len(notebook.cells)
        self._report(0)

    def _cell_start(self, cell_index: int, **_) -> None:
        self._report(cell_index)

    def _cell_executed(self, cell_index: int, **_) -> None:
        self._report(cell_index + 1)


@functools.cache
def _register_engine() -> str:
    """Register, once, the papermill engine the course runs on, and return its name.

    It is papermill's nbclient engine with two additions: the kernel gets :func:`kernel_config` when it is an
    IPython kernel, and tqdm widget bars are reported to ``on_widget_bar``. Papermill is imported here rather
    than at the top because it takes a second, and every kernel imports this module for its log filter.
    """
    from jupyter_client.kernelspec import KernelSpecManager
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine, papermill_engines
    from papermill.log import logger
    from papermill.utils import merge_kwargs, remove_args
    from traitlets import Callable as CallableTrait

    class CourseNotebookClient(PapermillNotebookClient):
        on_widget_bar = CallableTrait(default_value=None, allow_none=True).tag(config=True)

        def handle_comm_msg(self, outputs, msg, cell_index) -> None:
            super().handle_comm_msg(outputs, msg, cell_index)
            comm_id = msg["content"].get("comm_id")
            bar = tqdm_widget_bar(self.widget_state, comm_id) if self.on_widget_bar and comm_id else None
            if bar:
                self.on_widget_bar(*bar)

    class CourseEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(
            cls,
            nb_man,
            kernel_name,
            log_output=False,
            stdout_file=None,
            stderr_file=None,
            start_timeout=60,
            execution_timeout=None,
            kernel_config_file=None,
            **kwargs,
        ):
            # NBClientEngine.execute_managed_notebook of papermill 2.x, with the client above
            if kernel_config_file and any("ipykernel" in part for part in KernelSpecManager().get_kernel_spec(kernel_name).argv):
                kwargs["extra_arguments"] = [*kwargs.get("extra_arguments", []), f"--config={kernel_config_file}"]
            safe_kwargs = remove_args(["input_path", "timeout", "startup_timeout"], **kwargs)
            final_kwargs = merge_kwargs(
                safe_kwargs,
                timeout=execution_timeout or kwargs.get("timeout"),
                startup_timeout=start_timeout,
                kernel_name=kernel_name,
                log=logger,
                log_output=log_output,
                stdout_file=stdout_file,
                stderr_file=stderr_file,
            )
            return CourseNotebookClient(nb_man, **final_kwargs).execute()

    papermill_engines.register(_ENGINE, CourseEngine)
    return _ENGINE


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
    on_cell: CellProgress | None = None,
) -> CourseReport:
    """Execute the selected chapters in order with papermill.

    ``quick``, ``seed`` and ``model`` become the notebooks' ``QUICK``, ``SEED`` and ``MODEL`` parameters
    (``quick`` defaults to ``SLMLAB_QUICK``); ``parameters`` adds or overrides any other. ``progress`` shows the
    bars and relays the chapters' output; ``on_cell`` is called as ``(chapter, cells_done, cell_count)``.
    """
    import papermill

    root = project_root()
    notebooks_dir = Path(notebooks_dir or root / "notebooks")
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
    # executed copies follow the artifacts rule: a quick course never replaces a full course's notebooks
    output_dir = Path(output_dir) if output_dir else executed_notebooks(artifacts_root(bool(params["QUICK"])))
    output_dir.mkdir(parents=True, exist_ok=True)

    report = CourseReport()
    display = CourseDisplay(len(selected), enabled=progress)
    listeners = [display.cells_done] + ([on_cell] if on_cell else [])
    relay = (
        {
            "stdout_file": _StreamRelay("stdout", display),
            "stderr_file": _StreamRelay("stderr", display),
            "on_widget_bar": display.widget_bar,
        }
        if progress
        else {}
    )
    with tempfile.TemporaryDirectory(prefix="slmlab-course-") as scratch:
        config_file = Path(scratch) / "kernel_config.json"
        config_file.write_text(json.dumps(kernel_config()))
        try:
            for notebook in selected:
                display.start_chapter(notebook.stem)
                output = output_dir / notebook.name
                hooks = _ChapterHooks(notebook.stem, listeners)
                start = time.perf_counter()
                memory, energy = RssSampler(interval=0.2, measure=tree_rss_mb), EnergyMeter()
                try:
                    with memory, energy:
                        papermill.execute_notebook(
                            str(notebook),
                            str(output),
                            parameters=params,
                            kernel_name=kernel_name,
                            engine_name=_register_engine(),
                            progress_bar=False,
                            cwd=str(notebook.parent),
                            kernel_config_file=str(config_file),
                            **relay,
                            **hooks.as_kwargs(),
                        )
                    hooks.finish()
                except Exception as exc:  # papermill raises its own error for a failing cell, others for setup
                    message = describe_failure(notebook, output, exc)
                    report.results.append(_measured(notebook, output, start, memory, energy, message))
                    record_run(output_dir / RUNS_FILE, report.results[-1])
                    if raise_on_error:
                        raise CourseError(message) from exc
                    break
                finally:
                    display.end_chapter()
                report.results.append(_measured(notebook, output, start, memory, energy))
                record_run(output_dir / RUNS_FILE, report.results[-1])
        finally:
            display.close()
    return report
