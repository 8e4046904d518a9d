"""The decision boundary of a 2-D classifier over its data, as an image for every logger."""

import matplotlib.pyplot as plt
import torch
from lightning.pytorch import LightningModule, Trainer

from src.callbacks.epoch_figures import EpochFigures

FIGURE_SIZE = (6.0, 5.0)  # inches; at 100 dpi the image is 600 x 500 pixels
GRID_POINTS = 80  # per axis; bilinear shading hides the coarseness, and the net runs on 6,400 points


@torch.no_grad()
def class_probabilities(pl_module: LightningModule, points: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    """The module's class probabilities for many points, evaluated in chunks on its device."""
    parts = [pl_module.probabilities(pl_module(part.to(pl_module.device))) for part in points.split(chunk)]
    return torch.cat(parts).cpu()


def boundary_figure(pl_module: LightningModule, points: torch.Tensor, labels: torch.Tensor, title: str) -> plt.Figure:
    """Shade the plane by the predicted class (binary: by P(class 1), with the 0.5 contour),
    then scatter the points coloured by their true class."""
    low, high = points.min(dim=0).values, points.max(dim=0).values
    margin = 0.1 * (high - low)
    xs = torch.linspace(float(low[0] - margin[0]), float(high[0] + margin[0]), GRID_POINTS)
    ys = torch.linspace(float(low[1] - margin[1]), float(high[1] + margin[1]), GRID_POINTS)
    grid_x, grid_y = torch.meshgrid(xs, ys, indexing="xy")
    probabilities = class_probabilities(pl_module, torch.stack([grid_x.flatten(), grid_y.flatten()], dim=1))
    figure, axes = plt.subplots(figsize=FIGURE_SIZE, dpi=100)
    num_classes = probabilities.shape[1]
    extent = (float(xs[0]), float(xs[-1]), float(ys[0]), float(ys[-1]))
    # imshow of the grid: a tenth of the cost of filled contours, which matters every few epochs.
    if num_classes == 2:
        surface = probabilities[:, 1].view(GRID_POINTS, GRID_POINTS)
        shading = axes.imshow(
            surface,
            extent=extent,
            origin="lower",
            cmap="RdBu_r",
            vmin=0,
            vmax=1,
            alpha=0.8,
            aspect="auto",
            interpolation="bilinear",
        )
        axes.contour(grid_x, grid_y, surface, levels=[0.5], colors="black", linewidths=1.5)
        figure.colorbar(shading, ax=axes, label="P(class 1)")
        colours = plt.get_cmap("RdBu_r")(labels.float().numpy())
    else:
        predicted = probabilities.argmax(dim=1).view(GRID_POINTS, GRID_POINTS)
        axes.imshow(
            predicted,
            extent=extent,
            origin="lower",
            cmap="tab10",
            vmin=0,
            vmax=9,
            alpha=0.35,
            aspect="auto",
            interpolation="nearest",
        )
        colours = plt.get_cmap("tab10")(labels.numpy() % 10)
    axes.scatter(points[:, 0], points[:, 1], c=colours, s=10, edgecolors="black", linewidths=0.4)
    axes.set(title=title, xlabel="x1", ylabel="x2")
    figure.subplots_adjust(left=0.11, right=0.97, bottom=0.1, top=0.93)  # fixed: tight_layout costs 80 ms a figure
    return figure


class DecisionBoundaryFigure(EpochFigures):
    """Writes `val/decision_boundary` during training (every `every_n_epochs` epochs) and
    `test/decision_boundary` after testing, for classifiers of 2-D points (circles, moons,
    2-D blobs); other tasks are skipped. Validation draws the training points, test the
    test points."""

    def figures(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> dict[str, plt.Figure]:
        splits = getattr(trainer.datamodule, "splits", {})
        split = "train" if stage == "val" else "test"
        if split not in splits or splits[split][0].dim() != 2 or splits[split][0].shape[1] != 2:
            return {}
        points, labels = (tensor.cpu() for tensor in splits[split])
        accuracy = trainer.callback_metrics.get(f"{stage}/acc")
        score = f", {stage} accuracy {float(accuracy):.3f}" if accuracy is not None else ""
        title = f"{self.epoch_label(trainer, stage)}: {split} points{score}"
        return {"decision_boundary": boundary_figure(pl_module, points, labels, title)}
