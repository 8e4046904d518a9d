"""The figures a user looks at in TensorBoard are written, at the right size and steps."""

from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import QUIET, config, run_cli


def images(run_dir: Path) -> dict[str, list[tuple[int, int, int]]]:
    """Image tag -> [(step, width, height)] from a run's event files."""
    events = EventAccumulator(str(run_dir), size_guidance={"images": 0})
    events.Reload()
    return {tag: [(e.step, e.width, e.height) for e in events.Images(tag)] for tag in events.Tags()["images"]}


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
    assert written["val/decision_boundary"] == [(10, 600, 500), (20, 600, 500)]
    assert written["test/decision_boundary"] == [(20, 600, 500)]


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
    assert written["val/decision_boundary"] == [(10, 600, 500)]
    assert written["test/decision_boundary"] == [(10, 600, 500)]


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
        assert written[f"val/{name}"] == [(20, 700, 450), (40, 700, 450)]
        assert written[f"test/{name}"] == [(40, 700, 450)]


def test_csv_regression_with_several_features_plots_predicted_against_true(in_tmp: Path) -> None:
    rows = ["a,b,price"] + [f"{i},{i % 7},{2 * i + (i % 7)}" for i in range(60)]
    (in_tmp / "houses.csv").write_text("\n".join(rows) + "\n")
    args = [
        "--config",
        config("regression"),
        "--data.source",
        "csv",
        "--data.csv_path",
        "houses.csv",
        "--trainer.max_epochs",
        "20",
        "--trainer.check_val_every_n_epoch",
        "20",
        *QUIET,
    ]
    assert run_cli("fit", *args) == 0
    written = images(in_tmp / "lightning_logs" / "regression" / "version_0")
    assert {"val/fit", "val/residuals", "test/fit", "test/residuals"} <= set(written)
