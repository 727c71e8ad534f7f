"""ACE lessons that transfer: the transfer and generalization test splits, the Reflector on another model,
semantic partial credit, and the per-split summaries and figure."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest

from slmlab.ace import runs
from slmlab.ace.report import baseline_vs_ace_by_split, load_results, split_summary, summarize
from slmlab.ace.roles import answer_text, extract_answer, generator_prompt, short_hint
from slmlab.ace.runs import AceConfig, AceRunError, run_ace
from slmlab.ace.tasks import FACT_REWORDINGS, FACTS, build_items, build_transfer_items, build_transfer_sets
from slmlab.cli import main
from slmlab.metrics import normalize_text
from slmlab.tasks import LETTERS, TaskItem, load_tasks
from slmlab.testing import make_tiny_llama

ROOT = Path(__file__).resolve().parents[1]
DOMAINS = ("finance", "medical", "iot")


@pytest.fixture(autouse=True)
def _root(monkeypatch):
    monkeypatch.setenv("SLMLAB_ROOT", str(ROOT))


def text(item: TaskItem) -> str:
    return normalize_text(f"{item.question} {item.context}")


def right_choice(item: TaskItem) -> str:
    return item.choices[LETTERS.index(item.answer)]


# --- the splits --------------------------------------------------------------------------------------------
def test_transfer_sets_are_deterministic_and_match_the_committed_files(tmp_path):
    written = build_transfer_sets(tmp_path, seed=0)
    assert sorted(written) == [f"{d}_transfer" for d in sorted(DOMAINS)]
    for name, path in written.items():
        assert path.read_bytes() == (ROOT / "data" / "tasks" / f"{name}.jsonl").read_bytes(), name
        assert len(load_tasks(path)) == 50
    assert build_transfer_items(seed=1)["finance_transfer"] != build_transfer_items(seed=0)["finance_transfer"]


@pytest.mark.parametrize("domain", DOMAINS)
def test_no_test_item_text_is_in_the_adaptation_set(domain):
    adaptation = {text(item) for item in load_tasks(ROOT / "data" / "tasks" / f"{domain}_train.jsonl")}
    for split in ("test", "transfer"):
        items = load_tasks(ROOT / "data" / "tasks" / f"{domain}_{split}.jsonl")
        assert not adaptation & {text(item) for item in items}, split
        assert len({text(item) for item in items}) == len(items)  # and no question asked twice in a split


def test_transfer_items_ask_what_an_adaptation_item_taught():
    """Finance and medical calculations: the same table or patient with the same answer; facts: the same fact
    in its third wording; IoT: the same five readings in another order, the anomaly moving with its reading."""
    items = build_items()
    transfer = build_transfer_items()
    for domain in ("finance", "medical"):
        by_context = {(i.context, i.answer) for i in items[f"{domain}_train"] if not i.choices}
        train_facts = {right_choice(i) for i in items[f"{domain}_train"] if i.choices}
        for item in transfer[f"{domain}_transfer"]:
            if item.choices:
                assert right_choice(item) in train_facts and item.question == FACT_REWORDINGS[right_choice(item)]
            else:
                assert (item.context, item.answer) in by_context, item
    assert sum(bool(i.choices) for i in transfer["medical_transfer"]) == 20
    assert set(FACT_REWORDINGS) == {fact[1] for fact in FACTS}
    windows = {tuple(sorted(r.split(": ")[1] for r in i.context.splitlines())): i for i in items["iot_train"]}
    for item in transfer["iot_transfer"]:
        readings = [r.split(": ")[1] for r in item.context.splitlines()]
        source = windows[tuple(sorted(readings))]
        if source.answer == "no":
            assert item.answer == "no"
        else:
            anomalous = source.context.splitlines()[int(source.answer.rsplit(" ", 1)[1]) - 1].split(": ")[1]
            assert item.answer == f"yes, reading {readings.index(anomalous) + 1}"


# --- the Generator's view of the playbook ------------------------------------------------------------------
MC = TaskItem(
    "m", "Which vitamin is missing in scurvy?", "D", "medical", choices=("Vitamin A", "Vitamin D", "Vitamin K", "Vitamin C")
)


def test_a_copied_answer_is_read_by_its_choice_text_and_scored_by_meaning():
    assert extract_answer(MC, " B (Vitamin C)") == ("D", "lenient")  # copied from an example with other letters
    assert extract_answer(MC, " D. Vitamin C") == ("D", "strict")
    assert answer_text(MC, "D") == "Vitamin C" and answer_text(MC, "") == ""
    assert short_hint("Read the year's column first. Then copy the value.") == "Read the year's column first."
    assert short_hint(" ".join(["word"] * 40)).endswith("word ...")


def test_hints_sit_between_the_context_and_the_question():
    from slmlab.ace.playbook import Bullet

    item = TaskItem("f", "What was Revenue in 2021?", "5", "finance", "Metric | 2021\nRevenue | 5")
    prompt = generator_prompt(item, [Bullet("str-00001", "strategies", "Copy the value from the year's column.")])
    assert prompt.index(item.context) < prompt.index("[str-00001]") < prompt.index("Question: ")


# --- runs: splits, semantic score, Reflector model ---------------------------------------------------------
def rows(path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def domain_config(tiny_model_dir, **changes) -> AceConfig:
    options = dict(
        model_id=str(tiny_model_dir),
        task="iot",
        mode="ace",
        epochs=1,
        limit=2,
        batch_size=2,
        answer_tokens=4,
        reflection_tokens=6,
        top_k=1,
        backend="torch",
    )
    return AceConfig(**{**options, **changes})


def test_a_domain_run_reports_both_splits_with_partial_credit(tiny_model_dir, tiny_torch, tmp_path):
    from slmlab.ace.views import plot_splits

    run_dir = tmp_path / "run"
    run_ace(domain_config(tiny_model_dir), run_dir, model=tiny_torch, progress=False)
    table = rows(run_dir / "results.csv")
    assert Counter((r["epoch"], r["split"]) for r in table) == {
        (e, s): 2 for e in ("0", "1") for s in ("generalization", "transfer")
    }
    assert all(0 <= float(r["semantic"]) <= 1 and 0 <= float(r["token_f1"]) <= 1 for r in table)
    assert {r["split"] for r in rows(run_dir / "adaptation.csv")} == {"adaptation"}
    assert {r["reflection_parse"] for r in rows(run_dir / "adaptation.csv")} <= {"strict", "lenient", "failed"}
    stats = json.loads((run_dir / "stats.json").read_text())
    assert set(stats["1"]["accuracy_by_split"]) == {"generalization", "transfer"}
    assert 0 <= stats["1"]["reflection_parse_failure_rate"] <= 100 and stats["0"]["reflection_parse_failure_rate"] is None
    frame = load_results(run_dir)
    assert set(summarize(frame)["task_name"]) == {"iot/generalization", "iot/transfer"}
    splits = split_summary(frame)
    assert list(splits.columns) == [
        "model_id",
        "task_name",
        "split",
        "mode",
        "epoch",
        "samples",
        "exact_match",
        "token_f1",
        "semantic",
        "parse_failure_rate",
    ]
    cells = baseline_vs_ace_by_split(splits, [run_dir])
    assert list(cells["split"]) == ["generalization", "transfer"] and set(cells["samples"]) == {2}
    assert cells["reflection_parse_failure_rate"].between(0, 100).all()
    assert len(plot_splits(cells).axes[0].patches) == 4


def test_the_reflector_can_run_on_another_model(tiny_model_dir, tiny_torch, tmp_path, monkeypatch):
    other = make_tiny_llama(tmp_path / "other-tiny", seed=1)
    used = []
    original = runs.AceRunner._generate

    def record(self, model, *args, **kwargs):
        used.append((model is tiny_torch, args[1]))
        return original(self, model, *args, **kwargs)

    monkeypatch.setattr(runs.AceRunner, "_generate", record)
    config = domain_config(tiny_model_dir, reflector_model=str(other))
    run_ace(config, tmp_path / "run", model=tiny_torch, progress=False)
    assert {prefix for generator, prefix in used if generator} == {"Answer:"}
    assert {prefix for generator, prefix in used if not generator} == {"Lesson:"}
    assert json.loads((tmp_path / "run" / "config.json").read_text())["reflector_model"] == str(other)


def test_a_reflector_that_cannot_load_stops_the_run_before_it_starts(tiny_model_dir, tiny_torch, tmp_path, monkeypatch):
    def no_generation(*args, **kwargs):
        raise AssertionError("generation started")

    monkeypatch.setattr(runs.AceRunner, "_generate", no_generation)
    for name in ("no-such-model-anywhere", str(tmp_path)):  # an unknown name; a folder that holds no model
        with pytest.raises(AceRunError) as error:
            run_ace(domain_config(tiny_model_dir, reflector_model=name), tmp_path / "run", model=tiny_torch, progress=False)
        message = str(error.value)
        assert message.startswith(f"The Reflector model '{name}' cannot be loaded (") and message.count("\n") == 0
    assert not (tmp_path / "run").exists()
    code = main(
        [
            "ace",
            "run",
            "--task",
            "iot",
            "--limit",
            "1",
            "--model",
            str(tiny_model_dir),
            "--backend",
            "torch",
            "--reflector-model",
            "no-such-model-anywhere",
            "--out",
            str(tmp_path / "cli"),
        ]
    )
    assert code == 2 and not (tmp_path / "cli").exists()
