"""Regression with a mean-squared-error loss and MSE, MAE and R2 metrics."""

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable
from torchmetrics import MeanAbsoluteError, MeanSquaredError, MetricCollection, R2Score

from src.modules.nets import MLP
from src.modules.optimization import SchedulerConfig
from src.modules.task import NetFactory, TaskModule


class RegressionModule(TaskModule):
    """A regressor of one target, trained on MSE.

    Args:
        net: the network, built with (input shape, 1).
        input_shape: shape of one input; linked from the data module.
        optimizer: any optimizer class and its arguments, e.g. `torch.optim.SGD` with `lr`, `momentum`
            (default: Adam with its own default lr 0.001).
        scheduler: learning-rate schedule.
        init_from: a checkpoint (.ckpt) of any run here whose net this one starts from.
        compile: train with `torch.compile` of the net (the plain net is what is saved).
    """

    best_metric = "mse"
    best_mode = "min"

    def __init__(
        self,
        net: NetFactory = MLP,
        input_shape: tuple[int, ...] = (1,),
        optimizer: OptimizerCallable = torch.optim.Adam,
        scheduler: SchedulerConfig = SchedulerConfig(),
        init_from: str | None = None,
        compile: bool = False,
    ) -> None:
        super().__init__(net, input_shape, 1, optimizer, scheduler, init_from, compile)
        self.save_hyperparameters()

    def make_metrics(self) -> MetricCollection:
        return MetricCollection({"mse": MeanSquaredError(), "mae": MeanAbsoluteError(), "r2": R2Score()})

    def compute_loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(outputs, targets)

    def metric_inputs(self, outputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return outputs.flatten().float(), targets.flatten().float()
