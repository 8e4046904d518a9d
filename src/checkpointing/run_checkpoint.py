"""ModelCheckpoint whose last.ckpt always holds the newest state of the run."""

import signal
from pathlib import Path
from types import FrameType
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn

from src.checkpointing.checkpoint_io import remove_stale_temp_files


class TrainingInterrupted(BaseException):
    """SIGTERM or Ctrl-C stopped training after a checkpoint of the current step was saved."""

    def __init__(self, signum: int, checkpoint: str) -> None:
        self.signum = signum
        self.checkpoint = checkpoint
        name = signal.Signals(signum).name
        super().__init__(f"{name} received: saved the current step to {checkpoint}; resume with --ckpt_path last")


class RunCheckpoint(ModelCheckpoint):
    """The best k checkpoints by the monitored metric, plus a last.ckpt that never falls behind.

    - Lightning 2.6 rewrites last.ckpt only when it also saves a top-k checkpoint; here
      last.ckpt follows every validation (or every epoch end without validation).
    - `last_every_n_steps` also rewrites last.ckpt every N training steps, mid-epoch
      included, without turning off the end-of-epoch saves (as `every_n_train_steps` does).
    - SIGTERM and Ctrl-C (SIGINT) let the current batch finish, save last.ckpt at that
      step and stop training with `TrainingInterrupted` at the next hook (after that step's
      metrics are logged); a second Ctrl-C stops at once.

    Args:
        last_every_n_steps: also save last.ckpt every this many training steps (None: off).
        *args, **kwargs: those of ModelCheckpoint.
    """

    def __init__(self, *args: Any, last_every_n_steps: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if last_every_n_steps is not None and last_every_n_steps < 1:
            raise ValueError(f"last_every_n_steps must be >= 1, got {last_every_n_steps}")
        self.last_every_n_steps = last_every_n_steps
        self.stop_signal: int | None = None
        self._previous_handlers: dict[int, Any] = {}

    # --- signals ----------------------------------------------------------------------
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage == TrainerFn.FITTING and self.dirpath is not None:
            remove_stale_temp_files(Path(self.dirpath))
        if stage == TrainerFn.FITTING:
            for signum in (signal.SIGTERM, signal.SIGINT):
                try:
                    self._previous_handlers[signum] = signal.signal(signum, self._request_stop)
                except ValueError:  # not the main thread: leave signals alone
                    return

    def _request_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stop_signal = signum
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C stops at once

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous_handlers = {}
        super().teardown(trainer, pl_module, stage)

    # --- when last.ckpt is written ------------------------------------------------------
    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any, **kwargs: Any) -> None:
        super().on_train_batch_end(trainer, pl_module, *args, **kwargs)
        every = self.last_every_n_steps
        if self.stop_signal is not None or (every and trainer.global_step % every == 0):
            self._refresh_last(trainer)

    # Stop at the first hook after the signal's step was saved and its metrics logged.
    def _stop_if_requested(self) -> None:
        if self.stop_signal is not None:
            raise TrainingInterrupted(self.stop_signal, self.last_model_path)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        # Lightning's own SIGTERM stop (a SystemExit with status 0) comes right after the step
        # saved above; tell train.py where, so it can report it and exit with 143.
        if self.stop_signal is not None and isinstance(exception, SystemExit):
            exception.checkpoint = self.last_model_path  # type: ignore[attr-defined]
        super().on_exception(trainer, pl_module, exception)

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, *args: Any, **kwargs: Any) -> None:
        self._stop_if_requested()

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self._stop_if_requested()

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._stop_if_requested()
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def _refresh_last(self, trainer: Trainer) -> None:
        if not self.save_last or trainer.fast_dev_run or trainer.sanity_checking:
            return
        if trainer.state.fn != TrainerFn.FITTING or self._last_global_step_saved == trainer.global_step:
            return  # not fitting, or this step is saved already (last.ckpt included)
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        self._last_global_step_saved = trainer.global_step
