"""The reference side of the training benchmarks: a ``transformers.Trainer`` callback that sums the wall time of the
training steps only, as slmlab's loop counts its own (data loading between steps, evaluation and saving left out)."""

from __future__ import annotations

import time


def step_timer():
    """A fresh callback; after ``trainer.train()`` its ``seconds`` holds the summed step time."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.seconds, self.start = 0.0, 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.seconds += time.perf_counter() - self.start

    return StepTimer()
