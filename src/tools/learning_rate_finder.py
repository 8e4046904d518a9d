"""Lightning's learning-rate range test, with its plot and numbers saved for the user."""

import csv
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from lightning.pytorch import LightningDataModule, LightningModule, Trainer  # noqa: E402
from lightning.pytorch.tuner import Tuner  # noqa: E402

from src.checkpointing.atomic_files import write_atomically  # noqa: E402
from src.quiet_logs import RANK_ZERO_LOGGER, dropped  # noqa: E402

CHECKPOINT_LOGGER = "lightning.pytorch.trainer.connectors.checkpoint_connector"


def find_learning_rate(
    trainer: Trainer,
    model: LightningModule,
    datamodule: LightningDataModule,
    output_dir: Path,
    min_lr: float,
    max_lr: float,
    num_training: int,
) -> tuple[float | None, Path, Path]:
    """Train `num_training` steps with the LR rising exponentially from `min_lr` to `max_lr`,
    record the loss at each, and save `lr_find.png` (with Lightning's suggestion: the steepest
    descent of the loss) and `lr_find.csv` in `output_dir`. The model's weights are left as
    they were. Returns the suggestion (None when the curve gives none) and the two paths."""
    # A full-batch task has one step per epoch: allow enough epochs for every step.
    trainer.fit_loop.max_epochs = max(trainer.max_epochs or 0, num_training)
    # The finder saves the model to a hidden file and restores it after; Lightning narrates both
    # (a "weights_only was not set" line that is about what it saves, not about loading safely).
    with (
        dropped(CHECKPOINT_LOGGER, "`weights_only` was not set"),
        dropped(RANK_ZERO_LOGGER, "Restoring states from", "Restored all states"),
    ):
        finder = Tuner(trainer).lr_find(
            model, datamodule=datamodule, min_lr=min_lr, max_lr=max_lr, num_training=num_training, update_attr=False
        )
    suggestion = finder.suggestion()
    output_dir.mkdir(parents=True, exist_ok=True)
    figure = finder.plot(suggest=suggestion is not None)
    figure.axes[0].set_title(
        f"LR range test: {len(finder.results['lr'])} steps"
        + (f", suggested lr {suggestion:.3g}" if suggestion is not None else "")
    )
    plot = output_dir / "lr_find.png"
    figure.savefig(plot, dpi=100)
    plt.close(figure)
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["lr", "loss"])
    writer.writerows(zip(finder.results["lr"], finder.results["loss"], strict=True))
    numbers = output_dir / "lr_find.csv"
    write_atomically(numbers, table.getvalue().encode())
    return suggestion, plot, numbers
