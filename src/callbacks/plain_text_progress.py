"""One plain line per validation, for logs and CI where a progress bar is noise."""

import time

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_only

from src.epochs import last_epoch

# Validation values only: train/loss is logged at the epoch end, after this line is printed,
# so it would show the previous validated epoch's value.
SHOWN = ("val/loss", "val/acc", "val/mse", "val/r2", "val/acc_best", "val/mse_best")


class PlainTextProgress(Callback):
    """Prints `epoch 3/6  val/loss 1.2345  val/acc 0.6120 ...  81s` after each validation."""

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.start = time.monotonic()

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.state.fn == TrainerFn.VALIDATING:  # `validate`: timed from here, not from a fit
            self.start = time.monotonic()

    @rank_zero_only
    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics
        shown = "  ".join(f"{name} {float(metrics[name]):.4f}" for name in SHOWN if name in metrics)
        elapsed = time.monotonic() - getattr(self, "start", time.monotonic())
        # `validate` runs one validation of a checkpoint, in no epoch of a fit.
        where = (
            f"validation of {trainer.ckpt_path}"
            if trainer.state.fn == TrainerFn.VALIDATING
            else f"epoch {trainer.current_epoch + 1}" + (f"/{end}" if (end := last_epoch(trainer)) else "")
        )
        print(f"{where}  {shown}  {elapsed:.0f}s", flush=True)
