"""The regression fit (data, true function, prediction) and its residuals, as images for every logger."""

import matplotlib.pyplot as plt
import torch
from lightning.pytorch import LightningModule, Trainer

from src.callbacks.epoch_figures import EpochFigures

FIGURE_SIZE = (7.0, 4.5)  # inches; at 100 dpi the images are 700 x 450 pixels
GRID_POINTS = 400


@torch.no_grad()
def predict(pl_module: LightningModule, inputs: torch.Tensor) -> torch.Tensor:
    """The module's predictions (N) for model-ready inputs (N x features)."""
    return pl_module(inputs.to(pl_module.device)).float().flatten().cpu()


def fit_figure(
    datamodule: object, pl_module: LightningModule, split: str, predicted: torch.Tensor, title: str
) -> plt.Figure:
    """One feature: the split's points, the true function (when known) and the model's curve.
    Several features: the split's `predicted` against true target, with the diagonal of a perfect fit."""
    raw_x, targets = datamodule.raw_inputs[split], datamodule.splits[split][1].flatten().cpu()
    figure, axes = plt.subplots(figsize=FIGURE_SIZE, dpi=100)
    if raw_x.shape[1] == 1:
        everything = torch.cat(list(datamodule.raw_inputs.values()))
        grid = torch.linspace(float(everything.min()), float(everything.max()), GRID_POINTS).unsqueeze(1)
        axes.scatter(raw_x.flatten(), targets, s=8, alpha=0.5, color="tab:blue", label=f"{split} data")
        if getattr(datamodule, "has_true_function", False):
            axes.plot(
                grid.flatten(),
                datamodule.true_function(grid).flatten(),
                color="black",
                lw=1.5,
                ls="--",
                label="true function",
            )
        axes.plot(
            grid.flatten(), predict(pl_module, datamodule.transform(grid)), color="tab:red", lw=2, label="prediction"
        )
        axes.set(xlabel=datamodule.feature_names[0], ylabel=datamodule.target_name)
    else:
        axes.scatter(targets, predicted, s=8, alpha=0.6, color="tab:blue", label=f"{split} data")
        low, high = float(targets.min()), float(targets.max())
        axes.plot([low, high], [low, high], color="black", ls="--", lw=1.5, label="perfect fit")
        axes.set(xlabel=f"true {datamodule.target_name}", ylabel=f"predicted {datamodule.target_name}")
    axes.set_title(title)
    axes.legend(loc="best")
    figure.tight_layout()
    return figure


def residuals_figure(datamodule: object, split: str, predicted: torch.Tensor, title: str) -> plt.Figure:
    """Residuals (true - predicted) of a split against the feature (one feature) or the prediction."""
    raw_x, targets = datamodule.raw_inputs[split], datamodule.splits[split][1]
    residuals = targets.flatten().cpu() - predicted
    figure, axes = plt.subplots(figsize=FIGURE_SIZE, dpi=100)
    against, label = (
        (raw_x.flatten(), datamodule.feature_names[0])
        if raw_x.shape[1] == 1
        else (predicted, f"predicted {datamodule.target_name}")
    )
    axes.scatter(against, residuals, s=8, alpha=0.6, color="tab:purple")
    axes.axhline(0.0, color="black", lw=1)
    axes.set(xlabel=label, ylabel="residual (true - predicted)", title=title)
    figure.tight_layout()
    return figure


class RegressionFigures(EpochFigures):
    """Writes `<stage>/fit` and `<stage>/residuals` for a RegressionDataModule: on the
    validation split during training (every `every_n_epochs` epochs) and on the test split
    after testing."""

    def figures(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> dict[str, plt.Figure]:
        datamodule = trainer.datamodule
        if not hasattr(datamodule, "raw_inputs") or stage not in datamodule.raw_inputs:
            return {}
        mse = trainer.callback_metrics.get(f"{stage}/mse")
        score = f", {stage} MSE {float(mse):.4f}" if mse is not None else ""
        title = f"{self.epoch_label(trainer, stage)}: {stage} split{score}"
        predicted = predict(pl_module, datamodule.splits[stage][0])  # once, for both figures
        return {
            "fit": fit_figure(datamodule, pl_module, stage, predicted, title),
            "residuals": residuals_figure(datamodule, stage, predicted, title),
        }
