"""The shared training loop on a tiny torch regression: exact resume after Ctrl+C, checkpoints, settings checks,
callbacks and the metrics JSON."""

from __future__ import annotations

import json

import pytest
import torch

from slmlab.checkpoints import latest_checkpoint, read_checkpoint
from slmlab.trainloop import Checkpointing, TrainState, train_loop

SETTINGS = {"learning_rate": 0.05, "seed": 0, "steps": 12, "save_every": 4}


class StopAt:
    """A callback that presses Ctrl+C once ``step`` is done."""

    def __init__(self, step: int):
        self.step = step

    def __call__(self, event: str, state: TrainState) -> None:
        if event == "step" and state.step == self.step:
            raise KeyboardInterrupt


class Recorder:
    def __init__(self):
        self.events: list[tuple[str, int]] = []

    def __call__(self, event: str, state: TrainState) -> None:
        self.events.append((event, state.step))


class Regression:
    """A linear model fitted by SGD with momentum on minibatches drawn from torch's global RNG, so an exact
    resume needs the weights, the optimizer and the RNG from the checkpoint."""

    def __init__(self, settings: dict):
        data = torch.Generator().manual_seed(1)
        self.x = torch.randn(64, 3, generator=data)
        self.y = self.x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.1 * torch.randn(64, 1, generator=data)
        torch.manual_seed(settings["seed"])
        self.model = torch.nn.Linear(3, 1)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=settings["learning_rate"], momentum=0.9)
        self.settings = settings

    def step(self, index: int) -> dict[str, float]:
        rows = torch.randint(0, 48, (8,))
        loss = torch.nn.functional.mse_loss(self.model(self.x[rows]), self.y[rows])
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item(), "tokens": 8}

    def evaluate(self) -> float:
        with torch.no_grad():
            return torch.nn.functional.mse_loss(self.model(self.x[48:]), self.y[48:]).item()

    def save_files(self, folder) -> None:
        torch.save(
            {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "rng": torch.get_rng_state()},
            folder / "state.pt",
        )

    def load_files(self, folder) -> None:
        saved = torch.load(folder / "state.pt", weights_only=True)
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        torch.set_rng_state(saved["rng"])

    def train(self, run_dir, callbacks=(), keep: int = 2, eval_every: int = 4, **options):
        checkpointing = Checkpointing(
            run_dir, self.settings, self.save_files, self.load_files, keep=keep, ignore=("steps", "save_every")
        )
        return train_loop(
            self.step,
            self.settings["steps"],
            checkpointing,
            evaluate=self.evaluate,
            eval_every=eval_every,
            save_every=self.settings["save_every"],
            callbacks=callbacks,
            progress=False,
            metrics=lambda state: {"steps": state.step, "train_loss": state.train_loss},
            metrics_path=run_dir / "metrics.json",
            **options,
        )


def test_interrupted_then_resumed_run_equals_an_uninterrupted_one(tmp_path):
    straight = Regression(SETTINGS)
    done = straight.train(tmp_path / "straight")
    assert done.resumed_from == 0 and done.state.step == 12
    assert done.state.train_loss[-1][1] < done.state.train_loss[0][1]

    with pytest.raises(KeyboardInterrupt):
        Regression(SETTINGS).train(tmp_path / "resumed", callbacks=[StopAt(7)])
    assert latest_checkpoint(tmp_path / "resumed").name == "step-000007"
    resumed = Regression(SETTINGS)  # a new process starts from fresh weights and a reseeded RNG
    again = resumed.train(tmp_path / "resumed")
    assert again.resumed_from == 7 and again.state.step == 12
    assert again.state.train_loss == done.state.train_loss
    assert again.state.valid_loss == done.state.valid_loss
    assert again.state.trained_tokens == done.state.trained_tokens == 12 * 8
    # exact, on any CPU: both runs do the same operations in the same order in one process (a resumed run that
    # restored its state), so a difference of a single bit means some state was lost, not a kernel's rounding
    assert torch.equal(resumed.model.weight, straight.model.weight)


def test_ctrl_c_writes_a_checkpoint_of_the_steps_done_and_is_raised_again(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        Regression(SETTINGS | {"save_every": 100}).train(tmp_path / "run", callbacks=[StopAt(3)])
    checkpoint = latest_checkpoint(tmp_path / "run")
    assert checkpoint.name == "step-000003" and (checkpoint / "state.pt").is_file()
    state, settings = read_checkpoint(checkpoint)
    assert state["step"] == 3 and len(state["train_loss"]) == 3 and settings == SETTINGS | {"save_every": 100}
    assert not (tmp_path / "run" / "metrics.json").exists()  # only a finished run writes its metrics

    with pytest.raises(KeyboardInterrupt):
        Regression(SETTINGS | {"save_every": 100}).train(tmp_path / "quiet", callbacks=[StopAt(3)], save_on_interrupt=False)
    assert latest_checkpoint(tmp_path / "quiet") is None


def test_rotation_keeps_the_last_checkpoints_and_the_best_by_validation_loss(tmp_path):
    trainer = Regression(SETTINGS | {"save_every": 2})
    trainer.evaluate = iter([5.0, 1.0, 4.0, 3.0, 2.5, 2.0]).__next__  # at steps 2, 4, ..., 12: step 4 is the best
    result = trainer.train(tmp_path / "run", keep=2, eval_every=2)
    assert result.state.valid_loss[1] == (4, 1.0)
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["step-000004", "step-000010", "step-000012"]


def test_a_half_written_checkpoint_is_never_resumed(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        Regression(SETTINGS).train(run, callbacks=[StopAt(5)])
    good = latest_checkpoint(run)
    assert good.name == "step-000005"
    (run / "checkpoints" / "step-000008").mkdir()  # weights written, trainer_state.json not yet
    (run / "checkpoints" / "step-000008" / "state.pt").write_bytes(b"half")
    for temp in (".step-000009.x1y2.tmp", "step-000010.partial"):  # a save still being built
        (run / "checkpoints" / temp).mkdir()
        (run / "checkpoints" / temp / "trainer_state.json").write_text("{}")
    assert latest_checkpoint(run) == good
    assert Regression(SETTINGS).train(run).resumed_from == 5


def test_a_checkpoint_of_other_settings_is_refused_naming_the_differences(tmp_path):
    run = tmp_path / "run"
    Regression(SETTINGS).train(run)
    longer = Regression(SETTINGS | {"steps": 16, "save_every": 8})  # how long and how often only: resumed
    assert longer.train(run).resumed_from == 12
    with pytest.warns(
        UserWarning,
        match=r"other training settings \(learning_rate: 0\.05 -> 0\.1, seed: 0 -> 1\); "
        r"starting a new run",
    ):
        fresh = Regression(SETTINGS | {"learning_rate": 0.1, "seed": 1}).train(run)
    assert fresh.resumed_from == 0 and fresh.state.step == 12
    assert read_checkpoint(latest_checkpoint(run))[1]["learning_rate"] == 0.1


def test_metrics_json_is_written_at_the_end_and_callbacks_see_every_event(tmp_path):
    recorder = Recorder()
    finished: list[int] = []
    result = Regression(SETTINGS | {"steps": 4, "save_every": 2}).train(
        tmp_path / "run", callbacks=[recorder], eval_every=4, finish=lambda state: finished.append(len(recorder.events))
    )
    assert recorder.events == [
        ("step", 1),
        ("step", 2),
        ("checkpoint", 2),
        ("step", 3),
        ("step", 4),
        ("eval", 4),
        ("checkpoint", 4),
        ("end", 4),
    ]
    assert finished == [7]  # the trainer's artifacts are written before the "end" event
    metrics = json.loads(result.metrics_path.read_text())
    assert metrics["steps"] == 4 and [tuple(pair) for pair in metrics["train_loss"]] == result.state.train_loss
    assert result.checkpoint.name == "step-000004"
    assert [p.name for p in (tmp_path / "run").iterdir() if p.name.startswith(".")] == []  # no temporary files


def test_a_finished_run_is_not_repeated(tmp_path):
    first = Regression(SETTINGS).train(tmp_path / "run")
    recorder = Recorder()
    again = Regression(SETTINGS).train(tmp_path / "run", callbacks=[recorder])
    assert again.resumed_from == 12 and again.state.train_loss == first.state.train_loss
    assert recorder.events == [("end", 12)]
