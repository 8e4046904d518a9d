"""Early stopping on the metric the best checkpoint watches, off until a patience is given."""

from typing import Any, Literal

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import EarlyStopping
from torch import Tensor

from src.errors import UserInputError


class EarlyStoppingOnBest(EarlyStopping):
    """Lightning's EarlyStopping, present in every run and inactive unless `patience` is set.

    `python train.py fit --config ... --early_stopping.patience 5` stops training after 5
    validations without improvement of the monitored metric (by default the checkpoint's: the
    model's own `val/<best_metric>` and mode unless a config names another; set by the CLI).
    Patience counts validations, not epochs, and its count is saved in checkpoints, so a resumed
    run goes on counting; the patience itself is the one given now, not the checkpoint's.

    Args:
        patience: validations without improvement before stopping; None: never stop early.
        monitor: metric to watch; None: the checkpoint's (set by the CLI).
        mode: `min` or `max`; None: the way the monitored metric improves (set by the CLI).
        min_delta: smallest change that counts as an improvement.
        **kwargs: the other arguments of Lightning's EarlyStopping.
    """

    def __init__(
        self,
        patience: int | None = None,
        monitor: str | None = None,
        mode: Literal["min", "max"] | None = None,
        min_delta: float = 0.0,
        **kwargs: Any,
    ) -> None:
        if patience is not None and patience < 1:
            raise UserInputError(f"early_stopping.patience must be >= 1 (or null: off), got {patience}")
        self.active = patience is not None
        super().__init__(
            monitor=monitor or "val/loss", mode=mode or "min", patience=patience or 1, min_delta=min_delta, **kwargs
        )

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """The count and best so far come from the checkpoint; the patience is this run's."""
        patience = self.patience
        super().load_state_dict(state_dict)
        self.patience = patience

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.active and trainer.limit_val_batches == 0:
            raise UserInputError(self._no_validation("validation is off: --trainer.limit_val_batches 0"))
        # A run stopped (by a signal) just as its count ran out resumes already stopped, as it would
        # have ended: Lightning does not save `should_stop`, and would train on to the next validation.
        if self.active and trainer.ckpt_path and self.wait_count >= self.patience:
            trainer.should_stop = True

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.active:
            super().on_validation_end(trainer, pl_module)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self.active:
            return
        every = trainer.check_val_every_n_epoch
        validated = any(name.startswith("val/") for name in trainer.callback_metrics)
        if every and (trainer.current_epoch + 1) % every == 0 and not validated:  # an epoch that validates
            raise UserInputError(self._no_validation("no validation ran: the data has no validation split"))
        super().on_train_epoch_end(trainer, pl_module)

    def _validate_condition_metric(self, logs: dict[str, Tensor]) -> bool:
        """A monitor the model does not log is a typo: one line naming the metrics it does log."""
        if self.monitor not in logs and self.strict:
            if self.monitor.startswith("val/") and not any(name.startswith("val/") for name in logs):
                raise UserInputError(self._no_validation("no validation ran before this check"))
            logged = ", ".join(name for name in logs if name.startswith("val/")) or ", ".join(logs)
            raise UserInputError(
                f"--early_stopping.monitor {self.monitor} is not a metric this model logs; choose one of: {logged}"
            )
        return super()._validate_condition_metric(logs)

    def _no_validation(self, why: str) -> str:
        return (
            f"--early_stopping.patience counts validations of {self.monitor}, but {why}: turn validation on "
            "(a validation split, --trainer.limit_val_batches above 0) or leave out --early_stopping.patience"
        )
