"""What a run prints: the template's lines and Lightning's useful ones, not adverts or misleading notices."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import QUIET, ROOT, config, run_train_py


def test_lr_find_prints_no_advert_and_no_weights_only_notice(tmp_path: Path) -> None:
    done = run_train_py("lr_find", "--config", config("circles"), *QUIET, "--num_training", "20", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    printed = done.stdout + done.stderr
    assert "Suggested learning rate" in printed or "no suggestion" in printed
    for noise in ("litlogger", "weights_only", "Restoring states", "to estimate number of stepping batches"):
        assert noise not in printed, noise


def test_fit_prints_no_advert_and_no_zero_flops(tmp_path: Path) -> None:
    # The model summary stays on: it lists the modules, without Lightning's column of zero FLOPs.
    quiet_bar = ["--trainer.enable_progress_bar", "false"]
    done = run_train_py("fit", "--config", config("blobs"), *quiet_bar, "--trainer.max_epochs", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    printed = done.stdout + done.stderr
    assert "TensorBoard logs:" in printed
    assert "litlogger" not in printed and "to estimate number of stepping batches" not in printed
    assert "Total params" in printed and "┃ Name" in printed  # the summary is there
    assert "FLOPs" not in printed and "Flops" not in printed
    assert "already configured with model summary" not in printed
    assert "smaller than the logging interval" not in printed  # a full-batch task: silenced where raised


def test_an_mlflow_run_prints_its_run_not_the_database_setup(tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    parts = ["--config", config("circles"), "--config", str(ROOT / "configs/loggers/mlflow.yaml")]
    done = run_train_py(
        "fit", *parts, *QUIET, "--trainer.max_epochs", "2", cwd=tmp_path, env={"MLFLOW_TRACKING_URI": ""}
    )
    assert done.returncode == 0, done.stderr[-2000:]
    printed = done.stdout + done.stderr
    assert "MLflow run " in printed  # the template's own line: where the run is
    for noise in ("Creating initial MLflow database tables", "Updating database tables", "Experiment with name"):
        assert noise not in printed, noise


def test_a_wandb_run_prints_its_run_without_colour_codes(tmp_path: Path) -> None:
    pytest.importorskip("wandb")
    parts = ["--config", config("circles"), "--config", str(ROOT / "configs/loggers/wandb.yaml")]
    flags = [*parts, *QUIET, "--trainer.max_epochs", "2", "--trainer.logger.init_args.offline", "true"]
    environment = {key: value for key, value in os.environ.items() if key != "WANDB_SILENT"}  # as a user has it
    command = [sys.executable, str(ROOT / "train.py"), "fit", *flags]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=environment)
    assert done.returncode == 0, done.stderr[-2000:]
    printed = done.stdout + done.stderr
    assert "W&B offline run " in printed  # the template's own line: where the run is and how to sync it
    assert "\x1b[" not in printed and "wandb: " not in printed


def test_importing_the_template_sets_no_warning_filter() -> None:
    # Warnings are silenced around the call that raises them, never for the whole process.
    code = (
        "import warnings\n"
        "import lightning.pytorch, torch, torchmetrics, jsonargparse\n"
        "before = list(warnings.filters)\n"
        "import src.callbacks, src.checkpointing, src.cli, src.loggers\n"
        "print([str(f[1].pattern) for f in warnings.filters if f not in before and f[1] is not None])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]", done.stdout
