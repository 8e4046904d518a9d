"""ModelCheckpoint whose last.ckpt always holds the newest state of the run."""

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn


class RunCheckpoint(ModelCheckpoint):
    """Keeps the best k checkpoints by the monitored metric, and last.ckpt at every check.

    Lightning 2.6's ModelCheckpoint rewrites last.ckpt only when it also saves a top-k
    checkpoint, so once the metric stops improving, last.ckpt falls behind and a resumed
    run would repeat epochs. Here last.ckpt follows every validation (or every epoch end
    when there is no validation).
    """

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
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
