"""The figures a user looks at in TensorBoard are written, at the right size and steps, and drawn."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from src.callbacks.epoch_figures import EpochFigures
from tests.conftest import QUIET, config, run_cli

# Share of pixels that are not white. An empty frame (axes, ticks, title, labels and nothing
# plotted) inks 0.024-0.027 of a 600 x 500 or 700 x 450 figure; measured with something in
# them: a decision boundary fills its axes with colour (0.59-0.62), the wave's fit and
# residual plots draw 1,000 points (0.045-0.06), a 60-row CSV's (0.038-0.042).
EMPTY_FRAME_INK = 0.027


def images(run_dir: Path) -> dict[str, list[tuple[int, np.ndarray]]]:
    """Image tag -> [(step, pixels)]: each PNG in a run's event files decoded to H x W x 3."""
    events = EventAccumulator(str(run_dir), size_guidance={"images": 0})
    events.Reload()
    return {
        tag: [
            (e.step, np.asarray(Image.open(io.BytesIO(e.encoded_image_string)).convert("RGB")))
            for e in events.Images(tag)
        ]
        for tag in events.Tags()["images"]
    }


def steps_and_sizes(written: list[tuple[int, np.ndarray]]) -> list[tuple[int, int, int]]:
    """[(step, width, height)] of the decoded images."""
    return [(step, pixels.shape[1], pixels.shape[0]) for step, pixels in written]


def ink(pixels: np.ndarray) -> float:
    """Share of the pixels that are not (near) white."""
    return float((pixels.min(axis=2) < 245).mean())


def assert_drawn(written: list[tuple[int, np.ndarray]], min_ink: float) -> None:
    """Each image shows something: not one flat colour, and more ink than an empty frame."""
    for step, pixels in written:
        assert pixels.std() > 0, f"step {step}: a blank image"
        assert ink(pixels) > min_ink, f"step {step}: only {ink(pixels):.3f} of the pixels are drawn"


def test_circles_decision_boundary_during_training_and_at_the_end(in_tmp: Path) -> None:
    args = [
        "--config",
        config("circles"),
        "--trainer.max_epochs",
        "20",
        "--trainer.check_val_every_n_epoch",
        "5",
        "--trainer.callbacks.init_args.every_n_epochs",
        "10",
        *QUIET,
    ]
    assert run_cli("fit", *args) == 0
    written = images(in_tmp / "lightning_logs" / "circles" / "version_0")
    assert steps_and_sizes(written["val/decision_boundary"]) == [(10, 600, 500), (20, 600, 500)]
    assert steps_and_sizes(written["test/decision_boundary"]) == [(20, 600, 500)]
    for stage in ("val", "test"):
        assert_drawn(written[f"{stage}/decision_boundary"], min_ink=0.3)  # the plane in colour


def test_a_test_figure_is_titled_by_how_far_its_checkpoint_trained(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a fit, the test scores the best checkpoint: its figure says that checkpoint's epochs, not the fit's."""
    labels = []
    label = EpochFigures.epoch_label
    monkeypatch.setattr(
        EpochFigures, "epoch_label", staticmethod(lambda t, s: labels.append(label(t, s)) or labels[-1])
    )
    schedule = {"max_epochs": "30", "check_val_every_n_epoch": "5", "callbacks.init_args.every_n_epochs": "30"}
    flags = [part for key, value in schedule.items() for part in (f"--trainer.{key}", value)]
    worst = ["--checkpoint.monitor", "val/loss", "--checkpoint.mode", "max"]  # "best": an early validation's
    assert run_cli("fit", "--config", config("circles"), *flags, *worst, *QUIET) == 0
    (best,) = (in_tmp / "lightning_logs" / "circles" / "version_0" / "checkpoints").glob("epoch=*.ckpt")
    trained = int(best.name.split("-")[0].removeprefix("epoch=")) + 1
    assert trained < 30  # the test is not of the last weights
    assert labels == ["epoch 30", f"after {trained} epochs"]


def test_multiclass_blobs_get_a_decision_boundary_too(in_tmp: Path) -> None:
    args = [
        "--config",
        config("blobs"),
        "--trainer.max_epochs",
        "10",
        "--trainer.check_val_every_n_epoch",
        "10",
        *QUIET,
    ]
    assert run_cli("fit", *args) == 0
    written = images(in_tmp / "lightning_logs" / "blobs" / "version_0")
    assert steps_and_sizes(written["val/decision_boundary"]) == [(10, 600, 500)]
    assert steps_and_sizes(written["test/decision_boundary"]) == [(10, 600, 500)]
    for stage in ("val", "test"):
        assert_drawn(written[f"{stage}/decision_boundary"], min_ink=0.3)


def test_regression_fit_and_residuals(in_tmp: Path) -> None:
    args = [
        "--config",
        config("regression"),
        "--trainer.max_epochs",
        "40",
        "--trainer.check_val_every_n_epoch",
        "20",
        "--trainer.callbacks.init_args.every_n_epochs",
        "20",
        *QUIET,
    ]
    assert run_cli("fit", *args) == 0
    written = images(in_tmp / "lightning_logs" / "regression" / "version_0")
    for name in ("fit", "residuals"):
        assert steps_and_sizes(written[f"val/{name}"]) == [(20, 700, 450), (40, 700, 450)]
        assert steps_and_sizes(written[f"test/{name}"]) == [(40, 700, 450)]
        for stage in ("val", "test"):
            assert_drawn(written[f"{stage}/{name}"], min_ink=1.4 * EMPTY_FRAME_INK)


def test_csv_regression_with_several_features_plots_predicted_against_true(in_tmp: Path) -> None:
    rows = ["a,b,price"] + [f"{i},{i % 7},{2 * i + (i % 7)}" for i in range(60)]
    (in_tmp / "houses.csv").write_text("\n".join(rows) + "\n")
    args = [
        "--config",
        config("tabular_regression"),
        "--data.csv_path",
        "houses.csv",
        "--data.target_column",
        "price",
        "--trainer.max_epochs",
        "20",
        "--trainer.check_val_every_n_epoch",
        "20",
        *QUIET,
    ]
    assert run_cli("fit", *args) == 0
    written = images(in_tmp / "lightning_logs" / "tabular_regression" / "version_0")
    assert {"val/fit", "val/residuals", "test/fit", "test/residuals"} <= set(written)
    for tag in ("val/fit", "val/residuals", "test/fit", "test/residuals"):
        assert steps_and_sizes(written[tag]) == [(20, 700, 450)]
        assert_drawn(written[tag], min_ink=1.15 * EMPTY_FRAME_INK)  # 60 points: less ink than the wave's 1,000
