"""A matplotlib figure sent to every logger of a run, each through its own image API.

TensorBoard: `add_image`; MLflow: `log_image` as the artifact `figures/<key>/step_<N>.png`;
W&B: `log_image` (its media panel); CSV: the PNG file `figures/<key>/step_<N>.png` in the run
folder. The figure is rendered once at its own size and dpi (6 x 5 inches at 100 dpi: 600 x 500).
"""

import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # figures are rendered to images, never shown
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from lightning.pytorch.loggers import CSVLogger, MLFlowLogger, TensorBoardLogger, WandbLogger  # noqa: E402

from src.checkpointing.atomic_files import write_atomically  # noqa: E402

IMAGE_LOGGERS = (TensorBoardLogger, CSVLogger, MLFlowLogger, WandbLogger)


def logs_images(loggers: list[Any]) -> bool:
    """Whether any of these loggers takes images (else figures are not worth drawing)."""
    return any(isinstance(logger, IMAGE_LOGGERS) for logger in loggers)


def figure_pixels(figure: plt.Figure) -> np.ndarray:
    """The figure as H x W x 3 uint8 pixels, as TensorBoard's add_figure renders it."""
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()


def png_bytes(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="png")
    return buffer.getvalue()


def figure_file(key: str, step: int) -> str:
    """`figures/val/decision_boundary/step_000100.png`: where CSV and MLflow keep an image."""
    return f"figures/{key}/step_{step:06d}.png"


def log_pixels(logger: Any, key: str, pixels: np.ndarray, step: int) -> None:
    """One image to one logger, by its own API; loggers without images are skipped."""
    if isinstance(logger, TensorBoardLogger):
        logger.experiment.add_image(key, pixels, step, dataformats="HWC")
    elif isinstance(logger, MLFlowLogger):
        logger.experiment.log_image(logger.run_id, pixels, artifact_file=figure_file(key, step))
    elif isinstance(logger, WandbLogger):
        logger.log_image(key, [pixels], step=step)
    elif isinstance(logger, CSVLogger):
        path = Path(logger.log_dir) / figure_file(key, step)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, png_bytes(pixels))


def log_figures(loggers: list[Any], figures: dict[str, plt.Figure], step: int) -> None:
    """Render each `key -> figure` once, send it to every logger, and close it (rank 0 only)."""
    for key, figure in figures.items():
        try:
            pixels = figure_pixels(figure)
        finally:
            plt.close(figure)
        for logger in loggers:
            log_pixels(logger, key, pixels, step)
