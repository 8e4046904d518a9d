"""Exact resume: k epochs (or a signal mid-epoch) then --ckpt_path last equals one straight run."""

import json
import signal
from pathlib import Path

import pytest
import torch

from tests.conftest import QUIET, config, run_cli
from tests.test_cli import scalars

# Shuffled mini-batches (7 per epoch) and dropout: both draw random numbers every step.
RANDOM_RUN = [
    "--config",
    config("circles"),
    "--data.batch_size",
    "100",
    "--model.net.init_args.dropout",
    "0.3",
    "--model.net.init_args.hidden_sizes",
    "[32, 32]",
    "--trainer.check_val_every_n_epoch",
    "1",
    "--trainer.log_every_n_steps",
    "1",
    *QUIET,
]


def final_state(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def assert_same_run(resumed: Path, straight: Path) -> None:
    resumed_state, straight_state = final_state(resumed), final_state(straight)
    for key, value in straight_state.items():
        assert torch.equal(resumed_state[key], value), key
    resumed_curves, straight_curves = scalars(resumed), scalars(straight)
    for tag in ("val/loss", "val/acc", "test/acc"):
        assert resumed_curves[tag][-1] == straight_curves[tag][-1], tag


def test_epoch_boundary_resume_is_bit_identical(in_tmp: Path) -> None:
    assert run_cli("fit", *RANDOM_RUN, "--trainer.max_epochs", "3") == 0
    assert run_cli("fit", *RANDOM_RUN, "--trainer.max_epochs", "5", "--ckpt_path", "last") == 0
    assert run_cli("fit", *RANDOM_RUN, "--trainer.max_epochs", "5") == 0
    experiment = in_tmp / "lightning_logs" / "circles"
    assert_same_run(experiment / "version_0", experiment / "version_1")


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_mid_epoch_saves_that_step_and_resumes_exactly(
    in_tmp: Path, signum: int, code: int, capsys: pytest.CaptureFixture
) -> None:
    stopper = json.dumps([{"class_path": "tests.helpers.SignalAtStep", "init_args": {"step": 10, "signum": signum}}])
    assert run_cli("fit", *RANDOM_RUN, "--trainer.max_epochs", "4", "--trainer.callbacks", stopper) == code
    assert "resume with --ckpt_path last" in capsys.readouterr().err
    run = in_tmp / "lightning_logs" / "circles" / "version_0"
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 10  # step 10 is the 4th of 7 in epoch 1: mid-epoch
    assert run_cli("fit", *RANDOM_RUN, "--trainer.max_epochs", "4", "--ckpt_path", "last") == 0
    assert run_cli("fit", *RANDOM_RUN, "--trainer.max_epochs", "4") == 0
    assert_same_run(run, in_tmp / "lightning_logs" / "circles" / "version_1")
    assert [s for s, _ in scalars(run)["train/loss_step"]] == list(range(28))


def test_step_checkpoints_keep_the_end_of_epoch_ones(in_tmp: Path) -> None:
    assert run_cli("fit", *RANDOM_RUN, "--trainer.max_epochs", "2", "--checkpoint.last_every_n_steps", "3") == 0
    run = in_tmp / "lightning_logs" / "circles" / "version_0"
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 14
    assert list((run / "checkpoints").glob("epoch=*.ckpt"))  # the best-k checkpoint still exists
