"""Classification: binary (one logit, BCE-with-logits) or multiclass (cross-entropy)."""

import re

import torch
import torch.nn.functional as F
from jsonargparse.typing import NonNegativeFloat, NonNegativeInt
from lightning.pytorch.cli import OptimizerCallable
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torchmetrics import Accuracy, F1Score, MetricCollection
from torchmetrics.classification import MulticlassStatScores

from src.errors import UserInputError
from src.modules.nets import MLP
from src.modules.optimization import SchedulerConfig
from src.modules.task import NetFactory, TaskModule
from src.modules.test_time_augmentation import augmented_logits


class ClassificationModule(TaskModule):
    """A classifier with accuracy, macro F1 and per-class accuracy for train, val and test.

    Args:
        net: the network, built with (input shape, outputs): one output for 2 classes,
            `num_classes` otherwise.
        input_shape: shape of one input; linked from the data module.
        num_classes: number of classes; linked from the data module.
        optimizer: any optimizer class and its arguments, e.g. `torch.optim.SGD` with `lr`, `momentum`
            (default: Adam with its own default lr 0.001).
        scheduler: learning-rate schedule.
        label_smoothing: share of the target mass spread over all classes.
        ema_decay: keep an exponential moving average of the weights (and BatchNorm
            statistics) with this decay per step, and evaluate and predict with it; None: off.
        tta_flip: evaluate images as the mean of the logits of the image and its mirror.
        tta_translate: also evaluate images shifted by this many pixels (up-left and down-right)
            and average, as airbench's multi-view evaluation does; 0: off. Costs evaluation time only.
        init_from: a checkpoint (.ckpt) of any run here whose net this one starts from, for a
            new task: every tensor but the head's (when the number of classes differs) is loaded.
        compile: train with `torch.compile` of the net (the plain net is what is saved).
    """

    best_metric = "acc"
    best_mode = "max"
    metric_modes = {"loss": "min", "acc": "max", "f1": "max"}

    def __init__(
        self,
        net: NetFactory = MLP,
        input_shape: tuple[int, ...] = (2,),
        num_classes: int = 2,
        optimizer: OptimizerCallable = torch.optim.Adam,
        scheduler: SchedulerConfig = SchedulerConfig(),
        label_smoothing: NonNegativeFloat = 0.0,
        ema_decay: float | None = None,
        tta_flip: bool = False,
        tta_translate: NonNegativeInt = 0,
        init_from: str | None = None,
        compile: bool = False,
    ) -> None:
        if num_classes < 2:
            raise UserInputError(f"a classifier needs num_classes >= 2, got {num_classes}")
        if label_smoothing >= 1:
            raise UserInputError(f"model.label_smoothing must be in [0, 1), got {label_smoothing}")
        self.num_classes = num_classes
        self.binary = num_classes == 2
        self.label_smoothing = label_smoothing
        if ema_decay is not None and not 0 < ema_decay < 1:
            raise UserInputError(f"model.ema_decay must be in (0, 1), got {ema_decay}")
        if len(input_shape) == 3 and tta_translate >= min(input_shape[1:]):
            raise UserInputError(
                f"model.tta_translate must be smaller than the images ({input_shape[1]}x{input_shape[2]}), "
                f"got {tta_translate}: 1 is airbench's choice for 32x32"
            )
        self.tta_flip = tta_flip
        self.tta_translate = tta_translate
        outputs = 1 if self.binary else num_classes
        super().__init__(net, input_shape, outputs, optimizer, scheduler, init_from, compile)
        self.save_hyperparameters()
        self.ema = None
        self._ema_step = -1  # the optimizer step the average last took in
        if ema_decay is not None:
            self.ema = AveragedModel(self.net, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True)
            # The average is not trained: without gradients DDP leaves it alone, no optimizer sees it.
            self.ema.requires_grad_(False)
        # Per class: true positives, false positives, true negatives, false negatives, support.
        self.val_class_stats = MulticlassStatScores(num_classes, average=None, validate_args=False)
        self.test_class_stats = MulticlassStatScores(num_classes, average=None, validate_args=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """As TaskModule's; evaluation of images averages the views that `tta_flip` and `tta_translate` ask for."""
        if self.training or not (self.tta_flip or self.tta_translate) or x.dim() != 4:
            return super().forward(x)
        return augmented_logits(self.evaluation_net(), self.as_net_input(x), self.tta_flip, self.tta_translate)

    def evaluation_net(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.net

    def on_train_batch_end(self, outputs: object, batch: object, batch_idx: int) -> None:
        super().on_train_batch_end(outputs, batch, batch_idx)
        # Once per optimizer step (not per accumulated batch), so the decay means the same either way.
        if self.ema is not None and self.global_step != self._ema_step:
            self.ema.update_parameters(self.net)
            self._ema_step = self.global_step

    def make_metrics(self) -> MetricCollection:
        task = "binary" if self.binary else "multiclass"
        # F1: with two classes, of the second (the positive class: index 1, as scikit-learn's
        # default); with more, the macro average over classes (torchmetrics ignores `average` for binary).
        return MetricCollection(
            {
                "acc": Accuracy(task=task, num_classes=self.num_classes, validate_args=False),
                "f1": F1Score(task=task, num_classes=self.num_classes, average="macro", validate_args=False),
            }
        )

    def compute_loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.binary:
            soft = targets.float() * (1 - self.label_smoothing) + 0.5 * self.label_smoothing
            return F.binary_cross_entropy_with_logits(outputs.squeeze(1), soft)
        return F.cross_entropy(outputs, targets, label_smoothing=self.label_smoothing)

    def labels(self, outputs: torch.Tensor) -> torch.Tensor:
        """Predicted class of each row of outputs."""
        if self.binary:
            return (outputs.squeeze(1) > 0).long()
        return outputs.argmax(dim=1)

    def probabilities(self, outputs: torch.Tensor) -> torch.Tensor:
        """Class probabilities (N x num_classes), for both the binary and multiclass heads."""
        if self.binary:
            p = torch.sigmoid(outputs.float())
            return torch.cat([1 - p, p], dim=1)
        return torch.softmax(outputs.float(), dim=1)

    def metric_inputs(self, outputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.labels(outputs), targets

    def _evaluation_step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        """Loss and metrics as in training, plus per-class accuracy; returns the predicted
        classes, for callbacks such as ClassificationFigures."""
        predictions = self.labels(self._step(batch, stage)[1].detach())
        if len(predictions):  # an empty batch (every image skipped as undecodable) counts for nothing
            getattr(self, f"{stage}_class_stats").update(predictions, batch[1])
        return predictions

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._evaluation_step(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._evaluation_step(batch, "test")

    def class_accuracy(self, stage: str) -> dict[int, torch.Tensor]:
        """The accuracy on each class's own samples of the split (its recall), by class index, for the
        classes the split holds: a class with no samples in it (a test folder of some classes only)
        has no accuracy, not 0. Resets the counts."""
        metric = getattr(self, f"{stage}_class_stats")
        stats = metric.compute()  # classes x (tp, fp, tn, fn, support), summed over the ranks
        metric.reset()
        return {index: row[0] / row[4] for index, row in enumerate(stats) if row[4] > 0}

    def _log_class_accuracy(self, stage: str) -> None:
        """Logs `<stage>/acc_class_<name>` per class the split holds, named by the data's classes
        ("0", "1", ... without names)."""
        names = getattr(self.trainer.datamodule, "class_names", None) or range(self.num_classes)
        # A class name as part of a metric's name: letters, digits, '.', '-' and '_', the rest as '_'.
        tags = [re.sub(r"[^\w.-]", "_", str(name)) for name in names]
        self.log_dict(
            {f"{stage}/acc_class_{tags[index]}": value for index, value in self.class_accuracy(stage).items()}
        )

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        if self.trainer.sanity_checking:
            self.val_class_stats.reset()
            return
        self._log_class_accuracy("val")

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        self._log_class_accuracy("test")

    def predict_step(self, batch: object, batch_idx: int) -> torch.Tensor:
        return self.probabilities(super().predict_step(batch, batch_idx))
