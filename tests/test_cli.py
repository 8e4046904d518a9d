"""The command line end to end: fit, test the best checkpoint, TensorBoard, resume, bad input."""

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import QUIET, ROOT, config, run_cli, run_train_py


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar curve TensorBoard would show for a run folder."""
    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


def test_circles_fit_trains_tests_the_best_checkpoint_and_logs_everything(in_tmp: Path) -> None:
    assert run_cli("fit", "--config", config("circles"), "--trainer.max_epochs", "50", *QUIET) == 0
    run = in_tmp / "lightning_logs" / "circles" / "version_0"
    checkpoints = sorted(p.name for p in (run / "checkpoints").glob("*.ckpt"))
    assert "last.ckpt" in checkpoints and any(name.startswith("epoch=") for name in checkpoints)
    assert all((run / "checkpoints" / f"{name}.sha256").is_file() for name in checkpoints)
    assert (run / "config.yaml").is_file()
    curves = scalars(run)
    assert curves["test/acc"][-1][1] >= 0.97
    for tag in (
        "train/loss_step",
        "train/loss",
        "train/acc",
        "train/lr",
        "val/loss",
        "val/acc",
        "val/f1",
        "val/acc_best",
        "val/acc_class_0",
        "test/f1",
    ):
        assert tag in curves, tag
    assert len(curves["train/loss_step"]) == 5  # every 10 of 50 steps
    assert all(torch.load(run / "checkpoints" / name, weights_only=True) for name in checkpoints)


def test_regression_fit_reaches_a_good_fit(in_tmp: Path) -> None:
    assert run_cli("fit", "--config", config("regression"), "--trainer.max_epochs", "300", *QUIET) == 0
    curves = scalars(in_tmp / "lightning_logs" / "regression" / "version_0")
    assert curves["test/r2"][-1][1] > 0.9


def test_resume_continues_the_same_run_in_the_same_folder(in_tmp: Path) -> None:
    common = [
        "--config",
        config("circles"),
        "--trainer.check_val_every_n_epoch",
        "1",
        "--trainer.log_every_n_steps",
        "1",
        *QUIET,
    ]
    assert run_cli("fit", *common, "--trainer.max_epochs", "4") == 0
    assert run_cli("fit", *common, "--trainer.max_epochs", "7", "--ckpt_path", "last") == 0
    experiment = in_tmp / "lightning_logs" / "circles"
    assert sorted(p.name for p in experiment.iterdir()) == ["version_0"]
    run = experiment / "version_0"
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (6, 7)
    steps = [step for step, _ in scalars(run)["train/loss_step"]]
    assert steps == list(range(7))  # one curve, continued from step 4
    assert (run / "config.yaml").is_file() and (run / "config.resumed-1.yaml").is_file()

    # The uninterrupted run ends with the same weights.
    assert run_cli("fit", *common, "--trainer.max_epochs", "7") == 0
    straight = torch.load(experiment / "version_1" / "checkpoints" / "last.ckpt", weights_only=True)
    for key, value in last["state_dict"].items():
        assert torch.equal(value, straight["state_dict"][key]), key


def test_validate_test_and_predict_take_a_checkpoint(in_tmp: Path) -> None:
    assert run_cli("fit", "--config", config("blobs"), "--trainer.max_epochs", "20", *QUIET) == 0
    for subcommand, ckpt in (("validate", "best"), ("test", "last")):
        assert run_cli(subcommand, "--config", config("blobs"), "--ckpt_path", ckpt, *QUIET) == 0
    best = next((in_tmp / "lightning_logs" / "blobs" / "version_0" / "checkpoints").glob("epoch=*.ckpt"))
    assert run_cli("test", "--config", config("blobs"), "--ckpt_path", str(best), *QUIET) == 0


def test_resuming_with_nothing_to_resume_fails_clearly(in_tmp: Path, capsys: pytest.CaptureFixture) -> None:
    assert run_cli("fit", "--config", config("circles"), "--ckpt_path", "last", *QUIET) == 2
    error = capsys.readouterr().err
    assert "nothing to resume" in error and "Traceback" not in error
    assert not (in_tmp / "lightning_logs" / "circles").exists()


def test_bf16_mixed_precision_trains_on_cpu(in_tmp: Path) -> None:
    args = [
        "--config",
        config("circles"),
        "--trainer.precision",
        "bf16-mixed",
        "--trainer.max_epochs",
        "25",
        "--model.net.init_args.hidden_sizes",
        "[32, 32]",
        *QUIET,
    ]
    assert run_cli("fit", *args) == 0
    curves = scalars(in_tmp / "lightning_logs" / "circles" / "version_0")
    assert curves["test/acc"][-1][1] > 0.6 and all(v == v for _, v in curves["train/loss_step"])


def test_help_and_print_config(capsys: pytest.CaptureFixture) -> None:
    assert run_cli("fit", "--help") == 0
    assert "--trainer.precision" in capsys.readouterr().out
    assert run_cli("fit", "--config", config("regression"), "--print_config") == 0
    printed = capsys.readouterr().out
    assert "src.modules.RegressionModule" in printed and "onecycle" in printed


def test_a_fresh_process_trains_circles_and_reports_where_things_are(tmp_path: Path) -> None:
    result = run_train_py("fit", "--config", config("circles"), "--trainer.max_epochs", "50", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "test/acc" in result.stdout and "lightning_logs/circles/version_0" in result.stdout
    # Not a terminal (CI, a log file): no progress bar, one plain line per validation.
    lines = [line for line in result.stdout.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in lines] == ["25/50", "50/50"]  # one plain line per validation
    assert "Epoch 0/49" not in result.stdout + result.stderr  # the progress bar's text


@pytest.mark.skipif(shutil.which("script") is None, reason="util-linux's script is needed to run in a terminal")
def test_in_a_terminal_the_progress_bar_and_model_summary_are_rich(tmp_path: Path) -> None:
    command = shlex.join(
        [sys.executable, str(ROOT / "train.py"), "fit", "--config", config("circles"), "--trainer.max_epochs", "30"]
    )
    result = subprocess.run(
        ["script", "-qec", command, "/dev/null"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "120", "TERM": "xterm"},
    )
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", result.stdout)  # without colours and cursor moves
    assert result.returncode == 0, screen[-2000:]
    assert "━" in screen and "Epoch 29/29" in screen  # rich's progress bar
    assert "┃ Name" in screen and "Trainable params: 264 K" in screen  # rich's model summary table
    assert "\nepoch 25/30" not in screen  # no plain lines on top of the bar


def test_ddp_with_two_cpu_processes(tmp_path: Path) -> None:
    args = [
        "fit",
        "--config",
        config("circles"),
        "--trainer.strategy",
        "ddp",
        "--trainer.devices",
        "2",
        "--trainer.accelerator",
        "cpu",
        "--trainer.max_epochs",
        "25",
        *QUIET,
    ]
    result = run_train_py(*args, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    curves = scalars(tmp_path / "lightning_logs" / "circles" / "version_0")
    assert curves["test/acc"][-1][1] > 0.9
