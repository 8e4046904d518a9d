"""ModelCheckpoint whose last.ckpt always holds the newest state of the run."""

import signal
import warnings
from pathlib import Path
from types import FrameType
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn

from src.checkpointing.checkpoint_io import remove_stale_temp_files
from src.checkpointing.runs import latest_resumable_run
from src.errors import StoppedBySignal, UserInputError


class TrainingInterrupted(StoppedBySignal):
    """SIGTERM or Ctrl-C stopped training; says truly which step the newest checkpoint holds.

    Args:
        signum: the signal that stopped the run.
        checkpoint: the newest checkpoint written by this run, or None.
        saved_step: the global step that checkpoint holds; None when it is not last.ckpt (with
            `--checkpoint.save_last false`, the newest top-k checkpoint is named instead).
        step: the global step at which training stopped.
        resumed: the run started from a checkpoint (so one exists even if this run saved nothing).
    """

    def __init__(
        self, signum: int, checkpoint: str | None, saved_step: int | None, step: int, resumed: bool = True
    ) -> None:
        self.checkpoint = checkpoint
        name = signal.Signals(signum).name
        if checkpoint is not None and saved_step is None:
            message = (
                f"{name} received: last.ckpt is off (--checkpoint.save_last false), so the current step ({step}) "
                f"was not saved; the newest checkpoint is {checkpoint}: resume with --ckpt_path {checkpoint}"
            )
            super().__init__(signum, message)
            return
        if checkpoint is not None and saved_step == step:
            message = f"{name} received: saved the current step ({step}) to {checkpoint}"
        elif checkpoint is not None:
            message = (
                f"{name} received during validation or a save: the current step ({step}) was not saved; "
                f"the newest checkpoint is {checkpoint} (step {saved_step})"
            )
        elif resumed:
            message = f"{name} received before this run saved anything: the checkpoint it started from is unchanged"
        else:
            message = f"{name} received before this run saved anything"
        if checkpoint is None and not resumed:  # a new run: `--ckpt_path last` would find another run
            super().__init__(signum, f"{message}: start it again")
        elif checkpoint is None:  # the fit's own --ckpt_path (`last`, or an older checkpoint) still holds
            super().__init__(signum, f"{message}; resume with the same --ckpt_path")
        else:
            super().__init__(signum, f"{message}; resume with --ckpt_path {resume_flag(Path(checkpoint))}")


def resume_flag(checkpoint: Path) -> str:
    """`last` where `--ckpt_path last` finds `checkpoint` (the last.ckpt of its experiment's newest run
    that has one), else the file itself: a run without a logger, another checkpoint folder, an older run."""
    run = checkpoint.parent.parent
    if checkpoint.name != "last.ckpt" or checkpoint.parent.name != "checkpoints" or not run.name.startswith("version_"):
        return str(checkpoint)
    try:
        return "last" if latest_resumable_run(run.parent).resolve() == run.resolve() else str(checkpoint)
    except UserInputError:
        return str(checkpoint)


class RunCheckpoint(ModelCheckpoint):
    """The best k checkpoints by the monitored metric, plus a last.ckpt that never falls behind.

    - Lightning 2.6 rewrites last.ckpt only when it also saves a top-k checkpoint; here
      last.ckpt follows every validation (or every epoch end without validation), and any
      top-k save: a validation inside an epoch is written at its end, one after the epoch's
      last batch at the epoch's end, after every callback (and any top-k save) has run, so
      it records the newest best and early stopping's count. Only public hooks tell when.
    - `last_every_n_steps` also rewrites last.ckpt every N training steps, mid-epoch
      included, without turning off the end-of-epoch saves (as `every_n_train_steps` does).
    - last.ckpt is written with the public `Trainer.save_checkpoint`, apart from
      ModelCheckpoint's own bookkeeping, so a step save never suppresses a top-k save.
    - SIGTERM and Ctrl-C (SIGINT) let the current optimizer step finish (with gradient
      accumulation, the rest of its window of batches: gradients are not in a checkpoint),
      save last.ckpt at that step and stop training with `TrainingInterrupted` at the next
      hook (after that step's metrics are logged). A validation due after that step (the
      epoch's, or one inside the epoch) runs first and is saved with it: Lightning resumes past
      a validation that was skipped, so stopping before it would lose it for good. A second
      signal stops that validation. A signal between two batches lets the next
      batch train and save first (or the epoch's end save, after its top-k save), so the steps
      since the last checkpoint are never lost; one before the first step stops at once, with
      nothing trained. A second Ctrl-C stops at once.

    Args:
        save_last: keep last.ckpt (written by this class, not by ModelCheckpoint).
        last_every_n_steps: also save last.ckpt every this many training steps (None: off).
        mode: `min` or `max`; None: the way the monitored metric improves (set by the CLI; `min`
            without it, as ModelCheckpoint has).
        *args, **kwargs: those of ModelCheckpoint. `monitor` defaults to the model's own best
            metric (set by the CLI).
    """

    def __init__(
        self,
        *args: Any,
        save_last: bool = True,
        last_every_n_steps: int | None = None,
        mode: Literal["min", "max"] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, save_last=False, mode=mode or "min", **kwargs)
        if last_every_n_steps is not None and last_every_n_steps < 1:
            raise UserInputError(f"checkpoint.last_every_n_steps must be >= 1 (or null: off), got {last_every_n_steps}")
        self.keep_last = bool(save_last)
        self.last_every_n_steps = last_every_n_steps
        self._last_written_step: int | None = None
        self._writing_last = False
        self._saved_since_last = False  # ModelCheckpoint wrote a top-k checkpoint after last.ckpt
        self._validated_since_last = False  # a validation ended after last.ckpt was written
        self._epoch_ends_here = False  # the batch just trained was the epoch's last
        self.stop_signal: int | None = None
        self._previous_handlers: dict[int, Any] = {}
        self._trainer: Trainer | None = None
        self.received_signal: int | None = None  # under DDP: this rank's signal, not yet agreed
        self._step_at_batch_start = 0
        self._window_open = False  # the last batch accumulated gradients without an optimizer step
        self.in_training = False  # between on_train_start and the end of training: signals are handled here

    # --- signals ----------------------------------------------------------------------
    # Installed when training starts, after Lightning's own SIGTERM handler (which this one
    # chains to), and put back when training ends or fails, before Lightning restores the
    # handlers it found: a notebook or test session gets its own handlers back either way.
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage == TrainerFn.FITTING and self.dirpath is not None:
            remove_stale_temp_files(Path(self.dirpath))

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._trainer = trainer
        self.in_training = True
        self.stop_signal = self.received_signal = None  # a fresh fit, a fresh start
        self._step_at_batch_start, self._window_open = trainer.global_step, False
        self._saved_since_last = self._validated_since_last = self._epoch_ends_here = False
        # A resumed run starts from a saved step: that is the newest checkpoint until it writes one.
        self._last_written_step = trainer.global_step if trainer.ckpt_path else None
        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous_handlers[signum] = signal.signal(signum, self._request_stop)
            except ValueError:  # not the main thread: leave signals alone
                return

    def _request_stop(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and self.stop_signal == signal.SIGINT and self._trainer is not None:
            raise self.interruption(self._trainer)  # a second Ctrl-C stops at once, mid-step or mid-save
        if self._trainer is not None and self._trainer.world_size > 1:
            # Only this rank got the signal: the ranks agree on it after the step (on_train_batch_end),
            # so all save the same step and stop together. Nothing collective inside a signal handler.
            self.received_signal = signum
            return
        self.stop_signal = signum
        previous = self._previous_handlers.get(signum)
        trainer = self._trainer
        in_training = (trainer is not None and trainer.training) or self._window_open
        if signum == signal.SIGTERM and callable(previous) and not in_training:
            # In a validation, Lightning's handler stops it at its next batch. In training (or inside an
            # accumulation window) it would stop the loops before the step is saved, and this callback's
            # own hooks stop the run once it is.
            previous(signum, frame)

    def _restore_signal_handlers(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous_handlers = {}

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.in_training = False
        self._restore_signal_handlers()
        super().on_train_end(trainer, pl_module)
        if self._last_written_step != trainer.global_step:  # e.g. a run too short to validate
            self._refresh_last(trainer)

    def interruption(
        self, trainer: Trainer, resumed: bool | None = None, signum: int | None = None
    ) -> TrainingInterrupted:
        """What a stop by signal leaves: the newest checkpoint and the step it holds. `resumed`: whether
        the fit started from a checkpoint (default: the Trainer's, known once it has restored one);
        `signum`: the signal (default: the one this callback received, else SIGINT)."""
        if signum is None:
            signum = self.stop_signal if self.stop_signal is not None else signal.SIGINT
        resumed = bool(trainer.ckpt_path) if resumed is None else resumed
        if not self.keep_last:  # no last.ckpt: the newest top-k checkpoint, if any, is what a resume can use
            newest = self._newest_kept()
            if newest is not None:
                return TrainingInterrupted(signum, newest, None, trainer.global_step, resumed)
        saved = self.last_model_path if self._last_written_step is not None and self.last_model_path else None
        return TrainingInterrupted(signum, saved, self._last_written_step, trainer.global_step, resumed)

    def _newest_kept(self) -> str | None:
        """The most recently written checkpoint of this callback's top k, or None."""
        kept = [Path(path) for path in self.best_k_models if Path(path).is_file()]
        return str(max(kept, key=lambda path: path.stat().st_mtime_ns)) if kept else None

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """ModelCheckpoint's, without its warning that a checkpoint from another run folder keeps only
        `best_model_path`: evaluating or resuming another run's checkpoint is what we mean to do."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The dirpath has changed from")
            super().load_state_dict(state_dict)

    # --- when last.ckpt is written ------------------------------------------------------
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        self._epoch_ends_here = batch_idx + 1 >= trainer.num_training_batches
        if trainer.world_size > 1 and self.stop_signal is None:  # any rank's signal stops every rank
            mine = torch.tensor(self.received_signal or 0, device=trainer.strategy.root_device)
            agreed = int(trainer.strategy.reduce(mine, reduce_op="max"))
            self.stop_signal = agreed or None
        accumulating = trainer.accumulate_grad_batches > 1
        self._window_open = accumulating and trainer.global_step == self._step_at_batch_start
        if self.stop_signal is not None and self._window_open:
            return  # accumulated gradients are not saved: stop once this window's optimizer step is done
        every = self.last_every_n_steps
        due = self.stop_signal is not None or (every and trainer.global_step % every == 0)
        if due and self._last_written_step != trainer.global_step:
            self._refresh_last(trainer)

    # Stop at the first hook after the signal's step was saved and its metrics logged. A signal that
    # came after a batch's save point (between two batches) lets the next batch train and save first,
    # or the epoch's end save, so a stop never loses the steps since the last checkpoint.
    def _stop_if_requested(self) -> None:
        trainer = self._trainer
        if self.stop_signal is None or trainer is None:
            return
        nothing_trained = self._last_written_step is None and trainer.global_step == 0
        if self._last_written_step != trainer.global_step and self._can_save(trainer) and not nothing_trained:
            return
        raise self.interruption(trainer)

    def _can_save(self, trainer: Trainer) -> bool:
        return self.keep_last and self.dirpath is not None and not trainer.fast_dev_run

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self.in_training = False
        self._restore_signal_handlers()
        # Lightning's own SIGTERM stop (a SystemExit with status 0) comes right after the step
        # saved above, or at the next validation batch before any save: tell train.py which.
        if self.stop_signal is not None and isinstance(exception, SystemExit):
            exception.interruption = self.interruption(trainer)  # type: ignore[attr-defined]
        super().on_exception(trainer, pl_module, exception)

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, *args: Any, **kwargs: Any) -> None:
        self._step_at_batch_start = trainer.global_step
        if not self._window_open:
            self._stop_if_requested()

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Mid-window: stop after the window's step. Once the signal's step is saved, the validation due
        # after it runs first: the next hook stops.
        saved = self.stop_signal is not None and self._last_written_step == trainer.global_step
        if not trainer.sanity_checking and not self._window_open and not saved:
            self._stop_if_requested()

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if trainer.sanity_checking:
            return
        self._validated_since_last = True
        if not self._epoch_ends_here:  # inside an epoch; after its last batch, the epoch's end writes
            self._refresh_last(trainer)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)  # a top-k save when the run does not validate
        behind = self._last_written_step != trainer.global_step
        stopping = self.stop_signal is not None and not self._window_open  # a signal after the last batch's check
        # A validation since the last write (also one run after a signal's save of the same step: early
        # stopping's count and the running best change with it) or a top-k save is saved here.
        if (
            self._saved_since_last
            or self._validated_since_last
            or (behind and (stopping or not trainer.enable_validation))
        ):
            self._refresh_last(trainer)
        self._stop_if_requested()

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        """Called for every checkpoint the Trainer writes: notes the ones that are not last.ckpt."""
        super().on_save_checkpoint(trainer, pl_module, checkpoint)
        if not self._writing_last:
            self._saved_since_last = True

    def _refresh_last(self, trainer: Trainer) -> None:
        """Write last.ckpt through the Trainer (atomic and sha256-recorded by the CheckpointIO plugin)."""
        if not self.keep_last or self.dirpath is None or trainer.fast_dev_run or trainer.sanity_checking:
            return
        if trainer.state.fn != TrainerFn.FITTING:
            return
        path = str(Path(self.dirpath) / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}")
        self.last_model_path = path  # set first: it is part of the state being saved
        self._writing_last = True
        try:
            trainer.save_checkpoint(path, weights_only=self.save_weights_only)
        finally:
            self._writing_last = False
        self._last_written_step = trainer.global_step
        self._saved_since_last = self._validated_since_last = False
