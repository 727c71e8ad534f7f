"""Chapter 09's demo: a before/after of each lever played in the terminal with rich, read from the artifacts on disk.

Entry point: :func:`play_demo` (``slmlab demo``). Nothing is trained: each lever reads the files its chapter wrote,
picks telling examples deterministically (baseline wrong and improved right first, in file order) and shows the
prompt, both answers and the measured score with its file; a missing artifact shows the command that makes it.
"""

from __future__ import annotations

import difflib
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich import box
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from slmlab import chapters
from slmlab import spec as core
from slmlab.ace import spec as ace
from slmlab.io import atomic_write_text
from slmlab.lora import spec as lora
from slmlab.mcts import spec as mcts
from slmlab.report.artifacts import UnreadableArtifact, field_at, read_csv, read_json
from slmlab.report.gather import format_value
from slmlab.rl import spec as rl
from slmlab.settings import project_root
from slmlab.tinylm import spec as lm

LEVERS = tuple(lever.KEY for lever in chapters.LEVERS)
SHOWN, MISSING, UNREADABLE = "shown", "missing", "unreadable"
FULL_COMMANDS = {lever.KEY: lever.RUN_COMMAND for lever in chapters.LEVERS}  # what makes each lever's files
QUICK_COMMANDS = {lever.KEY: lever.QUICK_RUN_COMMAND for lever in chapters.LEVERS}  # the same at the quick sizes
HERE = Path(".")  # the demo names files relative to the artifacts tree it reads (as spec.shown writes them)


@dataclass(frozen=True)
class DemoConfig:
    """How the demo plays: examples per lever, seconds between steps (None: ``pause`` on a terminal, else 0), the
    recorded console's width, and how much of a long answer is shown."""

    examples: int = 1
    pause: float | None = None
    terminal_pause: float = 1.0
    record_width: int = 100
    answer_lines: int = 12
    answer_chars: int = 700

    def __post_init__(self):
        if self.examples < 0 or self.answer_lines < 1 or self.answer_chars < 1:
            raise ValueError("examples must be >= 0, answer_lines and answer_chars >= 1")

    def pause_for(self, console: Console) -> float:
        if self.pause is not None:
            return max(0.0, self.pause)
        return self.terminal_pause if console.is_terminal else 0.0


@dataclass(frozen=True)
class Answer:
    """One model's reply to an example; ``good`` is True/False when it was scored right/wrong, None when graded."""

    label: str
    text: str
    verdict: str
    good: bool | None = None
    code: bool = False


@dataclass(frozen=True)
class Example:
    prompt: str
    baseline: Answer
    improved: Answer
    gold: str | None = None
    context: str = ""


@dataclass(frozen=True)
class Score:
    """The measured score of a lever: a small table and the file (and field) it was read from."""

    columns: tuple[str, ...]
    rows: list[tuple[str, ...]]
    source: str


@dataclass
class LeverShow:
    """What one lever's demo shows, read from ``sources`` (paths relative to the artifacts root)."""

    sources: list[str]
    score: Score
    examples: list[Example] = field(default_factory=list)


class MissingArtifact(Exception):
    """A file the lever's demo needs is not there (the chapter has not run)."""


# --- reading the artifacts ---------------------------------------------------------------------------------------
def _path(root: Path, relative: str) -> Path:
    path = root / relative
    if not path.is_file():
        raise MissingArtifact(relative)
    return path


def _json(root: Path, relative: str) -> dict:
    return read_json(_path(root, relative), relative)


def _rows(root: Path, relative: str, columns: Sequence[str]) -> list[dict[str, str]]:
    """The CSV's rows; every name in ``columns`` must be a column."""
    return read_csv(_path(root, relative), relative, columns)


def _truthy(value: object) -> bool:
    return str(value).strip().lower() in {"true", "1", "1.0", "yes"}


def _number(value: object) -> str:
    try:
        return format_value(float(value)) if not isinstance(value, int) else str(value)
    except (TypeError, ValueError):
        return str(value)


def _right_or_wrong(good: bool, extra: str = "") -> str:
    return ("✓ right" if good else "✗ wrong") + (f" · {extra}" if extra else "")


# --- choosing examples -------------------------------------------------------------------------------------------
def _rank(baseline_good: bool, improved_good: bool) -> int:
    """Baseline wrong and improved right first, then both right, both wrong, and a regression last."""
    return {(False, True): 0, (True, True): 1, (False, False): 2, (True, False): 3}[(baseline_good, improved_good)]


def pick_examples(
    pairs: Sequence[tuple[dict, dict]],
    count: int,
    good: Callable[[dict], bool],
    group: Callable[[dict], str] | None = None,
    answer: Callable[[dict], str] | None = None,
) -> list[tuple[dict, dict]]:
    """``count`` telling (baseline, improved) pairs, deterministically: by :func:`_rank`; within a rank one per
    ``group`` (e.g. category) before a second of any, pairs whose ``answer`` differs first, then file order."""
    seen: Counter = Counter()
    order = []
    for index, (baseline, improved) in enumerate(pairs):
        rank = _rank(good(baseline), good(improved))
        name = group(baseline) if group else index
        same = answer is not None and answer(baseline).strip() == answer(improved).strip()
        order.append((rank, seen[rank, name], same, index))
        seen[rank, name] += 1
    return [pairs[index] for *_, index in sorted(order)[:count]]


def _paired(baseline: list[dict], improved: list[dict], key: Callable[[dict], object]) -> list[tuple[dict, dict]]:
    """(baseline row, improved row) for every key both have, in the baseline file's order."""
    by_key = {key(row): row for row in improved}
    return [(row, by_key[key(row)]) for row in baseline if key(row) in by_key]


# --- the levers --------------------------------------------------------------------------------------------------
LORA_PREDICTIONS, LORA_COMPARISON = core.shown(lora.predictions_file), core.shown(lora.comparison_file)


def lora_show(root: Path, config: DemoConfig) -> LeverShow:
    """Chapters 03–04: the base model vs the LoRA-tuned one on held-out paraphrases of the patterns."""
    comparison = _json(root, LORA_COMPARISON)
    rows = _rows(root, LORA_PREDICTIONS, ("pattern_id", "category", "prompt", "gold", "prediction", "normalized", "model"))
    pairs = _paired(
        [r for r in rows if r["model"] == "baseline"],
        [r for r in rows if r["model"] == "tuned"],
        key=lambda row: (row["pattern_id"], row["prompt"]),
    )

    def answer(label: str, row: dict) -> Answer:
        good = _truthy(row["normalized"])
        return Answer(label, row["prediction"], _right_or_wrong(good, row["category"]), good)

    def percent(model: str, *path: str) -> str:
        return _number(field_at(LORA_COMPARISON, comparison, model, *path))

    chosen = pick_examples(
        pairs,
        config.examples,
        lambda row: _truthy(row["normalized"]),
        group=lambda row: row["category"],
        answer=lambda row: row["prediction"],
    )
    examples = [
        Example(base["prompt"], answer("baseline (base model)", base), answer("tuned (LoRA adapter)", tuned), gold=base["gold"])
        for base, tuned in chosen
    ]
    categories = sorted(field_at(LORA_COMPARISON, comparison, "tuned", "per_category"))
    score_rows = [("all items", percent("baseline", "normalized_match"), percent("tuned", "normalized_match"))]
    score_rows += [
        (
            category,
            percent("baseline", "per_category", category, "normalized"),
            percent("tuned", "per_category", category, "normalized"),
        )
        for category in categories
    ]
    score = Score(("normalized match %", "baseline", "tuned"), score_rows, f"{LORA_COMPARISON} : baseline / tuned")
    return LeverShow([LORA_PREDICTIONS, LORA_COMPARISON], score, examples)


ACE_SUMMARIES = core.shown(ace.run_dir(HERE, "*", "*", ace.ACE_MODE) / ace.SUMMARY_FILE)  # the pattern, for messages


def _ace_runs(root: Path) -> list[tuple[str, dict]]:
    found = [path.relative_to(root).as_posix() for path in ace.summary_files(root)]
    if not found:
        raise MissingArtifact(ACE_SUMMARIES)
    return [(relative, _json(root, relative)) for relative in found]


def _ace_gain(relative: str, summary: dict) -> tuple[str, float, float]:
    """(last epoch, baseline accuracy %, accuracy % after the last epoch) of one run's summary."""
    by_epoch = field_at(relative, summary, "accuracy_by_epoch")
    last = max(by_epoch, key=int)
    return last, float(field_at(relative, by_epoch, "0")), float(field_at(relative, by_epoch, last))


def _answers_fixed(gain: tuple[tuple[str, float, float], str, dict]) -> float:
    """Answers the playbook turned right, net, in one run (the demo shows the run with the most, the first on a tie)."""
    (_, before, after), _, summary = gain
    return (after - before) * float(summary.get("samples", 1))


def ace_show(root: Path, config: DemoConfig) -> LeverShow:
    """Chapter 05: the same frozen model with an empty playbook (epoch 0) vs the playbook ACE curated."""
    runs = _ace_runs(root)
    gains = [(_ace_gain(relative, summary), relative, summary) for relative, summary in runs]
    (last, _, _), featured, _ = max(gains, key=_answers_fixed)
    results = (Path(featured).parent / ace.RESULTS_FILE).as_posix()
    rows = _rows(root, results, ("sample_id", "question", "gold", "pred", "correct", "epoch"))
    pairs = _paired(
        [r for r in rows if r["epoch"] == "0"],
        [r for r in rows if r["epoch"] == last],
        key=lambda row: (row.get("split", ""), row["sample_id"]),
    )

    def answer(label: str, row: dict) -> Answer:
        good = _truthy(row["correct"])
        return Answer(label, row["pred"], _right_or_wrong(good), good)

    chosen = pick_examples(pairs, config.examples, lambda row: _truthy(row["correct"]), answer=lambda row: row["pred"])
    examples = [
        Example(
            base["question"],
            answer("baseline (empty playbook)", base),
            answer(f"ACE (playbook after epoch {last})", ace),
            gold=base["gold"],
            context=base.get("context", ""),
        )
        for base, ace in chosen
    ]
    score_rows = [
        (
            str(field_at(relative, summary, "task_name")) + (" ◀ shown" if relative == featured else ""),
            _number(before),
            _number(after),
            epoch,
        )
        for (epoch, before, after), relative, summary in gains
    ]
    score = Score(("task", "baseline EM %", "ACE EM %", "epochs"), score_rows, f"{ACE_SUMMARIES} : accuracy_by_epoch")
    return LeverShow([results, featured], score, examples)


MCTS_EVAL, MCTS_SUMMARY = core.shown(mcts.eval_file), core.shown(mcts.summary_file)


def mcts_show(root: Path, config: DemoConfig) -> LeverShow:
    """Chapter 06: greedy decoding vs the MCTS controller over macro-actions of the same frozen model."""
    summary = _json(root, MCTS_SUMMARY)
    rows = _rows(root, MCTS_EVAL, ("method", "sample_id", "question", "gold", "pred", "correct", "tokens_spent"))
    if not any(row["method"] == "mcts" for row in rows):
        raise UnreadableArtifact(f"{MCTS_EVAL}: no rows of method mcts (evaluated without it?)")
    pairs = _paired(
        [r for r in rows if r["method"] == "greedy"], [r for r in rows if r["method"] == "mcts"], key=lambda row: row["sample_id"]
    )

    def answer(label: str, row: dict) -> Answer:
        good = _truthy(row["correct"])
        return Answer(label, row["pred"], _right_or_wrong(good, f"{_number(row['tokens_spent'])} tokens spent"), good)

    examples = [
        Example(greedy["question"], answer("greedy decoding", greedy), answer("MCTS controller", mcts), gold=greedy["gold"])
        for greedy, mcts in pick_examples(
            pairs, config.examples, lambda row: _truthy(row["correct"]), answer=lambda row: row["pred"]
        )
    ]
    evaluation = field_at(MCTS_SUMMARY, summary, "evaluation")
    score_rows = [
        (
            str(field_at(MCTS_SUMMARY, row, "method")),
            _number(field_at(MCTS_SUMMARY, row, "accuracy")),
            _number(field_at(MCTS_SUMMARY, row, "tokens_spent")),
            _number(row.get("tokens_x_greedy", "")),
        )
        for row in evaluation
    ]
    score = Score(("method", "exact match %", "tokens spent", "× greedy"), score_rows, f"{MCTS_SUMMARY} : evaluation")
    return LeverShow([MCTS_EVAL, MCTS_SUMMARY], score, examples)


LM_CONTINUATIONS, LM_EVAL = core.shown(lm.continuations_file), core.shown(lm.eval_file)


def _likeness(text: str, truth: str) -> float:
    """How much of the held-out truth a continuation reproduces (difflib's ratio, 0–1)."""
    return difflib.SequenceMatcher(None, text, truth, autojunk=False).ratio()


def lm_show(root: Path, config: DemoConfig) -> LeverShow:
    """Chapter 07: a bigram model vs the tiny LM trained from scratch, continuing held-out text."""
    report = _json(root, LM_EVAL)
    rows = _rows(root, LM_CONTINUATIONS, ("prefix", "truth", "model", "bigram"))
    ranked = sorted(
        range(len(rows)),
        key=lambda i: (_likeness(rows[i]["bigram"], rows[i]["truth"]) - _likeness(rows[i]["model"], rows[i]["truth"]), i),
    )

    def answer(label: str, row: dict, column: str) -> Answer:
        return Answer(label, row[column], f"{_likeness(row[column], row['truth']):.0%} like the held-out text")

    examples = [
        Example(
            rows[i]["prefix"],
            answer("bigram baseline", rows[i], "bigram"),
            answer("tiny LM", rows[i], "model"),
            gold=rows[i]["truth"],
        )
        for i in ranked[: config.examples]
    ]
    score_rows = [
        (label, _number(field_at(LM_EVAL, report, "bigram", key)), _number(field_at(LM_EVAL, report, "model", key)))
        for label, key in (
            ("bits per byte (lower is better)", "bits_per_byte"),
            ("perplexity (lower is better)", "perplexity"),
            ("continuation BLEU", "bleu"),
        )
    ]
    score = Score(("held-out text", "bigram", "tiny LM"), score_rows, f"{LM_EVAL} : bigram / model")
    return LeverShow([LM_CONTINUATIONS, LM_EVAL], score, examples)


RL_BEFORE, RL_AFTER = (core.shown(rl.measurement_file(HERE, "heldout", stage)) for stage in ("before", "after"))
RL_EVAL = core.shown(rl.eval_file)


def _task_prompt(task: str, family: str) -> str:
    """The task's prompt from its committed file (read, not imported), or its name when the file is elsewhere."""
    path = core.task_sets_dir(project_root(), rl.RESULTS, "heldout") / f"{task}.json"  # committed, in the checkout
    try:
        return str(json.loads(path.read_text(encoding="utf-8"))["prompt"])
    except (OSError, ValueError, KeyError, TypeError):
        return f"task {task}" + (f" (family {family})" if family else "")


def rl_show(root: Path, config: DemoConfig) -> LeverShow:
    """Chapter 08: the model's code before and after REINFORCE on execution feedback, on held-out tasks."""
    report = _json(root, RL_EVAL)
    columns = ("task", "status", "passed", "total", "solved", "code")
    pairs = _paired(_rows(root, RL_BEFORE, columns), _rows(root, RL_AFTER, columns), key=lambda row: row["task"])

    def answer(label: str, row: dict) -> Answer:
        good = _truthy(row["solved"])
        return Answer(
            label,
            row["code"] or row.get("reply", ""),
            _right_or_wrong(good, f"{row['status']}, {row['passed']}/{row['total']} tests"),
            good,
            code=bool(row["code"]),
        )

    examples = [
        Example(_task_prompt(before["task"], before.get("family", "")), answer("before RL", before), answer("after RL", after))
        for before, after in pick_examples(
            pairs, config.examples, lambda row: _truthy(row["solved"]), answer=lambda row: row["code"]
        )
    ]
    score_rows = [
        (
            f"{name} pass@1 % ({_number(field_at(RL_EVAL, report, split, 'tasks'))} tasks)",
            _number(100 * float(field_at(RL_EVAL, report, split, "before"))),
            _number(100 * float(field_at(RL_EVAL, report, split, "after"))),
        )
        for split, name in (("heldout", "held-out"), ("humaneval", "HumanEval"))
        if split in report
    ]
    score = Score(("", "before", "after RL"), score_rows, f"{RL_EVAL} : <set>.before / <set>.after")
    return LeverShow([RL_BEFORE, RL_AFTER, RL_EVAL], score, examples)


SHOWS: dict[str, Callable[[Path, DemoConfig], LeverShow]] = {
    lora.KEY: lora_show,
    ace.KEY: ace_show,
    mcts.KEY: mcts_show,
    lm.KEY: lm_show,
    rl.KEY: rl_show,
}
TITLES = {lever.KEY: lever.TITLE for lever in chapters.LEVERS}
TAUGHT_THROUGH = {lever.KEY: lever.TAUGHT_THROUGH for lever in chapters.LEVERS}


# --- playing -----------------------------------------------------------------------------------------------------
VERDICT_STYLES = {True: "green", False: "red", None: "cyan"}  # scored right, scored wrong, graded


class _Clock:
    """Steps of one lever: each waits ``pause`` seconds under a spinner and is labelled with its elapsed time."""

    def __init__(self, console: Console, pause: float, steps: int):
        self.console, self.pause, self.steps, self.done = console, pause, steps, 0
        self.start = time.perf_counter()

    def step(self, label: str) -> str:
        self.done += 1
        with self.console.status(f"{label} …"):
            time.sleep(self.pause)
        return f"step {self.done}/{self.steps} · {label} · {time.perf_counter() - self.start:.2f} s"


def _clipped(text: str, config: DemoConfig) -> str:
    lines = text.strip("\n").splitlines() or [""]
    clipped = "\n".join(lines[: config.answer_lines])[: config.answer_chars]
    return clipped + (" …" if clipped != "\n".join(lines) else "")


def _answer_body(answer: Answer, config: DemoConfig) -> RenderableType:
    shown = _clipped(answer.text, config)
    if not shown.strip():
        body = Text(f"(no visible text: {len(answer.text)} whitespace characters)", style="italic")
    else:
        body = Syntax(shown, "python", word_wrap=True) if answer.code else Text(shown)
    return Group(body, Text(answer.verdict, style="bold " + VERDICT_STYLES[answer.good]))


def _prompt_body(example: Example, config: DemoConfig) -> RenderableType:
    parts: list[RenderableType] = [Text(example.prompt.strip("\n"), style="bold")]
    if example.context:
        parts.append(Text(_clipped(example.context, config), style="dim"))
    if example.gold is not None:
        parts.append(Text.assemble(("expected: ", "italic"), _clipped(example.gold, config)))
    return Group(*parts)


def _score_body(score: Score) -> RenderableType:
    table = Table(*score.columns, box=box.SIMPLE_HEAVY)
    for row in score.rows:
        table.add_row(*(Text(cell) for cell in row))
    return Group(table, Text(f"from {score.source}", style="dim"))


def _play_show(console: Console, show: LeverShow, clock: _Clock, config: DemoConfig) -> None:
    if not show.examples:
        console.print(Text("(no item in the results to show)", style="dim"))
    for number, example in enumerate(show.examples, 1):
        which = f" {number}/{len(show.examples)}" if len(show.examples) > 1 else ""
        console.print(
            Panel(
                _prompt_body(example, config),
                title=f"prompt{which}",
                title_align="left",
                subtitle=clock.step("prompt"),
                border_style="blue",
                box=box.ROUNDED,
            )
        )
        for answer, step in ((example.baseline, "baseline answer"), (example.improved, "improved answer")):
            console.print(
                Panel(
                    _answer_body(answer, config),
                    title=answer.label,
                    title_align="left",
                    subtitle=clock.step(step),
                    border_style=VERDICT_STYLES[answer.good],
                    box=box.ROUNDED,
                )
            )
    console.print(
        Panel(
            _score_body(show.score),
            title="measured score",
            title_align="left",
            subtitle=clock.step("measured score"),
            border_style="magenta",
            box=box.DOUBLE,
        )
    )


def _not_shown(console: Console, key: str, problem: str, status: str, quick: bool) -> None:
    command = QUICK_COMMANDS[key] if quick else FULL_COMMANDS[key]
    text = Text.assemble(
        ("not run yet: " if status == MISSING else "unreadable: ", "bold"),
        problem,
        " is missing" if status == MISSING else "",
        "\n",
        ("makes it: ", "bold"),
        ("export SLMLAB_QUICK=1; " if quick else "", "cyan"),
        (command, "cyan"),
        "\n",
        ("or the whole pipeline: ", "dim"),
        ("SLMLAB_QUICK=1 " if quick else "", "dim"),
        ("scripts/run_all.sh", "dim"),
    )
    console.print(Panel(text, title=TITLES[key], title_align="left", border_style="red", box=box.HEAVY))


def play_lever(console: Console, key: str, root: Path, config: DemoConfig, quick: bool = False) -> str:
    """Play one lever's before/after from the artifacts tree ``root``; returns :data:`SHOWN`, :data:`MISSING` or
    :data:`UNREADABLE` (the last two print the command that makes the files)."""
    console.rule(Text.assemble((TITLES[key], "bold"), (f" · teaches through {TAUGHT_THROUGH[key]}", "dim")))
    started = time.perf_counter()
    try:
        with console.status(f"reading the {key} results …"):
            show = SHOWS[key](root, config)
    except MissingArtifact as missing:
        _not_shown(console, key, str(missing), MISSING, quick)
        return MISSING
    except UnreadableArtifact as problem:
        _not_shown(console, key, str(problem), UNREADABLE, quick)
        return UNREADABLE
    console.print(Text(f"read {', '.join(show.sources)} in {time.perf_counter() - started:.2f} s", style="dim"))
    clock = _Clock(console, config.pause_for(console), steps=3 * len(show.examples) + 1)
    _play_show(console, show, clock, config)
    return SHOWN


def play_demo(
    console: Console, levers: Sequence[str], root: str | Path, config: DemoConfig = DemoConfig(), quick: bool = False
) -> dict[str, str]:
    """Play ``levers`` (names of :data:`LEVERS`) in order from the artifacts tree ``root``; returns each one's status."""
    root = Path(root)
    mode = "quick mode: small sizes that check the pipeline" if quick else "full mode"
    console.print(
        Panel(
            Text.assemble(
                ("SLM Lab — before and after, lever by lever\n", "bold"),
                (f"artifacts: {root} ({mode}); nothing is trained during the demo", "dim"),
            ),
            border_style="bright_blue",
            box=box.DOUBLE,
        )
    )
    return {key: play_lever(console, key, root, config, quick) for key in levers}


def save_recording(console: Console, path: str | Path, title: str = "slmlab demo") -> Path:
    """Write what a ``Console(record=True)`` showed as an SVG file (atomically)."""
    return atomic_write_text(path, console.export_svg(title=title))
