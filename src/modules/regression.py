"""Regression with a mean-squared-error loss and MSE, MAE and R2 metrics."""

from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable
from torchmetrics import MeanAbsoluteError, MeanSquaredError, MetricCollection, R2Score

from src.errors import UserInputError
from src.modules.nets import MLP
from src.modules.optimization import SchedulerConfig
from src.modules.task import NetFactory, TaskModule


class RegressionModule(TaskModule):
    """A regressor of one target, trained on MSE.

    With `standardize_target`, the net learns the target standardised by its training split's mean
    and std (set at a fit's setup, kept in its checkpoints as `target_mean`/`target_std`) and
    the module's outputs are `net(x) * std + mean`: predictions and metrics stay in the data's units,
    while the loss is the MSE of the standardised target, so a target in the millions trains with
    the same learning rate as one near 1.

    Args:
        net: the network, built with (input shape, 1).
        input_shape: shape of one input; linked from the data module.
        optimizer: any optimizer class and its arguments, e.g. `torch.optim.SGD` with `lr`, `momentum`
            (default: Adam with its own default lr 0.001).
        scheduler: learning-rate schedule.
        init_from: a checkpoint (.ckpt) of any run here whose net this one starts from.
        compile: train with `torch.compile` of the net (the plain net is what is saved).
        standardize_target: learn the standardised target (see above); off: the target's own units.
    """

    best_metric = "mse"
    best_mode = "min"
    metric_modes = {"loss": "min", "mse": "min", "mae": "min", "r2": "max"}

    def __init__(
        self,
        net: NetFactory = MLP,
        input_shape: tuple[int, ...] = (1,),
        optimizer: OptimizerCallable = torch.optim.Adam,
        scheduler: SchedulerConfig = SchedulerConfig(),
        init_from: str | None = None,
        compile: bool = False,
        standardize_target: bool = False,
    ) -> None:
        super().__init__(net, input_shape, 1, optimizer, scheduler, init_from, compile)
        self.save_hyperparameters()
        self.standardize_target = standardize_target
        if standardize_target:  # only then: checkpoints of runs without it keep the keys they always had
            self.register_buffer("target_mean", torch.zeros(1))
            self.register_buffer("target_std", torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predictions in the target's units: with `standardize_target`, the net's output scaled back by
        the training target's std and mean."""
        outputs = super().forward(x)
        return outputs * self.target_std + self.target_mean if self.standardize_target else outputs

    def setup(self, stage: str) -> None:
        # At setup, after the data module's and before any checkpoint is restored (a resumed run then
        # takes its checkpoint's values) or the LR finder runs its range test (in its on_fit_start).
        if self.standardize_target and stage == "fit":
            targets = training_targets(self.trainer.datamodule).to(self.target_mean)
            std = targets.std() if len(targets) > 1 else torch.ones(())
            self.target_mean.fill_(targets.mean())
            self.target_std.fill_(std if torch.isfinite(std) and std > 0 else 1.0)  # a constant target: its units

    def make_metrics(self) -> MetricCollection:
        return MetricCollection({"mse": MeanSquaredError(), "mae": MeanAbsoluteError(), "r2": R2Score()})

    def compute_loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if targets.shape != outputs.shape:  # F.mse_loss would broadcast N x 1 against N to N x N, silently
            if targets.numel() != outputs.numel():
                raise UserInputError(
                    f"the batch's targets have shape {tuple(targets.shape)} but the net's outputs "
                    f"{tuple(outputs.shape)}: give one target value per output (model.num_outputs) and sample"
                )
            targets = targets.reshape(outputs.shape)  # a data module's targets of shape N for a net's N x 1
        if self.standardize_target:  # the MSE of the standardised target
            return F.mse_loss(outputs / self.target_std, targets / self.target_std)
        return F.mse_loss(outputs, targets)

    def metric_inputs(self, outputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return outputs.flatten().float(), targets.flatten().float()


def training_targets(datamodule: Any) -> torch.Tensor:
    """The training split's targets of a data module that holds its splits in memory (`splits["train"]`)."""
    split = getattr(datamodule, "splits", {}).get("train")
    if split is None:
        raise UserInputError(
            f"model.standardize_target needs the training targets in memory, which {type(datamodule).__name__} "
            "does not hold (splits['train']): set --model.standardize_target false"
        )
    return split[1].float().flatten()
