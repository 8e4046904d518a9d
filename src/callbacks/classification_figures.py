"""Confusion-matrix and sample-prediction figures, sent to every logger of the run."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from lightning.pytorch import Callback, LightningModule, Trainer  # noqa: E402
from torchmetrics.classification import MulticlassConfusionMatrix  # noqa: E402

from src.datamodules.class_names import class_names  # noqa: E402
from src.epochs import is_last_epoch  # noqa: E402
from src.loggers.figures import log_figures, logs_images  # noqa: E402


def confusion_figure(matrix: torch.Tensor, names: list[str]) -> plt.Figure:
    """Counts with rows = true class, columns = predicted class."""
    figure, axes = plt.subplots(figsize=(1 + 0.6 * len(names), 1 + 0.6 * len(names)))
    axes.imshow(matrix.cpu(), cmap="Blues")
    axes.set(xticks=range(len(names)), yticks=range(len(names)), xlabel="predicted", ylabel="true")
    axes.set_xticklabels(names, rotation=60, ha="right")
    axes.set_yticklabels(names)
    for (row, col), count in zip(
        torch.cartesian_prod(torch.arange(len(names)), torch.arange(len(names))).tolist(),
        matrix.flatten().tolist(),
        strict=True,
    ):
        axes.text(col, row, str(int(count)), ha="center", va="center", fontsize=7)
    figure.tight_layout()
    return figure


def samples_figure(
    images: torch.Tensor, truths: torch.Tensor, predictions: torch.Tensor, names: list[str]
) -> plt.Figure:
    """A grid of images titled 'true / predicted' (red when wrong)."""
    count = len(images)
    columns = 8
    rows = (count + columns - 1) // columns
    figure, grid = plt.subplots(rows, columns, figsize=(columns * 1.4, rows * 1.6), squeeze=False)
    for index, axes in enumerate(grid.flat):
        axes.axis("off")
        if index >= count:
            continue
        image = images[index].float()
        image = (image - image.min()) / (image.max() - image.min() + 1e-8)  # display range
        if image.shape[0] == 1:  # grayscale
            axes.imshow(image[0].cpu(), cmap="gray", vmin=0, vmax=1)
        else:
            axes.imshow(image.permute(1, 2, 0).cpu())
        truth, prediction = int(truths[index]), int(predictions[index])
        axes.set_title(
            f"{names[truth]}\n{names[prediction]}", fontsize=7, color="black" if truth == prediction else "red"
        )
    figure.tight_layout()
    return figure


class ClassificationFigures(Callback):
    """After validation (every `every_n_epochs`, and the fit's last epoch) and test: a confusion matrix and, for images,
    a grid of `num_samples` samples with their true and predicted labels.

    Needs a ClassificationModule (its `labels`) and a logger that takes images (any of src/loggers); class names come
    from the data module's `class_names` when it has them.
    """

    def __init__(self, every_n_epochs: int = 1, num_samples: int = 32) -> None:
        self.every_n_epochs = every_n_epochs
        self.num_samples = num_samples
        self.matrix: MulticlassConfusionMatrix | None = None
        self.samples: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def _active(self, trainer: Trainer) -> bool:
        if trainer.sanity_checking or not logs_images(trainer.loggers):
            return False
        if trainer.training:
            return False
        every = (trainer.current_epoch + 1) % self.every_n_epochs == 0
        return trainer.testing or every or is_last_epoch(trainer, trainer.current_epoch)

    def _start(self, pl_module: LightningModule) -> None:
        self.matrix = MulticlassConfusionMatrix(pl_module.num_classes).to(pl_module.device)
        self.samples = None

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start(pl_module)

    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start(pl_module)

    def _collect(self, pl_module: LightningModule, batch: tuple[torch.Tensor, torch.Tensor], outputs: object) -> None:
        inputs, targets = batch
        if len(targets) == 0:  # a batch whose every image was skipped as undecodable
            return
        if torch.is_tensor(outputs):  # ClassificationModule's steps return their predictions
            predictions = outputs
        else:
            with torch.no_grad():
                predictions = pl_module.labels(pl_module(inputs))
        self.matrix.update(predictions, targets)
        if self.samples is None and inputs.dim() == 4:
            keep = slice(0, self.num_samples)
            self.samples = (inputs[keep].detach(), targets[keep], predictions[keep])

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: object,
        batch: object,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._active(trainer):
            self._collect(pl_module, batch, outputs)

    def on_test_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: object,
        batch: object,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._active(trainer):
            self._collect(pl_module, batch, outputs)

    def _write(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if not self._active(trainer) or self.matrix is None:
            return
        matrix = self.matrix.compute()  # reduced across DDP ranks
        if not trainer.is_global_zero:
            return
        names = class_names(trainer.datamodule, pl_module.num_classes)
        figures = {f"{stage}/confusion_matrix": confusion_figure(matrix, names)}
        if self.samples is not None:
            figures[f"{stage}/samples"] = samples_figure(*self.samples, names)
        log_figures(trainer.loggers, figures, trainer.global_step)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._write(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._write(trainer, pl_module, "test")
