"""Exact resume: k epochs (or a signal mid-epoch) then --ckpt_path last equals one straight run."""

import json
import signal
from pathlib import Path

import pytest
import torch

from src.checkpointing.rng_state import RngState
from tests.conftest import JUMPY, QUIET, config, run_cli
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
    # The running best goes on where it was: the whole curve, not only its last point.
    # (Step 0 holds the HPARAMS tab's NaN placeholder.)
    best = {
        name: [point for point in curves["val/acc_best"] if point[0] > 0]
        for name, curves in (("resumed", resumed_curves), ("straight", straight_curves))
    }
    assert best["resumed"] == best["straight"]


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


@pytest.mark.parametrize(
    ("signum", "code", "batch", "validation"),
    [
        (signal.SIGTERM, 143, 4, []),
        (signal.SIGINT, 130, 4, []),
        (signal.SIGTERM, 143, 3, ["--trainer.val_check_interval", "4"]),
    ],
)
def test_a_signal_mid_accumulation_window_saves_at_the_window_end_and_resumes_exactly(
    in_tmp: Path, signum: int, code: int, batch: int, validation: list[str]
) -> None:
    # 7 batches an epoch, 3 accumulated per step: windows [0-2] [3-5] [6], 3 steps an epoch. The
    # signal comes after batch 4 (or 3) of epoch 1, mid-window: batch 5 still runs and steps (step
    # 5). In the third case a validation also runs mid-window, after batch 3, with the stop pending.
    accumulate = [*RANDOM_RUN, "--trainer.max_epochs", "3", "--trainer.accumulate_grad_batches", "3", *validation]
    stopper = {"class_path": "tests.helpers.SignalAtBatch", "init_args": {"epoch": 1, "batch": batch, "signum": signum}}
    assert run_cli("fit", *accumulate, "--trainer.callbacks", json.dumps([stopper])) == code
    run = in_tmp / "lightning_logs" / "circles" / "version_0"
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 5
    assert run_cli("fit", *accumulate, "--ckpt_path", "last") == 0
    assert run_cli("fit", *accumulate) == 0
    assert_same_run(run, in_tmp / "lightning_logs" / "circles" / "version_1")


def test_step_checkpoints_keep_the_end_of_epoch_ones(in_tmp: Path) -> None:
    assert run_cli("fit", *RANDOM_RUN, "--trainer.max_epochs", "2", "--checkpoint.last_every_n_steps", "3") == 0
    run = in_tmp / "lightning_logs" / "circles" / "version_0"
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 14
    assert list((run / "checkpoints").glob("epoch=*.ckpt"))  # the best-k checkpoint still exists


def test_the_running_best_goes_on_after_a_resume(in_tmp: Path) -> None:
    # SGD at lr 3 makes validation accuracy jump around: 0.75 at epoch 4, then 0.44 at epoch 5.
    # A running best that restarted at the resume would log 0.44 as the best of epoch 5.
    assert run_cli("fit", *JUMPY, "--trainer.max_epochs", "4") == 0
    assert run_cli("fit", *JUMPY, "--trainer.max_epochs", "8", "--ckpt_path", "last") == 0
    assert run_cli("fit", *JUMPY, "--trainer.max_epochs", "8") == 0
    experiment = in_tmp / "lightning_logs" / "circles"
    resumed, straight = scalars(experiment / "version_0"), scalars(experiment / "version_1")
    accuracy = dict(straight["val/acc"])
    best = [value for step, value in straight["val/acc_best"] if step > 0]
    assert best == [max(list(accuracy.values())[: k + 1]) for k in range(len(best))]  # a true running max
    assert max(best[:4]) > min(list(accuracy.values())[4:])  # this run does dip after the resume point
    assert [p for p in resumed["val/acc_best"] if p[0] > 0] == [p for p in straight["val/acc_best"] if p[0] > 0]


def test_a_streaming_run_resumed_mid_epoch_trains_exactly_the_batches_that_remained(
    in_tmp: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from tests.test_image_folder import food_run, food_tree

    tree = food_tree(tmp_path / "food", per_class=6)  # 14 training images after the hold-out
    # Workers fetch ahead (the case a resume must get right); no augmentation: the batches
    # are then the same in every run, so the weights can be compared bit for bit.
    streaming = ["--data.streaming", "true", "--data.num_workers", "2", "--data.flip", "false"]
    args = food_run(tree, tmp_path, *streaming, "--data.translate", "0", "--data.batch_size", "4")
    args += ["--trainer.check_val_every_n_epoch", "1", "--trainer.log_every_n_steps", "1"]
    stop = {"class_path": "tests.helpers.SignalAtStep", "init_args": {"step": 6, "signum": signal.SIGTERM}}
    assert run_cli("fit", *args, f"--trainer.callbacks+={json.dumps(stop)}") == 143
    run = in_tmp / "lightning_logs" / "image_folder" / "version_0"
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 6  # 2nd of epoch 1's 4
    assert run_cli("fit", *args, "--ckpt_path", "last") == 0
    assert run_cli("fit", *args) == 0
    straight = in_tmp / "lightning_logs" / "image_folder" / "version_1"
    resumed_state, straight_state = final_state(run), final_state(straight)
    for key, value in straight_state.items():
        assert torch.equal(resumed_state[key], value), key
    assert [s for s, _ in scalars(run)["train/loss_step"]] == list(range(12))  # 3 epochs of 4 steps, none again


def test_each_process_restores_the_cuda_generator_of_its_own_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rank 0 writes the checkpoint: it keeps its own device's CUDA state, which every rank (each
    on its own device, having drawn as many numbers) sets on its current device. Faked on a CPU."""
    drawn = torch.tensor([7, 8, 9], dtype=torch.uint8)
    set_on_current: list[torch.Tensor] = []
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": drawn.clone())
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device="cuda": set_on_current.append(state))
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: pytest.fail("set every device's state"))
    state = RngState().state_dict()
    assert len(state["cuda"]) == 1 and torch.equal(state["cuda"][0], drawn)
    RngState().load_state_dict(state)
    assert len(set_on_current) == 1 and torch.equal(set_on_current[0], drawn)
