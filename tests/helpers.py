"""Test-only callbacks, given to the real CLI as trainer.callbacks."""

import os
import sys

from lightning.pytorch import Callback, LightningModule, Trainer


class SignalAtStep(Callback):
    """Sends `signum` to this process after training step `step`, like a scheduler or Ctrl-C would."""

    def __init__(self, step: int, signum: int) -> None:
        self.step = step
        self.signum = signum

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: object) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


class PrintStep(Callback):
    """Prints every finished training step, so a killer knows how far training got."""

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: object) -> None:
        print(f"step {trainer.global_step}", flush=True)
        sys.stdout.flush()
