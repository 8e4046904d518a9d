"""The last epoch of a fit validates, whatever `check_val_every_n_epoch` says."""

from lightning.pytorch import Callback, LightningModule, Trainer

from src.epochs import last_epoch


class LastEpochValidation(Callback):
    """Validates the fit's last epoch (`max_epochs`) also when `check_val_every_n_epoch` does not
    divide `max_epochs`: Lightning would end such a run on an unvalidated epoch, so the best
    checkpoint, `val/*_best` and the printed result would miss the model the run ended with
    (`--trainer.max_epochs 4` on a config that validates every 3rd epoch)."""

    def __init__(self) -> None:
        self.every: int | None = None  # the run's own interval, while the last epoch borrows 1

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # A run resumed mid-epoch gets no on_train_epoch_start for that epoch, which may be its last.
        self.on_train_epoch_start(trainer, pl_module)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        every = trainer.check_val_every_n_epoch
        last = trainer.current_epoch + 1 == last_epoch(trainer)
        if last and every is not None and every > 1:
            self.every = every
            trainer.check_val_every_n_epoch = 1

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.every is not None:
            trainer.check_val_every_n_epoch = self.every
            self.every = None
