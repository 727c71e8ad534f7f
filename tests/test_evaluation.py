"""Scoring and comparison of baseline vs tuned (chapter 04)."""

from __future__ import annotations

import json
import re

import pytest

from slmlab.lora.datagen import DatasetError
from slmlab.lora.evaluation import (
    before_after_table,
    compare_models,
    normalize_answer,
    per_category_table,
    score_predictions,
    spread_over_categories,
    summarize,
    summary_table,
)


def row(prompt, gold, category="fact"):
    return {
        "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": gold}],
        "category": category,
        "pattern_id": prompt,
    }


@pytest.mark.parametrize(
    "prediction, gold",
    [
        ("Brisketh.", "Brisketh"),
        ("  brisketh ", "Brisketh"),
        ('"a | b"', "a | b"),
        ("```python\nitems[::-1]\n```", "items[::-1]"),
        ("HELLO  WORLD", "hello world"),
    ],
)
def test_normalized_match_forgives_surface(prediction, gold):
    assert normalize_answer(prediction) == normalize_answer(gold)


@pytest.mark.parametrize("prediction, gold", [("Paris", "Brisketh"), ("items[::1]", "items[::-1]"), ("f(x)", "f(x")])
def test_normalized_match_keeps_content(prediction, gold):
    assert normalize_answer(prediction) != normalize_answer(gold)


def test_scores_and_summary():
    rows = [row("q1", "A"), row("q2", "B"), row("q3", "x = 1", "code_idiom")]
    scores = score_predictions(rows, ["A", "b.", "y = 1"])
    assert list(scores["exact"]) == [True, False, False]
    assert list(scores["normalized"]) == [True, True, False]
    summary = summarize(scores)
    assert summary["exact_match"] == pytest.approx(33.3) and summary["normalized_match"] == pytest.approx(66.7)
    assert summary["per_category"]["fact"]["normalized"] == 100.0
    assert summary["per_category"]["code_idiom"]["normalized"] == 0.0
    json.dumps(summary)  # serialisable as comparison.json


def test_spread_over_categories():
    rows = [row(f"f{i}", "x") for i in range(5)] + [row(f"c{i}", "x", "code_idiom") for i in range(5)]
    picked = spread_over_categories(rows, 4)
    assert [r["category"] for r in picked] == ["fact", "code_idiom", "fact", "code_idiom"]
    assert spread_over_categories(rows, None) == rows


def comparison_summary() -> dict:
    before = summarize(score_predictions([row("q1", "A"), row("q2", "B"), row("q3", "x = 1", "code_idiom")], ["A", "b.", "y"]))
    after = summarize(score_predictions([row("q1", "A"), row("q2", "B"), row("q3", "x = 1", "code_idiom")], ["A", "B", "x = 1"]))
    improvement = {k: round(after[k] - before[k], 1) for k in ("exact_match", "normalized_match")}
    return {"baseline": before, "tuned": after, "improvement": improvement}


def test_summary_table():
    table = summary_table(comparison_summary())
    assert list(table.columns) == ["baseline", "tuned", "improvement"]
    assert list(table.index) == ["exact match (%)", "normalized match (%)"]
    assert table.loc["exact match (%)"].tolist() == pytest.approx([33.3, 100.0, 66.7])
    assert table.loc["normalized match (%)"].tolist() == pytest.approx([66.7, 100.0, 33.3])


def test_per_category_table():
    table = per_category_table(comparison_summary())
    assert list(table.columns) == ["tuned exact", "tuned normalized", "baseline exact", "baseline normalized"]
    assert table.loc["fact"].tolist() == [100.0, 100.0, 50.0, 100.0]
    assert table.loc["code_idiom"].tolist() == [100.0, 100.0, 0.0, 0.0]


def test_compare_models_end_to_end(tiny_model_dir, tmp_path):
    """The tiny model, an adapter trained for a few steps: files written, numbers consistent."""
    from slmlab.generation import DecodingConfig
    from slmlab.lora.datagen import generate_dataset
    from slmlab.lora.training import TrainConfig, train_lora
    from slmlab.testing import toy_patterns

    patterns = toy_patterns(4)
    generate_dataset(patterns, tmp_path / "data")
    train_lora(
        tmp_path / "data",
        tmp_path / "lora",
        str(tiny_model_dir),
        TrainConfig(steps=2, batch_size=4),
        backend="torch",
        progress=False,
    )
    comparison = compare_models(
        str(tiny_model_dir),
        tmp_path / "lora",
        tmp_path / "data",
        tmp_path / "results",
        backend="torch",
        decoding=DecodingConfig(max_new_tokens=4),
        progress=False,
    )
    saved = json.loads((tmp_path / "results" / "comparison.json").read_text())
    assert saved["test_items"] == 4 and set(saved) >= {"baseline", "tuned", "improvement"}
    assert saved["improvement"]["exact_match"] == pytest.approx(saved["tuned"]["exact_match"] - saved["baseline"]["exact_match"])
    assert (tmp_path / "results" / "04_pattern_eval" / "predictions.csv").is_file()
    table = before_after_table(comparison)
    assert list(table.columns[:4]) == ["category", "prompt", "gold", "baseline"] and set(table[""]) <= {"✓", "✗"}


def test_wrong_backend_adapter_offers_conversion(tiny_model_dir, tmp_path):
    from slmlab.adapters import AdapterFormatError
    from slmlab.models import load_model

    folder = tmp_path / "fake-mlx"
    folder.mkdir()
    (folder / "adapters.safetensors").write_bytes(b"")
    (folder / "adapter_config.json").write_text(
        json.dumps({"fine_tune_type": "lora", "num_layers": 2, "lora_parameters": {"rank": 4, "scale": 2.0, "dropout": 0.0}})
    )
    with pytest.raises(AdapterFormatError, match="convert"):
        load_model(str(tiny_model_dir), backend="torch", adapter=str(folder))


def test_the_default_folders_are_the_artifacts_trees(tmp_path, monkeypatch):
    monkeypatch.setenv("SLMLAB_ARTIFACTS", str(tmp_path))
    monkeypatch.setenv("SLMLAB_QUICK", "1")
    with pytest.raises(DatasetError, match=re.escape(str(tmp_path / "quick" / "data" / "test.jsonl"))):
        compare_models("any-model")
