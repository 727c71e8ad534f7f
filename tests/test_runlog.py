"""The run log's sinks: metrics.jsonl, and Weights & Biases in its offline mode (the run folder W&B writes holds the
same scalars at the same steps as the JSON lines; ``wandb sync`` would upload it). W&B is optional: never required."""

from __future__ import annotations

import json
import struct
import sys
import zlib
from pathlib import Path

import pytest

from slmlab.errors import SlmLabError
from slmlab.runlog import WANDB_DIR, RunLog, read_metrics, wandb_wanted
from slmlab.trainloop import TrainState

LOGGED = {"loss": "loss/total", "reward": "reward/mean"}


def drive(log: RunLog, steps: int = 3) -> None:
    state = TrainState(total_steps=steps)
    for step in range(1, steps + 1):
        state.step, state.scalars = step, {"loss": 1.0 / step, "reward": 0.25 * step, "tokens": 10}
        log("step", state)
    state.valid_loss.append((steps, 0.5))
    log("eval", state)
    log.close()


def wandb_records(path: Path) -> list[bytes]:
    """The records of a W&B transaction log (``run-<id>.wandb``): a LevelDB-style log of 32 KiB blocks after a 7-byte
    header, each record ``crc32 (4) length (2) type (1) data``, split across blocks as FIRST / MIDDLE / LAST.

    Written here because W&B's own reader moved into its Go core; the format is its documented LevelDB log."""
    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B", "not a W&B transaction log"
    records, pending, offset = [], b"", 7
    while offset + 7 <= len(data):
        room = block - offset % block
        if room < 7:  # the block's tail is too short for a header: zero padding
            offset += room
            continue
        crc, length, kind = struct.unpack("<IHB", data[offset : offset + 7])
        if length == 0 and kind == 0:
            break
        chunk = data[offset + 7 : offset + 7 + length]
        assert zlib.crc32(bytes([kind]) + chunk) & 0xFFFFFFFF == crc, "corrupt record"
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            records.append(pending)
        offset += 7 + length
    return records


def wandb_history(run_folder: Path) -> list[dict[str, float]]:
    """Every ``history`` record of an offline W&B run: {tag: value, "_step": step}."""
    from wandb.proto import wandb_internal_pb2

    history = []
    for raw in wandb_records(next(run_folder.glob("run-*.wandb"))):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        if record.WhichOneof("record_type") == "history":
            history.append({item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item})
    return history


def test_the_json_lines_hold_every_step(tmp_path):
    drive(RunLog(tmp_path, LOGGED, tensorboard=False, eval_tag="loss/valid", wandb=False))
    records = read_metrics(tmp_path)
    assert [r["step"] for r in records] == [1, 2, 3, 3]
    assert records[-1] == {"step": 3, "valid_loss": 0.5}
    assert not (tmp_path / WANDB_DIR).exists()


def test_wandb_is_off_unless_asked(monkeypatch):
    monkeypatch.setenv("SLMLAB_WANDB", "")
    assert not wandb_wanted()
    monkeypatch.setenv("SLMLAB_WANDB", "1")
    assert wandb_wanted() and not wandb_wanted(False)


def test_offline_wandb_run_holds_the_same_scalars(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_INIT_TIMEOUT", "600")  # a loaded 2-core machine starts W&B's service slowly
    monkeypatch.setenv("WANDB__SERVICE_WAIT", "600")
    monkeypatch.setenv("SLMLAB_WANDB", "1")
    drive(RunLog(tmp_path, LOGGED, tensorboard=False, eval_tag="loss/valid", config={"steps": 3}))
    runs = sorted((tmp_path / WANDB_DIR / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, "one offline W&B run folder (what `wandb sync` uploads)"
    logged = {(row["_step"], tag): value for row in wandb_history(runs[0]) for tag, value in row.items() if "/" in tag}
    expected = {}
    for record in read_metrics(tmp_path):
        for key, value in record.items():
            if key != "step":
                expected[(record["step"], {**LOGGED, "valid_loss": "loss/valid"}[key])] = value
    assert logged == expected


def test_missing_wandb_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if it were not installed
    log = RunLog(tmp_path, LOGGED, tensorboard=False, wandb=True)
    with pytest.raises(SlmLabError, match=r"pip install 'slmlab\[wandb\]'"):
        log("step", TrainState(step=1, scalars={"loss": 1.0}))


@pytest.mark.parametrize("command", [["lm", "train"], ["rl", "train"], ["mcts", "run"], ["mcts", "train"]])
def test_training_commands_take_wandb(command, monkeypatch):
    from slmlab.cli import build_parser
    from slmlab.runlog import use_wandb_option

    monkeypatch.setenv("SLMLAB_WANDB", "")  # recorded, so the variable the option sets is undone after the test
    use_wandb_option(build_parser().parse_args(command))
    assert not wandb_wanted()
    use_wandb_option(build_parser().parse_args([*command, "--wandb"]))
    assert wandb_wanted()
