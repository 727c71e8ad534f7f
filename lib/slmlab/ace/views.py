"""What chapter 05 shows: task overview, per-epoch statistics, accuracy per split and playbook-growth plots,
an ipywidgets playbook viewer and worked examples of a lesson being learned and then used."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from slmlab.ace.playbook import Playbook
from slmlab.ace.runs import read_rows
from slmlab.ace.spec import ADAPTATION_FILE, OPERATIONS_FILE, RESULTS_FILE, STATS_FILE, SUMMARY_FILE, playbook_file
from slmlab.tasks import TASKS, load_tasks

OPERATION_NAMES = ("ADD", "UPDATE", "REMOVE", "MERGE")


def task_overview() -> pd.DataFrame:
    """The task registry: name, domain, number of items and file."""
    return pd.DataFrame(
        [
            {"task": s.name, "domain": s.domain, "items": len(load_tasks(s.full_path())), "file": str(s.path)}
            for s in TASKS.values()
        ]
    )


def epoch_stats(run_dirs: Sequence[str | Path]) -> pd.DataFrame:
    """One row per run and epoch from ``stats.json``: accuracy, step times, playbook size, operations,
    reflection parse failures and peak memory."""
    records = []
    for run_dir in map(Path, run_dirs):
        task = json.loads((run_dir / SUMMARY_FILE).read_text())["task_name"]
        for entry in json.loads((run_dir / STATS_FILE).read_text()).values():
            parses = entry.get("reflection_parses", {})
            kept = ("epoch", "samples", "accuracy", "playbook_bullets", "playbook_tokens")
            record = {"task": task, **{k: entry[k] for k in kept}}
            record.update({op: entry.get("operations", {}).get(op, 0) for op in OPERATION_NAMES})
            record.update(
                generation_s=round(entry["generation_ms"] / 1000, 1),
                reflection_s=round(entry["reflection_ms"] / 1000, 1),
                curation_s=round(entry["curation_ms"] / 1000, 1),
                reflection_parse_failures=f"{parses.get('failed', 0)}/{sum(parses.values())}",
                reflection_parse_failure_rate=entry.get("reflection_parse_failure_rate"),
                peak_memory_mb=entry["peak_memory_mb"],
            )
            records.append(record)
    return pd.DataFrame(records)


def plot_accuracy_by_epoch(summary: pd.DataFrame):
    """Accuracy per epoch, one line per task (epoch 0 is the baseline)."""
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.5, 3.6))
    for task, rows in summary.groupby("task_name"):
        axis.plot(rows["epoch"], rows["accuracy"], marker="o", label=task)
    axis.set(xlabel="epoch (0 = baseline, no playbook)", ylabel="accuracy (%)", title="Accuracy per epoch")
    axis.set_xticks(sorted(summary["epoch"].unique()))
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    return figure


def plot_splits(cells: pd.DataFrame, metric: str = "em"):
    """Grouped bars per task: baseline and ACE on each test split (``metric``: em, f1 or semantic), from
    :func:`slmlab.ace.report.baseline_vs_ace_by_split`."""
    import matplotlib.pyplot as plt

    tasks, splits = list(dict.fromkeys(cells["task"])), list(dict.fromkeys(cells["split"]))
    bars = [(split, stage) for split in splits for stage in ("baseline", "ace")]
    width = 0.8 / len(bars)
    figure, axis = plt.subplots(figsize=(max(6.5, 2.2 * len(tasks)), 3.8))
    for n, (split, stage) in enumerate(bars):
        rows = cells[cells["split"] == split].set_index("task")
        values = [rows[f"{stage}_{metric}"].get(task, float("nan")) for task in tasks]
        label = f"{split}: {'ACE' if stage == 'ace' else 'baseline'}"
        axis.bar(
            [i + (n - (len(bars) - 1) / 2) * width for i in range(len(tasks))],
            values,
            width,
            label=label,
            color=plt.cm.tab20(2 * splits.index(split) + (stage == "baseline")),
        )
    names = {"em": "exact match", "f1": "token F1", "semantic": "semantic similarity"}
    axis.set(
        xticks=range(len(tasks)),
        xticklabels=tasks,
        ylabel=f"{names.get(metric, metric)} (%)",
        title=f"Baseline vs ACE per test split ({names.get(metric, metric)})",
    )
    axis.grid(axis="y", alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def plot_playbook_growth(stats: pd.DataFrame):
    """Playbook size (bullets, tokens) and delta operations per epoch, per task."""
    import matplotlib.pyplot as plt

    figure, (size, operations) = plt.subplots(1, 2, figsize=(11, 3.6))
    for task, rows in stats.groupby("task"):
        size.plot(rows["epoch"], rows["playbook_bullets"], marker="o", label=f"{task} (bullets)")
    size.set(xlabel="epoch", ylabel="bullets", title="Playbook size after each epoch")
    size.set_xticks(sorted(stats["epoch"].unique()))
    size.legend(fontsize=8)
    adapted = stats[stats["epoch"] > 0]
    labels = [f"{t}\nepoch {e}" for t, e in zip(adapted["task"], adapted["epoch"])]
    bottom = pd.Series(0, index=adapted.index)
    for op in OPERATION_NAMES:
        operations.bar(labels, adapted[op], bottom=bottom, label=op)
        bottom += adapted[op]
    operations.set(ylabel="operations", title="Curator operations per epoch")
    operations.tick_params(axis="x", labelsize=8)
    operations.legend(fontsize=8)
    figure.tight_layout()
    return figure


def playbook_html(playbook: Playbook, section: str | None = None) -> str:
    """An HTML table of the bullets (optionally one section) with their counters."""
    rows = [b for b in playbook.bullets.values() if section in (None, b.section)]
    cells = "".join(
        f"<tr><td><code>{b.id}</code></td><td>{html.escape(b.section)}</td><td>{b.helpful}</td>"
        f"<td>{b.harmful}</td><td style='text-align:left'>{html.escape(b.content)}</td></tr>"
        for b in rows
    )
    head = "<tr><th>id</th><th>section</th><th>helpful</th><th>harmful</th><th>content</th></tr>"
    return f"<p>{len(rows)} of {len(playbook)} bullets</p><table>{head}{cells}</table>"


def playbook_viewer(playbook: Playbook):
    """An ipywidgets viewer: pick a section, see its bullets with their helpful/harmful counters."""
    import ipywidgets as widgets

    choice = widgets.Dropdown(options=["all sections", *playbook.sections()], description="section")
    table = widgets.HTML(playbook_html(playbook))

    def show(change) -> None:
        table.value = playbook_html(playbook, None if change["new"] == "all sections" else change["new"])

    choice.observe(show, names="value")
    return widgets.VBox([choice, table])


def _operation_sources(run_dir: Path) -> dict[str, dict]:
    """Bullet id → the ADD operation that created it (epoch, sample)."""
    path = run_dir / OPERATIONS_FILE
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    return {op["bullet_id"]: op for op in map(json.loads, lines) if op["op"] == "ADD"}


def lesson_examples(run_dir: str | Path, count: int = 3) -> list[dict]:
    """Test questions of the last epoch that were shown playbook bullets, each with its baseline answer,
    its answer with the playbook, and the bullets with the training sample they were learned from.
    Questions the playbook fixed come first, then ones whose answer changed, then the rest."""
    run_dir = Path(run_dir)
    rows = read_rows(run_dir / RESULTS_FILE)
    last = max((int(r["epoch"]) for r in rows), default=0)
    baseline = {r["sample_id"]: r for r in rows if r["epoch"] == "0"}
    playbook = Playbook.load(playbook_file(run_dir, last)) if last else Playbook()
    sources = _operation_sources(run_dir)
    adaptation = {(r["epoch"], r["sample_id"]): r for r in read_rows(run_dir / ADAPTATION_FILE)}
    candidates = [r for r in rows if r["epoch"] == str(last) and r["bullets"] and r["sample_id"] in baseline]

    def rank(row: dict) -> int:
        before = baseline[row["sample_id"]]
        fixed = row["correct"] == "True" and before["correct"] != "True"
        return 0 if fixed else 1 if row["pred"] != before["pred"] else 2

    examples = []
    for row in sorted(candidates, key=rank)[:count]:
        lessons = []
        for bullet_id in row["bullets"].split():
            source = sources.get(bullet_id, {})
            learned = adaptation.get((str(source.get("epoch", "")), source.get("sample_id", "")), {})
            bullet = playbook.bullets.get(bullet_id)
            lessons.append(
                {
                    "id": bullet_id,
                    "content": bullet.content if bullet else "(since removed)",
                    "learned_from": source.get("sample_id", "?"),
                    "learned_when": (
                        f"epoch {source['epoch']}: answered {learned.get('pred', '?')!r}, gold {learned.get('gold', '?')!r}"
                    )
                    if source
                    else "",
                }
            )
        examples.append(
            {
                "sample_id": row["sample_id"],
                "question": row["question"],
                "gold": row["gold"],
                "baseline_pred": baseline[row["sample_id"]]["pred"],
                "ace_pred": row["pred"],
                "fixed": rank(row) == 0,
                "lessons": lessons,
            }
        )
    return examples


def examples_markdown(examples: Sequence[dict]) -> str:
    """Worked examples as Markdown, for ``IPython.display.Markdown``."""
    parts = []
    for example in examples:
        verdict = "fixed by the playbook" if example["fixed"] else "not fixed"
        parts.append(
            f"**{example['sample_id']}** ({verdict}) — {example['question']}  \n"
            f"gold `{example['gold']}` · baseline `{example['baseline_pred']}` · with playbook `{example['ace_pred']}`"
        )
        parts += [
            f"- `{lesson['id']}` learned from `{lesson['learned_from']}` ({lesson['learned_when']}): {lesson['content']}"
            for lesson in example["lessons"]
        ]
    return "\n\n".join(parts) if parts else "_No test question was shown a playbook bullet._"


def baseline_vs_ace(summary: pd.DataFrame) -> pd.DataFrame:
    """Per task: accuracy at epoch 0 (no playbook), after the last epoch, and the difference in points."""
    rows = []
    for (model, task, mode), group in summary.groupby(["model_id", "task_name", "mode"]):
        group = group.sort_values("epoch")
        first, last = group.iloc[0], group.iloc[-1]
        rows.append(
            {
                "model_id": model,
                "task": task,
                "mode": mode,
                "samples": int(last["samples"]),
                "baseline": first["accuracy"],
                f"ACE (epoch {int(last['epoch'])})": last["accuracy"],
                "gain (points)": round(last["accuracy"] - first["accuracy"], 1),
            }
        )
    return pd.DataFrame(rows)
