"""Chapter 08 monitoring: tokens of generated code (counted by hand), the teacher-forced next-token table on a tiny
Llama, the weight-change monitor and its warnings, the rotating run log, the rich live panel and the per-task tables."""

from __future__ import annotations

import io
import json
import logging
import math

import pandas as pd
import pytest
import torch
from rich.console import Console
from transformers import LlamaConfig, LlamaForCausalLM

from slmlab.rl.monitor import (
    ATTEMPT_COLUMNS,
    LOG_FILE,
    STRING,
    LivePanel,
    WeightChangeMonitor,
    attempts_frame,
    attempts_table,
    close_run_logger,
    code_tokens,
    line_tokens,
    next_token_table,
    per_task_curves,
    run_logger,
    token_report,
)
from slmlab.trainloop import TrainState

VOCAB = 50


# --- tokens ---------------------------------------------------------------------------------------------------------
def test_code_tokens_keeps_code_and_collapses_strings() -> None:
    code = 'def f(x):\n    # a comment\n    return x ** 2 + "a"  # trailing\n'
    assert code_tokens(code) == ["def", "f", "(", "x", ")", ":", "return", "x", "**", "2", "+", STRING]


@pytest.mark.parametrize(
    "broken, expected",
    [
        ("def f(x:\n    return [x", ["def", "f", "(", "x", ":", "return", "[", "x"]),  # unclosed brackets
        ("def f(x):\n        a = 1\n    return a\n", ["def", "f", "(", "x", ")", ":", "a", "=", "1", "return", "a"]),  # dedent
        ("x = 'abc\ny = $", ["x", "=", STRING, "y", "=", "$"]),  # unterminated string, stray character
    ],
)
def test_code_tokens_falls_back_on_broken_code(broken: str, expected: list[str]) -> None:
    assert code_tokens(broken) == expected


def test_line_tokens_groups_by_starting_line() -> None:
    assert line_tokens('s = """doc\nmore"""\n\nx=1\n') == [["s", "=", STRING], ["x", "=", "1"]]


CODES = ["x = 1\ny = x\n", "x = 'a'\n"]  # x 3, = 3, 1 1, y 1, <STR> 1: 9 tokens


def test_token_report_counts_frequencies_and_pairs() -> None:
    report = token_report(CODES)
    assert (report.programs, report.tokens) == (2, 9)
    assert report.frequencies["token"].tolist() == ["=", "x", "1", STRING, "y"]
    assert report.frequencies["count"].tolist() == [3, 3, 1, 1, 1]
    assert report.frequencies["share"].tolist() == pytest.approx([3 / 9, 3 / 9, 1 / 9, 1 / 9, 1 / 9])
    pairs = list(report.cooccurrence.itertuples(index=False, name=None))
    assert pairs[0] == ("=", "x", 3)  # on all three lines
    assert sorted(pairs[1:]) == [("1", "=", 1), ("1", "x", 1), (STRING, "=", 1), (STRING, "x", 1), ("=", "y", 1), ("x", "y", 1)]
    assert report.overused is None and report.underused is None
    assert len(token_report(CODES, top=2).cooccurrence) == 2


def test_token_report_against_references_uses_add_one_smoothing() -> None:
    # joint vocabulary of 6 tokens: generated (count + 1) / 15, reference (count + 1) / 9 with reference x, =, 2 once
    report = token_report(CODES, reference_codes=["x = 2\n"])
    assert report.overused["token"].tolist() == ["1", STRING, "=", "x", "y"]
    assert report.overused["log_ratio"].tolist() == pytest.approx([math.log(1.2)] * 5)  # 4/15 : 2/9 = 2/15 : 1/9
    assert report.overused.set_index("token").loc["x", "reference_share"] == pytest.approx(1 / 3)
    assert report.underused["token"].tolist() == ["2"]
    row = report.underused.iloc[0]
    assert (row["generated_share"], row["reference_share"]) == (0.0, pytest.approx(1 / 3))
    assert row["log_ratio"] == pytest.approx(math.log((1 / 15) / (2 / 9)))


def test_token_report_of_nothing_is_empty() -> None:
    report = token_report([], reference_codes=[])
    assert report.tokens == 0 and report.frequencies.empty and report.cooccurrence.empty and report.overused.empty


# --- next-token table ---------------------------------------------------------------------------------------------
class DigitTokenizer:
    def decode(self, ids: list[int]) -> str:
        return "".join(f"<{i}>" for i in ids)


def tiny_llama() -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(config)


def test_next_token_table_matches_the_softmax_of_the_logits() -> None:
    model = tiny_llama().train()
    prompt, completion = [3, 7, 11], [5, 9, 2, 40]
    table = next_token_table(model, DigitTokenizer(), prompt, completion, top=VOCAB)
    assert model.training  # mode restored
    assert len(table) == len(completion)
    assert table["position"].tolist() == [0, 1, 2, 3] and table["token"].tolist() == ["<5>", "<9>", "<2>", "<40>"]
    with torch.no_grad():
        probs = torch.softmax(model.eval()(torch.tensor([prompt + completion])).logits[0].float(), dim=-1)
    for row in table.itertuples():
        expected = probs[len(prompt) - 1 + row.position]
        assert row.probability == pytest.approx(float(expected[row.token_id]), rel=1e-4)
        assert row.entropy == pytest.approx(float(-(expected * expected.log()).sum()), rel=1e-4)
        assert 0 < row.entropy <= math.log(VOCAB) + 1e-6
        assert sum(row.alternative_probabilities) == pytest.approx(1.0, abs=1e-4)  # all VOCAB alternatives
        assert row.alternative_probabilities == sorted(row.alternative_probabilities, reverse=True)
        assert f"<{row.token_id}>" in row.alternatives


def test_next_token_table_top_and_edges() -> None:
    model = tiny_llama()
    table = next_token_table(model, DigitTokenizer(), [1], [4, 4], top=3)
    assert all(len(alternatives) == 3 for alternatives in table["alternatives"])
    assert all(row.alternative_probabilities[0] >= row.probability for row in table.itertuples())
    assert next_token_table(model, DigitTokenizer(), [1], []).empty
    with pytest.raises(ValueError, match="prompt token"):
        next_token_table(model, DigitTokenizer(), [], [4])


# --- weight changes -----------------------------------------------------------------------------------------------
def parameters() -> list[tuple[str, torch.nn.Parameter]]:
    return [("a", torch.nn.Parameter(torch.ones(4))), ("lora_B", torch.nn.Parameter(torch.zeros(3)))]


def test_weight_change_is_relative_to_all_tracked_weights_together() -> None:
    tracked = parameters()
    monitor = WeightChangeMonitor(tracked, explode=10.0, vanish=1e-9)
    with torch.no_grad():
        tracked[1][1].add_(1.0)  # the zero matrix moves: a per-tensor ratio would divide by 0
    assert monitor.update() == pytest.approx(math.sqrt(3) / 2)  # ||(0, 1, 1, 1)|| / ||(1, 1, 1, 1)||
    assert monitor.update() == 0.0  # measured against the new snapshot
    with torch.no_grad():
        tracked[0][1].mul_(2.0)
    assert monitor.update() == pytest.approx(2 / math.sqrt(7))


def test_weight_change_warns_once_per_streak(caplog) -> None:
    tracked = parameters()
    logger = logging.getLogger("slmlab.test.weights")
    monitor = WeightChangeMonitor(tracked, explode=0.5, vanish=1e-6, patience=2, logger=logger)
    with caplog.at_level(logging.WARNING, logger="slmlab.test.weights"):
        for _ in range(3):
            monitor.update()  # nothing moves
        assert len(monitor.warnings) == 1 and monitor.warnings[0].startswith("weights barely changing")
        for _ in range(3):
            with torch.no_grad():
                tracked[0][1].mul_(2.0)
            monitor.update()  # doubles each time: relative change 1
        assert len(monitor.warnings) == 2 and monitor.warnings[1].startswith("weights changing fast")
    assert [record.levelno for record in caplog.records] == [logging.WARNING, logging.WARNING]
    assert monitor.state_dict() == {"updates": 6, "fast_streak": 3, "slow_streak": 0}


def test_weight_change_resumes_its_streaks() -> None:
    monitor = WeightChangeMonitor(parameters(), explode=0.5, vanish=1e-6, patience=3)
    monitor.update()
    monitor.update()
    resumed = WeightChangeMonitor(parameters(), explode=0.5, vanish=1e-6, patience=3)
    resumed.load_state_dict(json.loads(json.dumps(monitor.state_dict())))
    resumed.update()  # the third slow update in a row
    assert resumed.updates == 3 and len(resumed.warnings) == 1


def test_weight_change_checks_its_settings() -> None:
    with pytest.raises(ValueError, match="at least one"):
        WeightChangeMonitor([], explode=1.0, vanish=0.0)
    with pytest.raises(ValueError, match="vanish < explode"):
        WeightChangeMonitor(parameters(), explode=1e-6, vanish=1.0)


# --- run log ------------------------------------------------------------------------------------------------------
def test_run_logger_rotates_and_is_idempotent(tmp_path) -> None:
    logger = run_logger(tmp_path / "run", name="slmlab.test.runlog", max_bytes=200, backups=2)
    try:
        assert run_logger(tmp_path / "run", name="slmlab.test.runlog") is logger
        assert len(logger.handlers) == 1 and logger.propagate and logger.level == logging.INFO
        for index in range(40):
            logger.info("step %d of a long run", index)
        logger.warning("weights barely changing")
        files = sorted(path.name for path in (tmp_path / "run").iterdir())
        assert files == [LOG_FILE, LOG_FILE + ".1", LOG_FILE + ".2"]
        last = (tmp_path / "run" / LOG_FILE).read_text(encoding="utf-8").splitlines()[-1]
        assert last.endswith(" WARNING weights barely changing") and last[:4].isdigit()
        run_logger(tmp_path / "other", name="slmlab.test.runlog")  # a new run closes the old run's file
        assert [handler.baseFilename for handler in logger.handlers] == [str((tmp_path / "other" / LOG_FILE).resolve())]
    finally:
        close_run_logger(logger)
    assert logger.handlers == []


# --- live panel ---------------------------------------------------------------------------------------------------
SCALARS = {
    "reward": 0.4213,
    "pass_rate": 0.25,
    "duplicate_rate": 0.125,
    "hints": 2.0,
    "lr": 1e-4,
    "grad_norm": 0.731,
    "weight_change": 3.2e-5,
    "completions_per_s": 5.5,
}


def test_live_panel_renders_the_latest_step() -> None:
    output = io.StringIO()
    panel = LivePanel(10, console=Console(file=output, force_terminal=False, width=100))
    panel("step", TrainState(step=2, total_steps=10, scalars={"reward": 0.1}))
    panel("step", TrainState(step=3, total_steps=10, scalars=SCALARS))
    panel("eval", TrainState(step=3))
    panel("end", TrainState(step=3))
    text = output.getvalue()
    for expected in ("3/10 (30%)", "0.421", "25.0%", "12.5%", "1.00e-04", "0.731", "3.20e-05", "5.50", "elapsed"):
        assert expected in text


def test_live_panel_as_context_manager_shows_missing_values() -> None:
    output = io.StringIO()
    with LivePanel(4, console=Console(file=output, force_terminal=False, width=100)) as panel:
        panel("step", TrainState(step=1, scalars={"reward": 0.5}))
    text = output.getvalue()
    assert "1/4" in text and "0.500" in text and "-" in text
    panel.stop()  # stopping twice is harmless


# --- attempts -----------------------------------------------------------------------------------------------------
def attempt(
    step: int, task: str, family: str, reward: float, status: str, duplicate: bool = False, hint: str | None = None
) -> dict:
    return {
        "step": step,
        "task": task,
        "family": family,
        "sample": 0,
        "reward": reward,
        "status": status,
        "duplicate": duplicate,
        "hint": hint,
        "tokens": 10,
        "code": "pass\n",
    }


ATTEMPTS = pd.DataFrame(
    [
        attempt(1, "sum", "math", 0.1, "wrong_answer"),
        attempt(1, "sum", "math", 0.1, "wrong_answer", duplicate=True),
        attempt(1, "rev", "strings", 0.0, "syntax_error"),
        attempt(2, "rev", "strings", 0.5, "partial", hint="slice"),
        attempt(3, "rev", "strings", 1.0, "passed", hint="slice"),
        attempt(3, "abs", "math", 1.0, "passed"),
        attempt(4, "rev", "strings", 1.0, "passed", hint="step -1"),
    ]
)


def test_attempts_table_per_task() -> None:
    table = attempts_table(ATTEMPTS)
    assert table.index.tolist() == ["abs", "sum", "rev"]  # by family, then task
    assert table.columns.tolist() == [
        "family",
        "attempts",
        "executed",
        "best_reward",
        "mean_reward",
        "pass_rate",
        "first_pass_step",
        "hints",
    ]
    rev = table.loc["rev"]
    assert (rev["attempts"], rev["executed"], rev["best_reward"], rev["hints"]) == (4, 4, 1.0, 2)
    assert rev["mean_reward"] == pytest.approx(2.5 / 4) and rev["pass_rate"] == 0.5 and rev["first_pass_step"] == 3
    summed = table.loc["sum"]
    assert (summed["attempts"], summed["executed"], summed["pass_rate"]) == (2, 1, 0.0)
    assert math.isnan(summed["first_pass_step"])
    assert attempts_table(ATTEMPTS.iloc[0:0]).empty


def test_per_task_curves_means_and_window() -> None:
    curves = per_task_curves(ATTEMPTS)
    assert curves.index.tolist() == [1, 2, 3, 4] and curves.columns.tolist() == ["abs", "rev", "sum"]
    assert curves["rev"].tolist() == [0.0, 0.5, 1.0, 1.0]
    assert curves.loc[1, "sum"] == pytest.approx(0.1) and curves["sum"].iloc[1:].isna().all()
    smooth = per_task_curves(ATTEMPTS, window=2)
    assert smooth["rev"].tolist() == [0.0, 0.25, 0.75, 1.0]
    assert smooth["abs"].isna().tolist() == [True, True, False, True]  # still blank where it was not drawn
    assert per_task_curves(ATTEMPTS.iloc[0:0]).empty
    with pytest.raises(ValueError):
        per_task_curves(ATTEMPTS, window=0)


def test_attempts_frame_reads_the_run_file(tmp_path) -> None:
    empty = attempts_frame(tmp_path)
    assert empty.empty and tuple(empty.columns) == ATTEMPT_COLUMNS
    lines = [json.dumps(row) for row in ATTEMPTS.to_dict("records")]
    (tmp_path / "attempts.jsonl").write_text("\n".join(lines) + '\n{"step": 5, "ta', encoding="utf-8")  # killed mid-line
    frame = attempts_frame(tmp_path)
    assert len(frame) == len(ATTEMPTS) and tuple(frame.columns) == ATTEMPT_COLUMNS
    assert attempts_table(frame).equals(attempts_table(ATTEMPTS))
