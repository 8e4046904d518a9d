"""What the checkpoint callback keeps: a best checkpoint whatever the step saves, and an honest test."""

from pathlib import Path

import pytest
import torch

from tests.conftest import QUIET, config, run_cli

RUN = Path("lightning_logs") / "circles" / "version_0" / "checkpoints"


def test_step_saves_never_cost_the_best_checkpoint(in_tmp: Path, capsys: pytest.CaptureFixture) -> None:
    # Full-batch circles: every step is a validation step (every 5 epochs), and last.ckpt is written
    # every step; the best checkpoint must still be saved and be the one that is tested.
    args = ["--config", config("circles"), "--trainer.max_epochs", "20", "--trainer.check_val_every_n_epoch", "5"]
    assert run_cli("fit", *args, "--checkpoint.last_every_n_steps", "1", *QUIET) == 0
    best = [path for path in (in_tmp / RUN).glob("epoch=*.ckpt")]
    assert len(best) == 1, sorted(p.name for p in (in_tmp / RUN).iterdir())
    last = torch.load(in_tmp / RUN / "last.ckpt", weights_only=True)
    state = next(s for s in last["callbacks"].values() if isinstance(s, dict) and "best_model_path" in s)
    assert Path(state["best_model_path"]).name == best[0].name
    assert last["global_step"] == 20  # last.ckpt holds the final step, the best one an earlier validation
    out = capsys.readouterr().out
    assert f"Best checkpoint: {RUN / best[0].name}" in out and "No best checkpoint" not in out


def test_fit_says_when_there_is_no_best_checkpoint_to_test(in_tmp: Path, capsys: pytest.CaptureFixture) -> None:
    # Validation turned off (even the last epoch's): the test can only use the last weights.
    args = ["--config", config("circles"), "--trainer.max_epochs", "10", "--trainer.limit_val_batches", "0"]
    assert run_cli("fit", *args, *QUIET) == 0
    out = capsys.readouterr().out
    assert "No best checkpoint" in out and "evaluates the weights of the last step" in out
    assert "validation is off (--trainer.limit_val_batches 0)" in out and "check_val_every_n_epoch" not in out
    assert not list((in_tmp / RUN).glob("epoch=*.ckpt"))


def test_the_monitored_metric_comes_from_the_model(in_tmp: Path) -> None:
    # No config names checkpoint.monitor: classification keeps the best val/acc, regression the best val/mse.
    assert run_cli("fit", "--config", config("circles"), "--trainer.max_epochs", "50", *QUIET) == 0
    last = torch.load(in_tmp / RUN / "last.ckpt", weights_only=True)
    state = next(s for s in last["callbacks"].values() if isinstance(s, dict) and "best_model_path" in s)
    assert state["monitor"] == "val/acc" and float(state["best_model_score"]) > 0.9


@pytest.mark.parametrize(
    ("flags", "watched"),
    [
        (["--checkpoint.monitor", "val/loss"], "{'monitor': 'val/loss', 'mode': 'min'}"),
        (
            ["--checkpoint.monitor", "val/loss", "--early_stopping.monitor", "val/acc"],
            "{'monitor': 'val/acc', 'mode': 'max'}",
        ),
        ([], "{'monitor': 'val/acc', 'mode': 'max'}"),
        (["--checkpoint.monitor", "val/loss", "--early_stopping.mode", "max"], "{'monitor': 'val/acc', 'mode': 'max'}"),
    ],
)
def test_early_stopping_watches_what_the_checkpoint_does_unless_told(
    in_tmp: Path, flags: list[str], watched: str
) -> None:
    """configs/tabular_classification.yaml picks val/loss for the best checkpoint (smoother than accuracy on a
    small validation split): early stopping stops on the same metric unless given its own."""
    args = ["--config", config("circles"), "--trainer.max_epochs", "3", "--early_stopping.patience", "5", *QUIET]
    assert run_cli("fit", *args, *flags) == 0
    last = torch.load(in_tmp / RUN / "last.ckpt", weights_only=True)
    assert [key for key in last["callbacks"] if key.startswith("EarlyStopping")] == [f"EarlyStoppingOnBest{watched}"]


@pytest.mark.parametrize("subcommand", ["test", "fit"])
def test_a_net_flag_the_checkpoint_would_override_fails(
    in_tmp: Path, capsys: pytest.CaptureFixture, subcommand: str
) -> None:
    args = ["--config", config("circles"), "--trainer.max_epochs", "25", *QUIET]
    assert run_cli("fit", *args) == 0
    ckpt = "best" if subcommand == "test" else "last"
    capsys.readouterr()
    flags = ["--ckpt_path", ckpt, "--model.net.init_args.hidden_sizes", "[8]"]
    assert run_cli(subcommand, *args, *flags) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "model.net.init_args.hidden_sizes is [8] here but [512, 512]" in error[0]


def test_other_values_the_checkpoint_overrides_are_reported(in_tmp: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["--config", config("circles"), "--trainer.max_epochs", "25", *QUIET]
    assert run_cli("fit", *args) == 0
    capsys.readouterr()
    assert (
        run_cli("fit", *args, "--trainer.max_epochs", "50", "--ckpt_path", "last", "--model.optimizer.lr", "0.5") == 0
    )
    out = capsys.readouterr().out
    assert "Using the checkpoint's values, not the given ones: model.optimizer.init_args.lr 0.01 (given 0.5)" in out
    assert run_cli("test", *args, "--ckpt_path", "last") == 0
    assert "not the given ones" not in capsys.readouterr().out  # nothing to report when nothing differs
    assert "other data settings" not in out  # the same data


def test_a_fit_resumed_on_other_data_settings_says_so(in_tmp: Path, capsys: pytest.CaptureFixture) -> None:
    """The data are this run's to choose (going on with new data is allowed), but never silently."""
    args = ["--config", config("circles"), "--trainer.max_epochs", "2", *QUIET]
    assert run_cli("fit", *args) == 0
    capsys.readouterr()
    more = ["--trainer.max_epochs", "3", "--ckpt_path", "last", "--data.dataset", "moons"]
    assert run_cli("fit", *args, *more) == 0
    out = capsys.readouterr().out
    assert (
        "Resuming on other data settings than the checkpoint's run: data.dataset 'moons' (the run had 'circles')" in out
    )


def test_a_resume_on_the_same_files_reports_no_data_change(in_tmp: Path, capsys: pytest.CaptureFixture) -> None:
    """Paths are compared as text with the run's stored config (a parsed Path never equals the stored text)."""
    from sklearn.datasets import load_iris

    data = load_iris(as_frame=True).frame
    data.to_csv(in_tmp / "iris.csv", index=False)
    data.to_csv(in_tmp / "iris_copy.csv", index=False)
    args = ["--config", config("tabular_classification"), "--data.csv_path", "iris.csv", *QUIET]
    args += ["--data.target_column", "target", "--trainer.max_epochs", "2"]
    assert run_cli("fit", *args) == 0
    capsys.readouterr()
    assert run_cli("fit", *args, "--trainer.max_epochs", "3", "--ckpt_path", "last") == 0
    assert "other data settings" not in capsys.readouterr().out
    moved = [*args, "--data.csv_path", "iris_copy.csv", "--trainer.max_epochs", "4", "--ckpt_path", "last"]
    assert run_cli("fit", *moved) == 0
    out = capsys.readouterr().out
    assert "other data settings than the checkpoint's run: data.csv_path 'iris_copy.csv' (the run had 'iris.csv')" in (
        out
    )


def test_shapes_linked_from_the_data_are_not_reported_as_given(in_tmp: Path, capsys: pytest.CaptureFixture) -> None:
    # 3-D blobs: the model's input_shape (3,) comes from the data module; the config only holds
    # the argument's default (2,), which nobody gave.
    args = ["--config", config("blobs"), "--data.n_features", "3", "--trainer.max_epochs", "25", *QUIET]
    assert run_cli("fit", *args) == 0
    capsys.readouterr()
    assert run_cli("test", *args, "--ckpt_path", "last") == 0
    assert "not the given ones" not in capsys.readouterr().out


def test_best_is_found_in_a_run_folder_moved_since(in_tmp: Path, capsys: pytest.CaptureFixture) -> None:
    # An absolute save_dir records absolute checkpoint paths; after the folder moves they are looked
    # for beside last.ckpt.
    args = ["--config", config("circles"), "--trainer.max_epochs", "25", *QUIET]
    assert run_cli("fit", *args, "--trainer.logger.init_args.save_dir", str(in_tmp / "old")) == 0
    (in_tmp / "old").rename(in_tmp / "new")
    capsys.readouterr()
    assert (
        run_cli("test", *args, "--trainer.logger.init_args.save_dir", str(in_tmp / "new"), "--ckpt_path", "best") == 0
    )
    assert (
        f"{in_tmp / 'new' / 'circles' / 'version_0' / 'checkpoints' / 'epoch=24-step=25.ckpt'}"
        in capsys.readouterr().out
    )


@pytest.mark.parametrize("val_check_interval", ["1.0", "0.5"])
def test_last_ckpt_records_the_newest_best_wherever_validation_runs(in_tmp: Path, val_check_interval: str) -> None:
    # Validation after the epoch's last batch (1.0) or only inside the epoch (0.5): last.ckpt is written
    # after the top-k save of that moment, so it names the newest best, and at the end it holds the final step.
    from tests.conftest import JUMPY

    args = [*JUMPY, "--trainer.max_epochs", "6", "--trainer.val_check_interval", val_check_interval]
    assert run_cli("fit", *args) == 0
    last = torch.load(in_tmp / RUN / "last.ckpt", weights_only=True)
    state = next(s for s in last["callbacks"].values() if isinstance(s, dict) and "best_model_path" in s)
    best = [path.name for path in (in_tmp / RUN).glob("epoch=*.ckpt")]
    assert [Path(state["best_model_path"]).name] == best
    steps_per_epoch = last["global_step"] // 6
    assert steps_per_epoch >= 2 and last["global_step"] == 6 * steps_per_epoch
