"""TensorBoard really shows the curves and figures: rendered in headless Chromium on loopback."""

from pathlib import Path

import pytest

from bench.tensorboard_render import find_chromium, render, train
from tests.test_cli import scalars

BROWSER = find_chromium()


@pytest.mark.slow
@pytest.mark.skipif(BROWSER is None, reason="Chromium is not installed (apt-get install chromium)")
def test_tensorboard_page_shows_curves_and_figures(tmp_path: Path) -> None:
    logs = tmp_path / "lightning_logs"
    short = [
        "--trainer.max_epochs",
        "20",
        "--trainer.check_val_every_n_epoch",
        "10",
        "--trainer.callbacks.init_args.every_n_epochs",
        "10",
        "--trainer.enable_progress_bar",
        "false",
    ]
    train("circles", logs, *short)
    train("regression", logs, *short)
    circle_figures = {"val/decision_boundary", "test/decision_boundary"}
    circles = render(
        BROWSER,
        logs / "circles" / "version_0",
        "loss$|val/acc$|decision_boundary",
        {"train/loss", "val/loss", "val/acc", *circle_figures},
    )
    logged = scalars(logs / "circles" / "version_0")
    for tag in ("train/loss", "val/loss", "val/acc"):  # each card shows the run's last logged point
        step, value = logged[tag][-1]
        assert circles.scalar_cards[tag][0] == step
        assert circles.scalar_cards[tag][1] == pytest.approx(value, rel=0.01, abs=1e-3)
    assert circles.line_charts >= 3
    assert circles.image_cards == circle_figures
    assert circles.image_sizes and set(circles.image_sizes) == {(600, 500)}  # the pictures the page loaded
    regression_figures = {"val/fit", "val/residuals", "test/fit", "test/residuals"}
    regression = render(
        BROWSER, logs / "regression" / "version_0", "val/mse$|/fit$|/residuals$", {"val/mse", *regression_figures}
    )
    assert regression.scalar_cards["val/mse"][0] == scalars(logs / "regression" / "version_0")["val/mse"][-1][0]
    assert regression.image_cards == regression_figures
    assert set(regression.image_sizes) == {(700, 450)}
