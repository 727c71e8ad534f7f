"""Checkpoint folders (atomic writes, rotation, the resume check), the atomic folder writer beneath them, and the one
optimizer / schedule / random-state file every trainer saves."""

from __future__ import annotations

import pytest

from slmlab.checkpoints import (
    OPTIMIZER_FILE,
    describe_changes,
    latest_checkpoint,
    list_checkpoints,
    load_training_state,
    read_checkpoint,
    resumable_checkpoint,
    rotate_checkpoints,
    save_training_state,
    settings_changes,
    write_checkpoint,
)
from slmlab.io import atomic_folder, atomic_write_folder, remove_stale_temps

SETTINGS = {"learning_rate": 0.001, "seed": 0, "steps": 10, "target_modules": ("q", "v")}


def weights(text: str):
    return lambda folder: (folder / "weights.bin").write_text(text)


def save(run, step: int, valid_loss=(), keep: int = 100, settings=SETTINGS):
    return write_checkpoint(run, step, {"step": step, "valid_loss": list(valid_loss)}, settings, weights(str(step)), keep)


def names(run) -> list[str]:
    return [p.name for p in list_checkpoints(run)]


def test_checkpoint_folder_holds_the_files_and_the_state(tmp_path):
    folder = save(tmp_path, 7)
    assert folder == tmp_path / "checkpoints" / "step-000007"
    assert (folder / "weights.bin").read_text() == "7"
    state, settings = read_checkpoint(folder)
    assert state == {"step": 7, "valid_loss": []} and settings == SETTINGS | {"target_modules": ["q", "v"]}
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-000007"]


def test_rotation_keeps_the_last_k_and_the_best_by_validation_loss(tmp_path):
    for step, loss in [(1, 3.0), (2, 1.0), (3, 2.0), (4, 1.5), (5, 1.4)]:
        save(tmp_path, step, [(step, loss)], keep=2)
    assert names(tmp_path) == ["step-000002", "step-000004", "step-000005"]
    plain = tmp_path / "plain"  # no validation loss recorded: just the last two
    for step in range(1, 6):
        save(plain, step, keep=2)
    assert names(plain) == ["step-000004", "step-000005"]
    late = tmp_path / "late"  # a loss measured at an earlier step does not describe a later checkpoint's weights
    save(late, 2, [(2, 3.0)])
    save(late, 3, [(2, 0.1)])
    save(late, 4, [(2, 3.0), (4, 4.0)])
    assert [p.name for p in rotate_checkpoints(late, 1)] == ["step-000003"]


def test_latest_skips_half_written_folders(tmp_path):
    good = save(tmp_path, 3)
    folder = tmp_path / "checkpoints"
    (folder / "step-000004").mkdir()  # no trainer_state.json: the save died before it
    for name in ("step-000005.partial", ".step-000006.abc.tmp", "step-x"):
        (folder / name).mkdir()
        (folder / name / "trainer_state.json").write_text("{}")
    assert latest_checkpoint(tmp_path) == good
    assert latest_checkpoint(tmp_path / "nowhere") is None


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_failed_save_leaves_the_previous_checkpoints_and_no_temporary_folder(tmp_path, failure):
    good = save(tmp_path, 2)

    def dies(folder):
        (folder / "weights.bin").write_text("partial")
        raise failure

    with pytest.raises(type(failure)):
        write_checkpoint(tmp_path, 4, {"step": 4}, SETTINGS, dies)
    assert latest_checkpoint(tmp_path) == good
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-000002"]


def test_settings_changes_name_the_keys(tmp_path):
    now = SETTINGS | {"learning_rate": 0.002, "seed": 1, "steps": 20}
    changes = settings_changes(SETTINGS, now, ignore=("steps",))
    assert changes == {"learning_rate": (0.001, 0.002), "seed": (0, 1)}
    assert describe_changes(changes) == "learning_rate: 0.001 -> 0.002, seed: 0 -> 1"
    assert settings_changes(SETTINGS, SETTINGS | {"target_modules": ["q", "v"]}) == {}  # tuples equal lists
    assert describe_changes(settings_changes({"a": 1}, {"b": "x"})) == 'a: 1 -> (none), b: (none) -> "x"'


def test_resume_check_refuses_other_settings_and_clears_the_old_run(tmp_path):
    save(tmp_path, 4)
    (tmp_path / "metrics.jsonl").write_text("{}\n")
    (tmp_path / "tensorboard").mkdir()
    assert resumable_checkpoint(tmp_path, SETTINGS | {"steps": 99}, ignore=("steps",)).name == "step-000004"
    with pytest.warns(UserWarning, match=r"other training settings \(seed: 0 -> 3\); starting a new run"):
        assert resumable_checkpoint(tmp_path, SETTINGS | {"seed": 3}, run_files=("metrics.jsonl", "tensorboard")) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    save(tmp_path, 4)
    assert resumable_checkpoint(tmp_path, SETTINGS, resume=False) is None and latest_checkpoint(tmp_path) is None


# --- the atomic folder writer ------------------------------------------------------------------------


def test_atomic_folder_replaces_an_old_folder_whole(tmp_path):
    out = tmp_path / "adapter"
    atomic_write_folder(out, lambda tmp: (tmp / "old.txt").write_text("old"))
    atomic_write_folder(out, lambda tmp: (tmp / "new.txt").write_text("new"))
    assert [p.name for p in out.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"]


@pytest.mark.parametrize("failure", [RuntimeError("boom"), KeyboardInterrupt()])
def test_atomic_folder_keeps_the_old_folder_on_error_or_ctrl_c(tmp_path, failure):
    out = tmp_path / "adapter"
    atomic_write_folder(out, lambda tmp: (tmp / "good.txt").write_text("good"))
    with pytest.raises(type(failure)), atomic_folder(out) as tmp:
        (tmp / "half.txt").write_text("half")
        raise failure
    assert [p.name for p in out.iterdir()] == ["good.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"]


def test_atomic_folder_merge_keeps_the_other_files(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "adapter_config.json").write_text("old")
    with atomic_folder(run, merge=True) as tmp:
        (tmp / "adapter_config.json").write_text("new")
        (tmp / "weights.safetensors").write_text("w")
    assert sorted(p.name for p in run.iterdir()) == ["adapter_config.json", "checkpoints", "weights.safetensors"]
    assert (run / "adapter_config.json").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_remove_stale_temps_removes_only_temporary_siblings(tmp_path):
    for name in (".model.123.tmp", ".model.lock", "model", ".other.1.tmp"):
        (tmp_path / name).mkdir()
    remove_stale_temps(tmp_path / "model")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".model.lock", ".other.1.tmp", "model"]


# --- the optimizer, schedule and random state --------------------------------------------------------------------


def _trainer(seed: int = 0):
    import torch

    torch.manual_seed(seed)
    layer = torch.nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(layer.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1 + step))
    return layer, optimizer, scheduler


def _step(layer, optimizer, scheduler) -> None:
    import torch

    layer(torch.randn(5, 4)).pow(2).mean().backward()
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()


def test_training_state_round_trips_optimizer_schedule_rng_and_extras(tmp_path):
    import torch

    layer, optimizer, scheduler = _trainer()
    _step(layer, optimizer, scheduler)
    save_training_state(tmp_path / OPTIMIZER_FILE, optimizer, scheduler, baselines={"a": 0.5}, seen=[1, 2])
    expected_draw = torch.rand(3)
    _step(layer, optimizer, scheduler)  # move everything on, then put it back
    copy, fresh_optimizer, fresh_scheduler = _trainer(seed=1)
    copy.load_state_dict(layer.state_dict())
    extras = load_training_state(tmp_path / OPTIMIZER_FILE, fresh_optimizer, fresh_scheduler)
    assert extras == {"baselines": {"a": 0.5}, "seen": [1, 2]}
    assert torch.equal(torch.rand(3), expected_draw)  # the random state is the saved one
    assert fresh_scheduler.last_epoch == 1 and fresh_optimizer.state_dict()["state"][0]["step"] == 1


def test_training_state_reads_the_earlier_layout_and_runs_no_code(tmp_path):
    import pickle

    import torch

    layer, optimizer, scheduler = _trainer()
    _step(layer, optimizer, scheduler)
    torch.save(
        {
            "optimizer": optimizer.state_dict(),
            "plateau": scheduler.state_dict(),
            "learner": {"step": 3},
            "torch_rng": torch.get_rng_state(),
        },
        tmp_path / "old.pt",
    )  # the RL learner's file before
    _, fresh_optimizer, fresh_scheduler = _trainer()
    assert load_training_state(tmp_path / "old.pt", fresh_optimizer, fresh_scheduler) == {"learner": {"step": 3}}
    torch.save(
        {"optimizer": optimizer.state_dict(), "rng": {"torch": torch.get_rng_state()}, "extra": {"f": print}},
        tmp_path / "code.pt",
    )  # a callable in the file: weights_only refuses it
    with pytest.raises(pickle.UnpicklingError):
        load_training_state(tmp_path / "code.pt", fresh_optimizer)
