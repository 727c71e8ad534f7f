"""Chapter 04: baseline vs tuned on the held-out test set — exact and normalized match, per category.

Entry point: :func:`compare_models`, which writes ``results/comparison.json`` (baseline, tuned,
improvement) and a per-item CSV, and returns both; :func:`summary_table`, :func:`per_category_table` and
:func:`before_after_table` are the tables the notebook shows.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from slmlab.generation import DecodingConfig
from slmlab.io import atomic_write_json, save_table
from slmlab.lora import spec
from slmlab.lora.datagen import load_split
from slmlab.models import load_model
from slmlab.settings import artifacts_root
from slmlab.spec import results_path

EVAL_DECODING = DecodingConfig(strategy="greedy", max_new_tokens=48, batch_size=16)
_FENCE = re.compile(r"^```[\w+-]*\n?|\n?```$")


def normalize_answer(text: str) -> str:
    """Forgiving comparison form: no code fences or wrapping quotes, case-folded, single spaces,
    no trailing punctuation."""
    text = _FENCE.sub("", text.strip()).strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'`":
        text = text[1:-1]
    text = re.sub(r"\s+", " ", text).strip().casefold()
    return text.rstrip(string.punctuation.replace(")", "").replace("]", "").replace("}", "")).strip()


def score_predictions(rows: Sequence[dict], predictions: Sequence[str]):
    """One DataFrame row per test item: prompt, gold, prediction, exact and normalized match."""
    import pandas as pd

    records = []
    for row, prediction in zip(rows, predictions):
        gold = row["messages"][-1]["content"]
        records.append(
            {
                "pattern_id": row.get("pattern_id", ""),
                "category": row.get("category", ""),
                "prompt": row["messages"][0]["content"],
                "gold": gold,
                "prediction": prediction,
                "exact": prediction.strip() == gold.strip(),
                "normalized": normalize_answer(prediction) == normalize_answer(gold),
            }
        )
    return pd.DataFrame(records)


def evaluate(model, rows: Sequence[dict], decoding: DecodingConfig = EVAL_DECODING, progress: bool = True):
    """Generate a reply for every test row (batched) and score it."""
    prompts = [row["messages"][:-1] for row in rows]
    return score_predictions(rows, model.generate(prompts, decoding, progress=progress))


def summarize(scores) -> dict:
    """Exact / normalized accuracy (in %) overall and per category."""
    per_category = scores.groupby("category")[["exact", "normalized"]].mean().mul(100).round(1)
    return {
        "items": int(len(scores)),
        "exact_match": round(float(scores["exact"].mean() * 100), 1),
        "normalized_match": round(float(scores["normalized"].mean() * 100), 1),
        "per_category": per_category.to_dict(orient="index"),
    }


def spread_over_categories(rows: Sequence[dict], limit: int | None) -> list[dict]:
    """The first ``limit`` rows taken in turn from each category (all rows when ``limit`` is None)."""
    if limit is None or limit >= len(rows):
        return list(rows)
    by_category: dict[str, list[dict]] = {}
    for row in rows:
        by_category.setdefault(row.get("category", ""), []).append(row)
    picked: list[dict] = []
    while len(picked) < limit:
        for queue in by_category.values():
            if queue and len(picked) < limit:
                picked.append(queue.pop(0))
    return picked


@dataclass
class Comparison:
    summary: dict
    baseline: object  # DataFrame
    tuned: object  # DataFrame


def compare_models(
    model: str,
    adapter_dir: str | Path | None = None,
    data_dir: str | Path | None = None,
    results_dir: str | Path | None = None,
    backend: str = "auto",
    limit: int | None = None,
    decoding: DecodingConfig = EVAL_DECODING,
    progress: bool = True,
) -> Comparison:
    """Evaluate the base model and base + adapter on ``test.jsonl``; write comparison.json and a CSV.

    The folders default to ``adapters/patterns-lora``, ``data/`` and ``results/`` of the artifacts tree
    (:func:`~slmlab.settings.artifacts_root`)."""
    root = artifacts_root()
    adapter_dir = adapter_dir if adapter_dir is not None else spec.adapter_dir(root)
    data_dir = data_dir if data_dir is not None else spec.data_dir(root)
    results = Path(results_dir) if results_dir is not None else results_path(root)
    rows = spread_over_categories(load_split(data_dir, "test"), limit)
    baseline = evaluate(load_model(model, backend=backend), rows, decoding, progress)
    tuned = evaluate(load_model(model, backend=backend, adapter=str(adapter_dir)), rows, decoding, progress)
    before, after = summarize(baseline), summarize(tuned)
    summary = {
        "model": model,
        "adapter": str(adapter_dir),
        "test_items": len(rows),
        "decoding": decoding.as_dict(),
        "baseline": before,
        "tuned": after,
        "improvement": {
            "exact_match": round(after["exact_match"] - before["exact_match"], 1),
            "normalized_match": round(after["normalized_match"] - before["normalized_match"], 1),
        },
    }
    atomic_write_json(spec.comparison_in(results), summary)
    import pandas as pd

    both = pd.concat([baseline.assign(model="baseline"), tuned.assign(model="tuned")], ignore_index=True)
    save_table(both, spec.predictions_in(results))
    return Comparison(summary, baseline, tuned)


def before_after_table(comparison: Comparison, limit: int | None = 12):
    """Prompt, baseline reply, tuned reply and ✓/✗ per item: the table to show on screen."""
    import pandas as pd

    base, tuned = comparison.baseline, comparison.tuned
    mark = lambda ok: "✓" if ok else "✗"  # noqa: E731
    table = pd.DataFrame(
        {
            "category": base["category"],
            "prompt": base["prompt"],
            "gold": base["gold"],
            "baseline": base["prediction"].str.slice(0, 80),
            "": base["normalized"].map(mark),
            "tuned": tuned["prediction"].str.slice(0, 80),
            " ": tuned["normalized"].map(mark),
        }
    )
    return table.head(limit) if limit else table


METRIC_LABELS = {"exact_match": "exact match (%)", "normalized_match": "normalized match (%)"}


def summary_table(summary: dict):
    """Baseline, tuned and improvement (columns) for exact and normalized match in % (rows)."""
    import pandas as pd

    columns = ("baseline", "tuned", "improvement")
    return pd.DataFrame(
        {column: [summary[column][metric] for metric in METRIC_LABELS] for column in columns}, index=list(METRIC_LABELS.values())
    )


def per_category_table(summary: dict):
    """One row per category: the tuned model's exact / normalized match (%), then the baseline's."""
    import pandas as pd

    def scores(model: str):
        return pd.DataFrame(summary[model]["per_category"]).T.add_prefix(f"{model} ")

    return scores("tuned").join(scores("baseline"))
