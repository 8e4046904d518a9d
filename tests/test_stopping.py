"""Stopping by signal says truly what was saved, and a run hands back the signal handlers it found."""

import json
import os
import shutil
import signal
from pathlib import Path

import pytest
import torch

from src.tools.predictor import Predictor
from tests.conftest import QUIET, config, run_cli

# Circles in mini-batches (7 a epoch) with 4 validation batches, validated every epoch.
RUN = [
    "--config",
    config("circles"),
    "--data.batch_size",
    "100",
    "--data.eval_batch_size",
    "25",
    "--model.net.init_args.hidden_sizes",
    "[16]",
    "--trainer.check_val_every_n_epoch",
    "1",
    "--trainer.max_epochs",
    "3",
    *QUIET,
]
CHECKPOINTS = Path("lightning_logs") / "circles" / "version_0" / "checkpoints"


def callbacks(class_name: str, **init_args: int) -> list[str]:
    return ["--trainer.callbacks", json.dumps([{"class_path": f"tests.helpers.{class_name}", "init_args": init_args}])]


def test_sigterm_during_validation_says_the_current_step_was_not_saved(
    in_tmp: Path, capsys: pytest.CaptureFixture
) -> None:
    # Step 14 ends epoch 2; its validation is interrupted at its first batch, before last.ckpt is rewritten.
    stopper = callbacks("SignalInValidation", step=14, signum=signal.SIGTERM)
    assert run_cli("fit", *RUN, *stopper) == 143
    error = capsys.readouterr().err.strip().splitlines()[-1]
    saved = torch.load(in_tmp / CHECKPOINTS / "last.ckpt", weights_only=True)["global_step"]
    assert saved == 7  # the validation of epoch 1
    assert "the current step (14) was not saved" in error and f"{CHECKPOINTS / 'last.ckpt'} (step 7)" in error
    assert run_cli("fit", *RUN, "--ckpt_path", "last") == 0  # and it resumes from there


def signal_after_the_save_point(monkeypatch: pytest.MonkeyPatch, step: int, signum: int) -> None:
    """Send `signum` just after training step `step` passed RunCheckpoint's save point (the module's
    batch-end hook runs after every callback's): a signal between two batches."""
    from src.modules import ClassificationModule

    original = ClassificationModule.on_train_batch_end

    def batch_end(self: ClassificationModule, *args: object) -> None:
        original(self, *args)
        if self.trainer.global_step == step:
            os.kill(os.getpid(), signum)

    monkeypatch.setattr(ClassificationModule, "on_train_batch_end", batch_end)


@pytest.mark.parametrize(
    ("extra", "signum", "step", "saved"),
    [
        ([], signal.SIGINT, 10, 11),  # mid-epoch: the next batch trains, then its step is saved
        ([], signal.SIGTERM, 10, 11),
        (["--data.batch_size", "1000"], signal.SIGTERM, 5, 5),  # full batch: the epoch's end saves its step
        (["--data.batch_size", "1000"], signal.SIGINT, 5, 5),
    ],
    ids=["sigint-mid-epoch", "sigterm-mid-epoch", "sigterm-full-batch", "sigint-full-batch"],
)
def test_a_signal_between_two_batches_loses_no_step(
    in_tmp: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    extra: list[str],
    signum: int,
    step: int,
    saved: int,
) -> None:
    signal_after_the_save_point(monkeypatch, step, signum)
    assert run_cli("fit", *RUN, "--trainer.max_epochs", "10", *extra) == 128 + signum
    error = capsys.readouterr().err.strip().splitlines()[-1]
    last = in_tmp / CHECKPOINTS / "last.ckpt"
    assert f"received: saved the current step ({saved}) to {CHECKPOINTS / 'last.ckpt'}" in error, error
    assert torch.load(last, weights_only=True)["global_step"] == saved


@pytest.mark.parametrize(
    ("signum", "step", "extra"),
    [
        (signal.SIGTERM, 14, []),  # step 14 ends epoch 2, which validates at its end
        (signal.SIGINT, 14, []),
        (signal.SIGTERM, 10, ["--trainer.val_check_interval", "3"]),  # step 10 is followed by a mid-epoch one
    ],
    ids=["sigterm-epoch-end", "sigint-epoch-end", "sigterm-mid-epoch"],
)
def test_a_signal_in_a_batch_that_validation_follows_stops_after_that_validation(
    in_tmp: Path, capsys: pytest.CaptureFixture, signum: int, step: int, extra: list[str]
) -> None:
    """The step is saved at once; the validation due after it runs before the stop, and is saved
    with it, so the resumed run misses no validation (Lightning resumes past a skipped one)."""
    from tests.test_cli import scalars

    def validations() -> list[tuple[int, float]]:
        return scalars(in_tmp / CHECKPOINTS.parent)["val/acc"]

    assert run_cli("fit", *RUN, *extra) == 0
    straight = validations()
    shutil.rmtree(in_tmp / "lightning_logs")
    assert run_cli("fit", *RUN, *extra, *callbacks("SignalAtStep", step=step, signum=signum)) == 128 + signum
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"saved the current step ({step})" in error, error
    # Lightning logs a validation at the step before the one it follows (13 for step 14's).
    assert validations() == [point for point in straight if point[0] < step] and validations()[-1][0] == step - 1
    assert run_cli("fit", *RUN, *extra, "--ckpt_path", "last") == 0
    assert validations() == straight  # every validation, at the same steps with the same results


@pytest.mark.parametrize(("patience", "step"), [(3, 35), (1, 14)], ids=["counting", "ran-out-in-that-validation"])
def test_a_signal_before_a_validation_that_does_not_improve_keeps_early_stoppings_count(
    in_tmp: Path, patience: int, step: int
) -> None:
    """JUMPY's epochs 2 and 5 validate worse than the best before (no top-k save). A signal in the last
    step of one: that validation's count is saved with the stop, so the resumed run stops where an
    uninterrupted one does (patience 3: after epoch 7; patience 1: the count ran out in epoch 2's
    validation, so the resumed run trains nothing more)."""
    from tests.conftest import JUMPY

    stopping = ["--early_stopping.patience", str(patience), "--trainer.max_epochs", "30"]
    assert run_cli("fit", *JUMPY, *stopping) == 0
    straight = torch.load(in_tmp / CHECKPOINTS / "last.ckpt", weights_only=True)
    shutil.rmtree(in_tmp / "lightning_logs")
    assert run_cli("fit", *JUMPY, *stopping, *callbacks("SignalAtStep", step=step, signum=signal.SIGTERM)) == 143
    assert run_cli("fit", *JUMPY, *stopping, "--ckpt_path", "last") == 0
    resumed = torch.load(in_tmp / CHECKPOINTS / "last.ckpt", weights_only=True)
    assert (resumed["epoch"], resumed["global_step"]) == (straight["epoch"], straight["global_step"])


def test_a_new_run_stopped_before_any_save_is_told_to_start_again() -> None:
    from src.checkpointing.run_checkpoint import TrainingInterrupted

    fresh = str(TrainingInterrupted(signal.SIGTERM, None, None, 0, resumed=False))
    assert fresh.endswith("before this run saved anything: start it again") and "--ckpt_path last" not in fresh
    assert "resume with the same --ckpt_path" in str(TrainingInterrupted(signal.SIGTERM, None, None, 0, resumed=True))


def test_the_resume_advice_names_the_file_where_last_would_not_find_it(
    in_tmp: Path, capsys: pytest.CaptureFixture
) -> None:
    """`--ckpt_path last` finds the newest run's last.ckpt of the logger's experiment: a run without a
    logger, or one resumed in an older run folder, is told its own file; the newest run, `last`."""
    stop = callbacks("SignalAtStep", step=2, signum=signal.SIGTERM)
    assert run_cli("fit", *RUN, "--trainer.max_epochs", "10", *stop) == 143
    assert capsys.readouterr().err.strip().endswith("resume with --ckpt_path last")
    assert run_cli("fit", *RUN, "--trainer.max_epochs", "10", *stop, "--trainer.logger", "false") == 143
    own = in_tmp / "checkpoints" / "last.ckpt"  # the Trainer's default folder without a logger
    assert capsys.readouterr().err.strip().endswith(f"resume with --ckpt_path {own}")
    assert own.is_file()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_before_the_first_step_trains_nothing_and_leaves_no_run(
    in_tmp: Path, capsys: pytest.CaptureFixture, signum: int
) -> None:
    assert run_cli("fit", *RUN, *callbacks("SignalAtFirstBatch", signum=signum)) == 128 + signum
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.endswith("received before this run saved anything: start it again"), error
    assert not (in_tmp / "lightning_logs" / "circles" / "version_0").exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_the_data_is_read_stops_as_in_training(
    in_tmp: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, signum: int
) -> None:
    """A signal before training starts (a long first decode) ends in one line and 130 or 143, as in
    training, and leaves no run folder (Lightning alone exits 1 on Ctrl-C; a SIGTERM before its
    handler is in place killed the process and left the folder)."""
    from src.datamodules import ToyPointsDataModule

    def setup(self: ToyPointsDataModule, stage: str) -> None:
        if stage == "fit":
            os.kill(os.getpid(), signum)

    monkeypatch.setattr(ToyPointsDataModule, "setup", setup)
    assert run_cli("fit", *RUN) == 128 + signum
    error = capsys.readouterr().err.strip().splitlines()[-1]
    name = signal.Signals(signum).name
    assert error == f"stopped: {name} received before this run saved anything: start it again", error
    assert not (in_tmp / "lightning_logs" / "circles" / "version_0").exists()


def test_a_stop_without_last_ckpt_names_the_newest_kept_checkpoint(in_tmp: Path, capsys: pytest.CaptureFixture) -> None:
    """With --checkpoint.save_last false, a stop names the newest top-k checkpoint to resume from."""
    stopper = callbacks("SignalAtStep", step=17, signum=signal.SIGTERM)
    top3 = ["--checkpoint.save_last", "false", "--checkpoint.save_top_k", "3", "--trainer.max_epochs", "5"]
    assert run_cli("fit", *RUN, *top3, *stopper) == 143
    error = capsys.readouterr().err.strip().splitlines()[-1]
    newest = CHECKPOINTS / "epoch=1-step=14.ckpt"
    assert "before this run saved anything" not in error, error
    assert "the current step (17) was not saved" in error and f"--ckpt_path {newest}" in error, error
    assert not (in_tmp / CHECKPOINTS / "last.ckpt").exists()
    assert run_cli("fit", *RUN, *top3, "--ckpt_path", str(newest)) == 0


def test_a_signal_after_the_last_batch_keeps_that_epochs_top_k_save(
    in_tmp: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run without validation saves its top k at each epoch's end; a stop there keeps that save."""
    signal_after_the_save_point(monkeypatch, 14, signal.SIGTERM)  # step 14 is epoch 2's last batch
    no_val = ["--trainer.limit_val_batches", "0", "--trainer.max_epochs", "10", "--checkpoint.monitor", "train/loss"]
    assert run_cli("fit", *RUN, *no_val) == 143
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "saved the current step (14)" in error, error
    assert (in_tmp / CHECKPOINTS / "epoch=1-step=14.ckpt").is_file()
    assert torch.load(in_tmp / CHECKPOINTS / "last.ckpt", weights_only=True)["global_step"] == 14


def test_a_second_ctrl_c_stops_at_once_and_names_the_newest_checkpoint(
    in_tmp: Path, capsys: pytest.CaptureFixture
) -> None:
    assert run_cli("fit", *RUN, *callbacks("DoubleCtrlC", step=10)) == 130
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("stopped: SIGINT received")
    assert "the current step (10) was not saved" in error and "(step 7)" in error
    assert torch.load(in_tmp / CHECKPOINTS / "last.ckpt", weights_only=True)["global_step"] == 7


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        ([], 0),  # a run that ends normally
        (["--model.optimizer", "torch.optim.SGD", "--model.optimizer.lr", "1e30"], 2),  # one that fails (NaN loss)
        (callbacks("SignalAtStep", step=3, signum=signal.SIGTERM), 143),  # one stopped by a signal
    ],
)
def test_every_run_hands_back_the_signal_handlers_it_found(in_tmp: Path, extra: list[str], code: int) -> None:
    def mine(signum: int, frame: object) -> None:
        """The session's own handler (Lightning also calls a SIGTERM handler it finds in place)."""

    before = {signum: signal.signal(signum, mine) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        assert run_cli("fit", *RUN, *extra) == code
        assert signal.getsignal(signal.SIGTERM) is mine and signal.getsignal(signal.SIGINT) is mine
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("command", ["validate", "test", "predict", "fit"])  # fit: during its test of the best
def test_a_signal_during_evaluation_or_predict_stops_as_fit_does(
    in_tmp: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, command: str, signum: int
) -> None:
    run = [*RUN, "--trainer.max_epochs", "1"]
    if command != "fit":
        assert run_cli("fit", *run) == 0
    (in_tmp / "points.csv").write_text("x1,x2\n0.0,0.0\n1.0,0.0\n")
    (in_tmp / "predictions.csv").write_text("x1,x2,class,probability,p_0,p_1\n")  # an earlier predict's
    checkpoints = sorted(in_tmp.rglob("*.ckpt"))
    saved = {path: path.read_bytes() for path in checkpoints}
    given = ["--ckpt_path", "last"] if command != "fit" else []
    if command == "predict":
        given += ["--input", "points.csv"]
    stopper = [
        "--trainer.callbacks",
        json.dumps([{"class_path": "tests.helpers.SignalInEvaluation", "init_args": {"signum": signum}}]),
    ]
    if command == "predict":  # predict runs the Predictor, not the Trainer's loop: the signal comes in its first batch
        forward = Predictor._forward

        def signalled(self: Predictor, inputs: torch.Tensor) -> torch.Tensor:
            os.kill(os.getpid(), signum)
            return forward(self, inputs)

        monkeypatch.setattr(Predictor, "_forward", signalled)

    def mine(signum: int, frame: object) -> None:
        """The session's own SIGTERM handler, which the command must hand back (SIGINT keeps Python's)."""

    ctrl_c, before = signal.getsignal(signal.SIGINT), signal.signal(signal.SIGTERM, mine)
    try:
        capsys.readouterr()
        assert run_cli(command, *run, *given, *stopper) == 128 + signum
        assert signal.getsignal(signal.SIGTERM) is mine and signal.getsignal(signal.SIGINT) is ctrl_c
    finally:
        signal.signal(signal.SIGTERM, before)
        signal.signal(signal.SIGINT, ctrl_c)
    err = capsys.readouterr().err
    last = [line for line in err.splitlines() if line.strip()][-1]
    assert last.startswith(f"stopped: {signal.Signals(signum).name} received during "), last
    assert "Traceback" not in err and "graceful shutdown" not in err
    assert (in_tmp / "predictions.csv").read_text() == "x1,x2,class,probability,p_0,p_1\n"
    assert not [path for path in in_tmp.iterdir() if ".tmp-" in path.name]
    if command != "fit":
        assert {path: path.read_bytes() for path in checkpoints} == saved
