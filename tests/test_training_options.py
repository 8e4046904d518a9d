"""Options a template user reaches for: early stopping, debug presets, gradient accumulation and clipping."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from src.callbacks.early_stopping import EarlyStoppingOnBest
from src.errors import UserInputError
from tests.conftest import JUMPY, QUIET, ROOT, config, run_cli
from tests.test_cli import scalars

EXPERIMENT = Path("lightning_logs") / "circles"


def validated_epochs(run: Path) -> int:
    return len([step for step, _ in scalars(run)["val/acc"] if step > 0])


def test_early_stopping_counts_validations_and_says_so(in_tmp: Path, capsys: pytest.CaptureFixture) -> None:
    assert run_cli("fit", *JUMPY, "--trainer.max_epochs", "30", "--early_stopping.patience", "3") == 0
    assert validated_epochs(in_tmp / EXPERIMENT / "version_0") == 7  # best at 4, then 3 without improvement
    out = capsys.readouterr().out
    assert "Early stopping: val/acc did not improve for 3 validations; stopped after epoch 7." in out


def test_a_run_resumed_after_its_early_stop_stays_stopped_unless_given_more_patience(
    in_tmp: Path, capsys: pytest.CaptureFixture
) -> None:
    """Resumed with the same patience, the run's count has run out: it trains nothing more and says
    why; with a larger patience it goes on counting from where it stopped."""
    stopping = ["--trainer.max_epochs", "30", "--early_stopping.patience", "3"]
    assert run_cli("fit", *JUMPY, *stopping) == 0
    last = in_tmp / EXPERIMENT / "version_0" / "checkpoints" / "last.ckpt"
    stopped_at = torch.load(last, weights_only=True)["global_step"]
    capsys.readouterr()
    assert run_cli("fit", *JUMPY, *stopping, "--ckpt_path", "last") == 0
    out = capsys.readouterr().out
    assert "Early stopping: val/acc did not improve for 3 validations; stopped after epoch 7." in out, out
    assert torch.load(last, weights_only=True)["global_step"] == stopped_at
    assert run_cli("fit", *JUMPY, *stopping, "--early_stopping.patience", "5", "--ckpt_path", "last") == 0
    assert torch.load(last, weights_only=True)["global_step"] > stopped_at


def test_early_stopping_without_validation_is_one_line(in_tmp: Path, capsys: pytest.CaptureFixture) -> None:
    """Patience counts validations: with none to count, the run stops before training and says so, rather
    than blame the monitor's name (or never stop)."""
    off = ["--trainer.limit_val_batches", "0", "--trainer.check_val_every_n_epoch", "1"]
    assert run_cli("fit", *JUMPY, "--trainer.max_epochs", "5", "--early_stopping.patience", "3", *off) == 2
    error = capsys.readouterr().err.strip()
    assert error == (
        "error: --early_stopping.patience counts validations of val/acc, but validation is off: "
        "--trainer.limit_val_batches 0: turn validation on (a validation split, --trainer.limit_val_batches above 0) "
        "or leave out --early_stopping.patience"
    )
    assert not (in_tmp / EXPERIMENT / "version_0" / "checkpoints").exists()
    stopper = EarlyStoppingOnBest(patience=3, monitor="val/acc", mode="max")  # data without a validation split
    with pytest.raises(UserInputError, match="counts validations of val/acc, but no validation ran before this"):
        stopper._validate_condition_metric({"train/loss": torch.tensor(0.5)})
    with pytest.raises(UserInputError, match="--early_stopping.monitor val/acc is not a metric this model logs"):
        stopper._validate_condition_metric({"val/loss": torch.tensor(0.5)})
    trainer = SimpleNamespace(check_val_every_n_epoch=25, current_epoch=24, callback_metrics={"train/loss": 0.5})
    with pytest.raises(UserInputError, match="no validation ran: the data has no validation split"):
        stopper.on_train_epoch_end(trainer, None)  # an epoch that validates, with nothing validated
    trainer.current_epoch = 23  # before the first validation: nothing to say yet
    stopper.on_train_epoch_end(trainer, None)


def test_early_stopping_is_off_unless_asked(in_tmp: Path) -> None:
    assert run_cli("fit", *JUMPY, "--trainer.max_epochs", "9") == 0
    assert validated_epochs(in_tmp / EXPERIMENT / "version_0") == 9


def test_early_stopping_keeps_counting_after_a_resume(in_tmp: Path) -> None:
    # Stop after epoch 5 (one validation without improvement), resume: it must still stop after epoch 7.
    stopping = ["--early_stopping.patience", "3"]
    assert run_cli("fit", *JUMPY, *stopping, "--trainer.max_epochs", "5") == 0
    assert run_cli("fit", *JUMPY, *stopping, "--trainer.max_epochs", "30", "--ckpt_path", "last") == 0
    last = torch.load(in_tmp / EXPERIMENT / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 6  # 0-based: the run stopped after epoch 7, as the uninterrupted one does


def test_a_monitor_named_without_a_mode_is_watched_the_way_it_improves(
    in_tmp: Path, capsys: pytest.CaptureFixture
) -> None:
    """`--checkpoint.monitor val/f1` keeps the highest F1 and early stopping on it stops 3 validations
    after its highest (both used to take `min` for any monitor named); a metric the model does not
    know needs its mode."""
    watch = ["--checkpoint.monitor", "val/f1", "--early_stopping.monitor", "val/f1", "--early_stopping.patience", "3"]
    assert run_cli("fit", *JUMPY, "--trainer.max_epochs", "30", *watch) == 0
    curves = scalars(in_tmp / EXPERIMENT / "version_0")
    f1 = {step: value for step, value in curves["val/f1"] if step > 0}
    best = torch.load(in_tmp / EXPERIMENT / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)
    kept = next(state for name, state in best["callbacks"].items() if name.startswith("RunCheckpoint"))
    assert float(kept["best_model_score"]) == pytest.approx(max(f1.values())) and max(f1.values()) > min(f1.values())
    scores = list(f1.values())
    assert scores.index(max(scores)) == len(scores) - 4  # the best, then 3 validations without a gain
    capsys.readouterr()
    assert run_cli("fit", *JUMPY, "--checkpoint.monitor", "train/lr_step") == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--checkpoint.monitor train/lr_step is not a metric this model logs; choose one of: val/acc" in error
    assert "needs --checkpoint.mode max or min" in error and not (in_tmp / EXPERIMENT / "version_1").exists()
    assert run_cli("fit", *JUMPY, "--early_stopping.mode", "up") == 2
    assert "early_stopping.mode: Expected one of 'min', 'max'" in capsys.readouterr().err


@pytest.mark.parametrize("preset", ["fast_dev_run", "overfit", "profile", "limit_batches"])
def test_debug_presets_stack_on_a_task_config(in_tmp: Path, preset: str, capsys: pytest.CaptureFixture) -> None:
    args = ["--config", config("circles"), "--config", str(ROOT / "configs" / "debug" / f"{preset}.yaml")]
    assert run_cli("fit", *args, "--data.batch_size", "50", *QUIET) == 0
    run = in_tmp / EXPERIMENT / "version_0"
    if preset == "fast_dev_run":
        assert not run.exists()  # one batch of each, nothing written
        assert "test/acc" in capsys.readouterr().out  # the test batch ran too
        return
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    if preset == "overfit":
        # The same 2 batches of 50 every epoch: the training loss falls far below the 0.69 of chance.
        assert last["global_step"] == 200 and scalars(run)["train/loss"][-1][1] < 0.05
    if preset == "profile":
        report = (run / "fit-profile.txt").read_text()
        assert "run_training_batch" in report and last["global_step"] == 28  # 2 epochs of 14 batches
    if preset == "limit_batches":
        assert last["global_step"] == 20  # 2 epochs of 10 batches
    assert (
        run_cli(
            "fit",
            *args,
            "--data.batch_size",
            "50",
            "--trainer.max_epochs",
            str(last["epoch"] + 2),
            "--ckpt_path",
            "last",
            *QUIET,
        )
        == 0
    )


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        (["--model.scheduler.name", "cosine"], "cosine schedule was planned for 4 epochs but this run has 8 (its LR"),
        (
            ["--model.scheduler.name", "cosine", "--model.scheduler.warmup_epochs", "1"],
            "cosine schedule was planned for 4 epochs but this run has 8 (its LR would rise again after epoch 4)",
        ),
        (
            ["--model.scheduler.name", "exponential", "--model.scheduler.final_lr", "0.001"],
            "exponential schedule was planned for another trainer.max_epochs than this run's (8)",
        ),
    ],
    ids=["cosine", "cosine-warmup", "exponential-final-lr"],
)
def test_a_resume_with_more_epochs_than_an_epoch_schedule_was_planned_for_is_refused(
    in_tmp: Path, capsys: pytest.CaptureFixture, schedule: list[str], expected: str
) -> None:
    """A resumed scheduler keeps its checkpoint's length: past it, cosine's LR climbs back up."""
    args = ["--config", config("circles"), "--data.batch_size", "50", "--trainer.max_epochs", "4", *QUIET, *schedule]
    stop = json.dumps([{"class_path": "tests.helpers.SignalAtStep", "init_args": {"step": 20, "signum": 15}}])
    assert run_cli("fit", *args, "--trainer.callbacks", stop) == 143
    capsys.readouterr()
    assert run_cli("fit", *args, "--trainer.max_epochs", "8", "--ckpt_path", "last") == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert expected in error and "--model.init_from" in error, error
    assert run_cli("fit", *args, "--ckpt_path", "last") == 0


def test_a_resume_that_would_end_a_one_cycle_schedule_early_is_refused(
    in_tmp: Path, capsys: pytest.CaptureFixture
) -> None:
    """Resumed with a larger batch (fewer steps than planned), the run would stop at a high LR; refused."""
    args = ["--config", config("circles"), "--data.batch_size", "50", "--trainer.max_epochs", "4", *QUIET]
    args += ["--model.scheduler.name", "onecycle"]
    stop = json.dumps([{"class_path": "tests.helpers.SignalAtStep", "init_args": {"step": 20, "signum": 15}}])
    assert run_cli("fit", *args, "--trainer.callbacks", stop) == 143
    capsys.readouterr()
    assert run_cli("fit", *args, "--data.batch_size", "100", "--ckpt_path", "last") == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "planned for 56 steps but this run has 28 (it would end before the schedule does" in error, error
    assert run_cli("fit", *args, "--ckpt_path", "last") == 0
    last = torch.load(in_tmp / EXPERIMENT / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 56


def test_gradient_accumulation_with_one_cycle_ends_the_schedule_exactly(in_tmp: Path) -> None:
    # 14 batches an epoch, 4 accumulated per step: 4 optimizer steps an epoch (the last one partial),
    # and the one-cycle schedule must be planned for those 20 steps: peak lr 0.01 at step 5 (25%),
    # the last step at 0.01 / 25 / 1e4 (div_factor, final_div_factor).
    args = ["--config", config("circles"), "--data.batch_size", "50", "--trainer.max_epochs", "5"]
    options = ["--trainer.accumulate_grad_batches", "4", "--model.scheduler.name", "onecycle"]
    assert run_cli("fit", *args, *options, "--trainer.log_every_n_steps", "1", *QUIET) == 0
    run = in_tmp / EXPERIMENT / "version_0"
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 20
    used = [value for _, value in scalars(run)["train/lr_step"]]  # the lr of each optimizer step
    assert len(used) == 20
    assert max(used) == pytest.approx(0.01, rel=1e-4) and used.index(max(used)) == 4
    assert used[-1] == pytest.approx(0.01 / 25 / 1e4, rel=1e-3)


@pytest.mark.parametrize("schedule", [["step", "--model.scheduler.step_size", "1"], ["onecycle"]])
def test_the_epoch_lr_curve_shows_the_lr_the_epoch_trained_with(in_tmp: Path, schedule: list[str]) -> None:
    """`train/lr` at an epoch's end is the LR of that epoch's last step, not the next epoch's (the
    epoch's scheduler step comes before the epoch's end hooks)."""
    args = ["--config", config("circles"), "--data.batch_size", "100", "--trainer.max_epochs", "4"]
    options = ["--trainer.check_val_every_n_epoch", "1", "--trainer.log_every_n_steps", "1", *QUIET]
    assert run_cli("fit", *args, *options, "--model.scheduler.name", *schedule) == 0
    curves = scalars(in_tmp / EXPERIMENT / "version_0")
    steps = dict(curves["train/lr_step"])  # step index -> the LR that optimizer step used
    epochs = curves["train/lr"]
    assert len(epochs) == 4 and len({value for _, value in epochs}) == 4  # the LR changed every epoch
    for logged_at, value in epochs:
        assert value == pytest.approx(steps[logged_at]), (logged_at, value, steps)


def test_gradient_clipping_bounds_every_update(in_tmp: Path) -> None:
    # SGD without momentum at lr 0.1, gradient norm clipped to 1e-3: 10 steps move the weights by at
    # most 10 * 0.1 * 1e-3 = 1e-3 in norm; unclipped, the same run moves them by far more.
    args = [
        "--config",
        config("circles"),
        "--trainer.max_epochs",
        "10",
        "--trainer.check_val_every_n_epoch",
        "10",
        "--model.optimizer",
        "torch.optim.SGD",
        "--model.optimizer.lr",
        "0.1",
        "--model.net.init_args.hidden_sizes",
        "[16]",
        *QUIET,
    ]

    def moved(name: str, *extra: str) -> float:
        keep = json.dumps([{"class_path": "tests.helpers.SaveInitialWeights", "init_args": {"path": f"{name}.pt"}}])
        assert run_cli("fit", *args, "--trainer.callbacks", keep, *extra) == 0
        run = max((in_tmp / EXPERIMENT).iterdir(), key=lambda path: int(path.name.split("_")[1]))
        final = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
        initial = torch.load(f"{name}.pt", weights_only=True)
        return torch.cat([(final[f"net.{key}"] - value).flatten() for key, value in initial.items()]).norm().item()

    clipped = moved("clipped", "--trainer.gradient_clip_val", "1e-3")
    unclipped = moved("unclipped")
    assert clipped <= 1e-3 * 1.001 and unclipped > 20 * clipped


@pytest.mark.parametrize(("task", "point"), [("circles", "x1,x2\n0.0,0.0\n0.0,0.95\n"), ("regression", "x\n2.5\n12\n")])
def test_double_precision_fits_and_predicts(in_tmp: Path, task: str, point: str) -> None:
    """--trainer.precision 64: figures and predictions feed the model float64, as its steps get."""
    run = ["--config", config(task), "--trainer.max_epochs", "2", "--trainer.check_val_every_n_epoch", "1", *QUIET]
    assert run_cli("fit", *run, "--trainer.precision", "64") == 0
    last = in_tmp / "lightning_logs" / task / "version_0" / "checkpoints" / "last.ckpt"
    weights = torch.load(last, weights_only=True)["state_dict"]
    assert {value.dtype for key, value in weights.items() if key.startswith("net.")} == {torch.float64}
    (in_tmp / "points.csv").write_text(point)
    for precision in ("64", "32"):  # a float64 checkpoint predicts in either
        output = f"predicted_{precision}.csv"
        predict = ["--ckpt_path", "last", "--input", "points.csv", "--output", output]
        assert run_cli("predict", *run, "--trainer.precision", precision, *predict) == 0
        assert len((in_tmp / output).read_text().splitlines()) == 3
    in_64, in_32 = ((in_tmp / f"predicted_{p}.csv").read_text().split()[1:] for p in ("64", "32"))
    for row_64, row_32 in zip(in_64, in_32, strict=True):
        assert [float(v) for v in row_64.split(",")] == pytest.approx([float(v) for v in row_32.split(",")], abs=2e-6)
    if task == "regression":  # written with float64's digits (float32's shortest form has at most 9)
        assert all(len(row.split(",")[-1].lstrip("-").replace(".", "").lstrip("0")) > 9 for row in in_64), in_64
