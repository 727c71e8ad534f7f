"""The command line of chapters 01-04 on the tiny random model: patterns → data → adapter → evaluation, adapter
conversion both ways, one-line errors on bad input, and option defaults that are the config dataclasses'."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import re
from pathlib import Path

import pytest
import yaml

from slmlab.cli import build_parser, main
from slmlab.generation import DecodingConfig
from slmlab.lora.datagen import DataConfig
from slmlab.lora.training import TrainConfig
from slmlab.testing import toy_patterns


@dataclasses.dataclass
class Run:
    code: int
    out: str
    err: str


def run_cli(*argv: str | Path) -> Run:
    """``slmlab ARGV`` in-process, with what it printed."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(arg) for arg in argv])
    return Run(code, out.getvalue(), err.getvalue())


def write_patterns(folder: Path, patterns) -> Path:
    """Patterns as one YAML file of the documented schema (a top-level category and a list of patterns)."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = [{"id": p.id, "input": p.input, "output": p.output, "paraphrases": list(p.paraphrases)} for p in patterns]
    (folder / "toy.yaml").write_text(yaml.safe_dump({"category": "fact", "patterns": entries}, sort_keys=False), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def patterns_dir(tmp_path_factory) -> Path:
    return write_patterns(tmp_path_factory.mktemp("patterns"), toy_patterns(6))


@pytest.fixture(scope="module")
def data_run(patterns_dir, tmp_path_factory) -> tuple[Run, Path]:
    out = tmp_path_factory.mktemp("data")
    return run_cli("data", "--patterns", patterns_dir, "--out", out), out


@pytest.fixture(scope="module")
def train_run(data_run, tiny_model_dir, tmp_path_factory) -> tuple[Run, Path]:
    _, data = data_run
    out = tmp_path_factory.mktemp("adapters") / "toy-lora"
    run = run_cli(
        "train",
        "--data",
        data,
        "--out",
        out,
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--model",
        tiny_model_dir,
        "--backend",
        "torch",
    )
    return run, out


# --- chapter 01: patterns ---------------------------------------------------------------------------------
def test_patterns_validate_accepts_a_good_folder(patterns_dir):
    run = run_cli("patterns", "validate", patterns_dir)
    assert run.code == 0 and "6 patterns in 1 file(s)" in run.out and "0 error(s)" in run.out


def test_patterns_validate_names_the_file_and_line_of_broken_yaml(tmp_path):
    (tmp_path / "broken.yaml").write_text("category: fact\npatterns:\n  - id: a\n    input: [never closed\n", encoding="utf-8")
    run = run_cli("patterns", "validate", tmp_path)
    assert run.code == 1
    assert re.search(r"broken\.yaml:\d+:\d+: error: yaml", run.out), run.out


# --- chapter 02: data -------------------------------------------------------------------------------------
def test_data_writes_the_three_splits(data_run):
    run, out = data_run
    assert run.code == 0, run.err
    assert {path.name for path in out.iterdir()} >= {"train.jsonl", "valid.jsonl", "test.jsonl"}
    assert f"to {out}" in run.out
    assert all((out / f"{split}.jsonl").read_text(encoding="utf-8").strip() for split in ("train", "valid", "test"))


# --- chapter 03: training ---------------------------------------------------------------------------------
def test_train_writes_an_adapter(train_run):
    run, out = train_run
    assert run.code == 0, run.err
    assert (out / "adapter_config.json").is_file() and (out / "training_metrics.json").is_file()
    assert f"adapter: {out}" in run.out


# --- chapter 04: evaluation -------------------------------------------------------------------------------
def test_eval_prints_the_json_summary(train_run, data_run, tiny_model_dir, tmp_path):
    _, adapter = train_run
    _, data = data_run
    run = run_cli(
        "eval",
        "--adapter",
        adapter,
        "--data",
        data,
        "--results",
        tmp_path,
        "--model",
        tiny_model_dir,
        "--backend",
        "torch",
        "--limit",
        "2",
    )
    assert run.code == 0, run.err
    summary = json.loads(run.out)
    assert set(summary) == {"baseline", "tuned", "improvement"}
    assert any(tmp_path.iterdir())


# --- adapters ---------------------------------------------------------------------------------------------
def test_adapter_convert_both_ways(train_run, tiny_model_dir, tmp_path):
    _, peft = train_run
    to_mlx = run_cli("adapter", "convert", peft, tmp_path / "mlx", "--to", "mlx", "--base", tiny_model_dir)
    assert to_mlx.code == 0, to_mlx.err
    assert (tmp_path / "mlx" / "adapters.safetensors").is_file()
    back = run_cli("adapter", "convert", tmp_path / "mlx", tmp_path / "peft", "--to", "peft", "--base", tiny_model_dir)
    assert back.code == 0, back.err
    assert (tmp_path / "peft" / "adapter_config.json").is_file()
    assert str(tmp_path / "peft") in back.out


# --- bad input --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("verb", ["train", "eval"])
def test_a_missing_data_folder_is_a_one_line_error(verb, tiny_model_dir, tmp_path):
    run = run_cli(
        verb,
        "--data",
        tmp_path / "no-such-data",
        "--model",
        tiny_model_dir,
        "--backend",
        "torch",
        "--out" if verb == "train" else "--results",
        tmp_path / "out",
    )
    lines = run.err.strip().splitlines()
    assert run.code == 2 and len(lines) == 1 and lines[0].startswith("slmlab: error:"), run.err
    assert "no-such-data" in lines[0]


def test_out_of_range_settings_are_a_one_line_error_naming_the_field(tmp_path):
    run = run_cli("train", "--steps", "0", "--data", tmp_path, "--out", tmp_path / "out")
    assert run.code == 2 and run.err.strip() == "slmlab: error: TrainConfig: out of range: steps=0"
    assert not (tmp_path / "out").exists()


def test_missing_patterns_are_an_error_naming_the_folder(tmp_path):
    run = run_cli("data", "--patterns", tmp_path / "no-such-patterns", "--out", tmp_path / "data")
    assert run.code == 2 and run.err.startswith("slmlab: error:") and "no-such-patterns" in run.err.splitlines()[0]
    assert not (tmp_path / "data").exists()


# --- defaults ---------------------------------------------------------------------------------------------
def _defaults(*argv: str) -> dict:
    return vars(build_parser().parse_args(list(argv)))


def test_option_defaults_are_the_config_dataclasses():
    train, config = _defaults("train"), TrainConfig()
    assert (train["steps"], train["batch_size"], train["learning_rate"], train["rank"], train["seed"]) == (
        config.steps,
        config.batch_size,
        config.learning_rate,
        config.rank,
        config.seed,
    )
    data = _defaults("data")
    assert (data["variants"], data["seed"]) == (DataConfig().variants_per_prompt, DataConfig().seed)
    generate, decoding = _defaults("generate", "hi"), DecodingConfig()
    assert (
        generate["strategy"],
        generate["max_new_tokens"],
        generate["temperature"],
        generate["top_k"],
        generate["top_p"],
        generate["beams"],
        generate["seed"],
    ) == (
        decoding.strategy,
        decoding.max_new_tokens,
        decoding.temperature,
        decoding.top_k,
        decoding.top_p,
        decoding.num_beams,
        decoding.seed,
    )


def test_ace_run_defaults_are_ace_config():
    from slmlab.ace.runs import AceConfig

    run, config = _defaults("ace", "run"), AceConfig()
    assert (
        run["task"],
        run["mode"],
        run["epochs"],
        run["seed"],
        run["model"],
        run["batch_size"],
        run["top_k"],
        run["token_budget"],
        run["dedup_threshold"],
    ) == (
        config.task,
        config.mode,
        config.epochs,
        config.seed,
        config.model_id,
        config.batch_size,
        config.top_k,
        config.token_budget,
        config.dedup_threshold,
    )


def test_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert f"(default: {TrainConfig().steps})" in capsys.readouterr().out
