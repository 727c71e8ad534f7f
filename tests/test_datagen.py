"""Chapter 02 data generation: determinism, held-out test prompts, leak-freedom and mlx-lm compatibility."""

from __future__ import annotations

import json
import types

import pytest

from slmlab.lora.datagen import (
    DataConfig,
    DatasetError,
    build_rows,
    find_leaks,
    generate_dataset,
    load_split,
    normalize,
)
from slmlab.lora.patterns import load_patterns
from slmlab.settings import ARTIFACTS_ENV, project_root
from slmlab.testing import toy_patterns


@pytest.fixture(scope="module")
def patterns():
    return load_patterns(project_root() / "patterns")


def prompts(rows):
    return [r["messages"][0]["content"] for r in rows]


def test_same_seed_same_rows_other_seed_other_rows(patterns):
    assert build_rows(patterns, DataConfig(seed=3)) == build_rows(patterns, DataConfig(seed=3))
    assert build_rows(patterns, DataConfig(seed=3)) != build_rows(patterns, DataConfig(seed=4))


def test_shipped_patterns_give_enough_rows_and_a_20_percent_split(patterns):
    rows = build_rows(patterns)
    assert len(rows["train"]) >= 200
    share = len(rows["valid"]) / (len(rows["train"]) + len(rows["valid"]))
    assert share == pytest.approx(0.2, abs=0.01)
    assert len(rows["test"]) == len(patterns)


def test_no_test_prompt_occurs_in_train_or_valid(patterns):
    rows = build_rows(patterns)
    assert find_leaks(rows) == []
    seen = " || ".join(normalize(p) for p in prompts(rows["train"]) + prompts(rows["valid"]))
    for test_prompt in prompts(rows["test"]):
        assert normalize(test_prompt) not in seen


def test_test_prompts_are_paraphrases(patterns):
    by_id = {p.id: p for p in patterns}
    for row in build_rows(patterns)["test"]:
        pattern = by_id[row["pattern_id"]]
        assert row["messages"][0]["content"] in pattern.paraphrases
        assert row["messages"][1]["content"] == pattern.output


def test_find_leaks_catches_a_planted_leak():
    rows = build_rows(toy_patterns(3))
    planted = dict(rows["train"][0])
    planted["messages"] = [
        {"role": "user", "content": "Question: " + rows["test"][0]["messages"][0]["content"].upper()},
        planted["messages"][1],
    ]
    rows["train"].append(planted)
    assert find_leaks(rows) == [rows["test"][0]["messages"][0]["content"]]


def test_augmentation_varies_the_surface(patterns):
    train = prompts(build_rows(patterns)["train"])
    assert any(p.startswith(("Q: ", "Input: ", "Complete the following")) for p in train), "completion framing"
    assert any(p.startswith(("Question: ", "Please answer: ")) for p in train), "instruction wrappers"
    assert any(p != p.strip() or "  " in p for p in train), "whitespace variants"
    assert any(p == p.lower() and p != p.upper() for p in train), "casing variants"


def test_files_are_written_in_mlx_lm_chat_format(tmp_path, tiny_model_dir):
    from mlx_lm.tuner.datasets import load_dataset
    from transformers import AutoTokenizer

    summary = generate_dataset(toy_patterns(5), tmp_path)
    assert set(summary.counts) == {"train", "valid", "test"}
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["counts"] == summary.counts
    args = types.SimpleNamespace(data=str(tmp_path), train=True, test=True, hf_dataset=None, mask_prompt=True)
    train, valid, test = load_dataset(args, AutoTokenizer.from_pretrained(tiny_model_dir))
    assert (len(train), len(valid), len(test)) == (summary.counts["train"], summary.counts["valid"], summary.counts["test"])
    tokens, offset = train.process(train[0])
    assert 0 < offset < len(tokens)
    assert load_split(tmp_path, "test")[0]["split"] == "test"


def test_no_patterns_is_an_error(tmp_path):
    with pytest.raises(DatasetError, match="No patterns"):
        generate_dataset([], tmp_path)


def test_the_default_folder_is_data_of_the_artifacts_tree(tmp_path, monkeypatch):
    monkeypatch.setenv(ARTIFACTS_ENV, str(tmp_path))
    monkeypatch.setenv("SLMLAB_QUICK", "0")
    summary = generate_dataset(toy_patterns(3))
    assert summary.folder == tmp_path / "data"
    assert {path.name for path in summary.folder.iterdir()} == {"train.jsonl", "valid.jsonl", "test.jsonl", "manifest.json"}


@pytest.mark.parametrize(
    "change, named",
    [
        ({"variants_per_prompt": -1}, "variants_per_prompt=-1"),
        ({"valid_fraction": 1.0}, "valid_fraction=1.0"),
        ({"completion_fraction": 1.5, "phrasings_per_fact": -2}, "completion_fraction=1.5, phrasings_per_fact=-2"),
    ],
)
def test_out_of_range_settings_are_refused_by_name(change, named):
    with pytest.raises(ValueError, match=f"DataConfig: out of range: {named}"):
        DataConfig(**change)
