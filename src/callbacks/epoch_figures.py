"""The schedule every figure callback shares: after validation every n epochs, and after test."""

import matplotlib

matplotlib.use("Agg")  # figures are rendered to images for the loggers, never shown
import matplotlib.pyplot as plt  # noqa: E402
from lightning.pytorch import Callback, LightningModule, Trainer  # noqa: E402

from src.epochs import is_last_epoch  # noqa: E402
from src.errors import UserInputError  # noqa: E402
from src.loggers.figures import log_figures, logs_images  # noqa: E402


class EpochFigures(Callback):
    """Calls `figures(trainer, module, stage)` after validation every `every_n_epochs` epochs
    and after testing, and sends what it returns to every logger as `<stage>/<name>` images
    (TensorBoard and W&B images, MLflow artifacts, PNG files beside a CSV log: src/loggers/figures.py).

    Subclasses return a dict of name -> matplotlib figure, or an empty dict when the task
    does not suit them. Only rank 0 draws; without a logger that takes images nothing is drawn.
    """

    def __init__(self, every_n_epochs: int = 1) -> None:
        if every_n_epochs < 1:
            raise UserInputError(f"a figure callback's every_n_epochs must be >= 1, got {every_n_epochs}")
        self.every_n_epochs = every_n_epochs

    def figures(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> dict[str, plt.Figure]:
        raise NotImplementedError

    @staticmethod
    def epoch_label(trainer: Trainer, stage: str) -> str:
        """'epoch 25' during training; 'after 100 epochs' for a test of the weights training ended with,
        or of a checkpoint (the best one after a fit), by how far that checkpoint had trained."""
        if stage == "val":
            return f"epoch {trainer.current_epoch + 1}"
        loaded = getattr(trainer.lightning_module, "loaded_epochs", None) if trainer.ckpt_path else None
        return f"after {loaded if loaded is not None else trainer.current_epoch} epochs"

    def _write(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if not logs_images(trainer.loggers) or not trainer.is_global_zero:
            return
        was_training = pl_module.training
        pl_module.eval()  # evaluation behaviour (EMA weights, no dropout) whatever hook we are in
        try:
            drawn = self.figures(trainer, pl_module, stage)
        finally:
            pl_module.train(was_training)
        log_figures(trainer.loggers, {f"{stage}/{name}": figure for name, figure in drawn.items()}, trainer.global_step)

    # The *_end hooks run after the module has logged the epoch's metrics, so titles can use them.
    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        last = is_last_epoch(trainer, trainer.current_epoch)
        if not trainer.sanity_checking and ((trainer.current_epoch + 1) % self.every_n_epochs == 0 or last):
            self._write(trainer, pl_module, "val")

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._write(trainer, pl_module, "test")
