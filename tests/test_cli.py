"""The command line end to end: fit, test the best checkpoint, TensorBoard, resume, bad input."""

import hashlib
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

from src.cli import TemplateCLI
from src.datamodules import RegressionDataModule
from src.modules.nets import MLP
from tests.conftest import QUIET, ROOT, config, run_cli, run_train_py


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar curve TensorBoard would show for a run folder, in step order as it plots them.

    (A resumed run adds an event file; files are read in name order, and two started in the same
    second by one process are named by a counter, "...10" before "...9", so read order is not time order.)
    """
    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    return {
        tag: sorted(((e.step, e.value) for e in accumulator.Scalars(tag)), key=lambda point: point[0])
        for tag in accumulator.Tags()["scalars"]
    }


def wave_baselines(split: str = "test") -> tuple[float, float]:
    """What the default wave's MSE on `split` means: (noise floor, best straight line).

    The noise floor is the MSE of the true function, y = x + 2 sin x, against the noisy
    targets (noise std 0.3 (1 + x/10), from the data module itself): no model can expect
    better. The line is the least-squares fit y = a x + b on the training split, scored on
    `split`: a fitted net must beat it by far (on the test split 2.44 against a floor of 0.46).
    """
    data = RegressionDataModule(source="wave")  # the defaults of configs/regression.yaml
    data.setup("fit")
    train_x, train_y = data.splits["train"]
    line = torch.linalg.lstsq(torch.cat([train_x, torch.ones_like(train_x)], 1), train_y).solution
    x, y = data.splits[split]
    line_mse = torch.mean((torch.cat([x, torch.ones_like(x)], 1) @ line - y) ** 2).item()
    return data.noise_floor(split), line_mse


class KeepsFitWeights(TemplateCLI):
    """The CLI, keeping a copy of the weights as `fit` left them (before the best checkpoint is tested)."""

    def after_fit(self) -> None:
        self.fit_weights = {key: value.detach().clone() for key, value in self.model.state_dict().items()}
        super().after_fit()


def test_circles_fit_trains_tests_the_best_checkpoint_and_logs_everything(in_tmp: Path) -> None:
    cli = KeepsFitWeights(args=["fit", "--config", config("circles"), "--trainer.max_epochs", "50", *QUIET])
    run = in_tmp / "lightning_logs" / "circles" / "version_0"
    checkpoints = sorted(p.name for p in (run / "checkpoints").glob("*.ckpt"))
    assert "last.ckpt" in checkpoints and any(name.startswith("epoch=") for name in checkpoints)
    for name in checkpoints:  # each file's sha256 record names the file as it is
        recorded = (run / "checkpoints" / f"{name}.sha256").read_text().split()
        assert recorded[0] == hashlib.sha256((run / "checkpoints" / name).read_bytes()).hexdigest(), name
    assert "max_epochs: 50" in (run / "config.yaml").read_text()  # the resolved config, with the flag
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
    # last.ckpt holds exactly the weights training ended with.
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["state_dict"].keys() == cli.fit_weights.keys()
    differ = [key for key, value in cli.fit_weights.items() if not torch.equal(last["state_dict"][key], value)]
    assert not differ, f"last.ckpt differs from the trained weights in {differ}"
    # The best checkpoint holds a trained net: loaded into the bare MLP, it scores the test
    # accuracy that was logged for it.
    (best,) = (run / "checkpoints").glob("epoch=*.ckpt")
    state = torch.load(best, weights_only=True)["state_dict"]
    net = MLP(2, 1, hidden_sizes=[512, 512])
    net.load_state_dict({key.removeprefix("net."): value for key, value in state.items()})
    inputs, targets = cli.datamodule.splits["test"]
    with torch.no_grad():
        accuracy = ((net.eval()(inputs).flatten() > 0).long() == targets.flatten()).float().mean().item()
    assert accuracy == pytest.approx(curves["test/acc"][-1][1], abs=1e-6)


def test_regression_fit_comes_near_the_noise_floor(in_tmp: Path) -> None:
    assert run_cli("fit", "--config", config("regression"), "--trainer.max_epochs", "300", *QUIET) == 0
    curves = scalars(in_tmp / "lightning_logs" / "regression" / "version_0")
    noise_floor, line_mse = wave_baselines("test")
    test_mse = curves["test/mse"][-1][1]
    # 300 epochs reach 0.62 (1.35x the floor of 0.46); the best straight line scores 2.44 and
    # an R2 of 0.93, so an R2 threshold of 0.9 could not tell a line from a fitted net.
    assert test_mse < 1.6 * noise_floor and test_mse < 0.3 * line_mse, (test_mse, noise_floor, line_mse)
    assert curves["test/r2"][-1][1] > 0.975


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
    assert "max_epochs: 4" in (run / "config.yaml").read_text()  # the first run's config is kept...
    assert "max_epochs: 7" in (run / "config.resumed-1.yaml").read_text()  # ...beside the resumed one's

    # The uninterrupted run ends with the same weights.
    assert run_cli("fit", *common, "--trainer.max_epochs", "7") == 0
    straight = torch.load(experiment / "version_1" / "checkpoints" / "last.ckpt", weights_only=True)
    for key, value in last["state_dict"].items():
        assert torch.equal(value, straight["state_dict"][key]), key


def test_a_run_that_ends_before_its_first_validation_still_leaves_last_ckpt(in_tmp: Path) -> None:
    args = ["--config", config("circles"), *QUIET]
    assert run_cli("fit", *args, "--trainer.max_epochs", "3") == 0  # circles validates every 25 epochs
    last = in_tmp / "lightning_logs" / "circles" / "version_0" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 3
    assert run_cli("fit", *args, "--trainer.max_epochs", "4", "--ckpt_path", "last") == 0


def test_last_and_best_are_found_in_the_checkpoint_dirpath_the_config_names(
    in_tmp: Path, capsys: pytest.CaptureFixture
) -> None:
    """With --checkpoint.dirpath, `last` looked in lightning_logs/ and said "train first"."""
    args = ["--config", config("circles"), *QUIET, "--checkpoint.dirpath", "ck"]
    assert run_cli("fit", *args, "--ckpt_path", "last") == 2
    assert "no trained run to take a checkpoint from" in capsys.readouterr().err
    assert run_cli("fit", *args, "--trainer.max_epochs", "25") == 0  # validates at epoch 25: a best checkpoint
    assert run_cli("fit", *args, "--trainer.max_epochs", "27", "--ckpt_path", "last") == 0
    assert torch.load(in_tmp / "ck" / "last.ckpt", weights_only=True)["global_step"] == 27
    capsys.readouterr()
    assert run_cli("test", *args, "--ckpt_path", "best") == 0
    used = re.search(r"Using the best checkpoint in ck: (\S+)", capsys.readouterr().out)
    assert used and re.fullmatch(r"epoch=\d+-step=\d+\.ckpt", Path(used.group(1)).name)
    assert Path(used.group(1)).parent == in_tmp / "ck"


def test_last_is_found_for_a_logger_without_a_name(in_tmp: Path) -> None:
    """With an empty name TensorBoard keeps runs in lightning_logs/version_N; `last` looked in
    lightning_logs/lightning_logs/ and said to train first."""
    args = ["--config", config("circles"), *QUIET, "--trainer.logger.init_args.name="]
    assert run_cli("fit", *args, "--trainer.max_epochs", "3") == 0
    assert run_cli("fit", *args, "--trainer.max_epochs", "4", "--ckpt_path", "last") == 0
    last = in_tmp / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 4


def test_validate_test_and_predict_take_a_checkpoint(in_tmp: Path, capsys: pytest.CaptureFixture) -> None:
    assert run_cli("fit", "--config", config("blobs"), "--trainer.max_epochs", "20", *QUIET) == 0
    for subcommand, ckpt in (("validate", "best"), ("test", "last")):
        assert run_cli(subcommand, "--config", config("blobs"), "--ckpt_path", ckpt, *QUIET) == 0
    run = in_tmp / "lightning_logs" / "blobs" / "version_0"
    best = next((run / "checkpoints").glob("epoch=*.ckpt"))
    assert run_cli("test", "--config", config("blobs"), "--ckpt_path", str(best), *QUIET) == 0
    # A checkpoint outside the experiment's runs is evaluated without logging anywhere.
    shutil.copy(best, in_tmp / "loose.ckpt")
    assert run_cli("test", "--config", config("blobs"), "--ckpt_path", "loose.ckpt", *QUIET) == 0
    # No stray version_N, and the run holds only what its fit logged: test/acc registered for the
    # HPARAMS tab at step 0, and its test at step 20 (a test logging into the run would add step-0 points).
    assert sorted(p.name for p in run.parent.iterdir()) == ["version_0"]
    assert [step for step, _ in scalars(run)["test/acc"]] == [0, 20]
    assert sorted(p.name for p in run.glob("config*.yaml")) == ["config.yaml"]
    # validate prints one line for the checkpoint, not an epoch of a fit that is not running.
    capsys.readouterr()
    assert run_cli("validate", "--config", config("blobs"), "--ckpt_path", str(best), *QUIET) == 0
    assert re.search(rf"^validation of {re.escape(str(best))}  val/loss \d", capsys.readouterr().out, re.MULTILINE)


def test_the_last_epoch_validates_when_the_interval_does_not_divide_max_epochs(in_tmp: Path) -> None:
    args = ["--config", config("circles"), "--trainer.check_val_every_n_epoch", "3", *QUIET]
    assert run_cli("fit", *args, "--trainer.max_epochs", "5") == 0
    run = in_tmp / "lightning_logs" / "circles" / "version_0"
    assert [step for step, _ in scalars(run)["val/acc"]] == [2, 4]  # epochs 3 and 5, not 3 alone
    best = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["val_best"]
    assert best == max(value for _, value in scalars(run)["val/acc"])


def test_a_run_resumed_in_its_last_epoch_still_validates_it(in_tmp: Path) -> None:
    """Resumed mid-epoch, Lightning skips that epoch's on_train_epoch_start: the last epoch must validate anyway."""
    args = ["--config", config("circles"), "--data.batch_size", "100", "--trainer.check_val_every_n_epoch", "3"]
    args += ["--trainer.max_epochs", "5", *QUIET]
    stop = '[{"class_path": "tests.helpers.SignalAtBatch", "init_args": {"epoch": 4, "batch": 2, "signum": 15}}]'
    assert run_cli("fit", *args, "--trainer.callbacks", stop) == 143
    run = in_tmp / "lightning_logs" / "circles" / "version_0"
    assert len(scalars(run)["val/acc"]) == 1  # epoch 3's
    assert run_cli("fit", *args, "--trainer.callbacks", "[]", "--ckpt_path", "last") == 0
    assert len(scalars(run)["val/acc"]) == 2  # and the last epoch's, as without the stop


def test_resuming_an_explicit_checkpoint_of_a_run_continues_that_run(in_tmp: Path) -> None:
    args = ["--config", config("circles"), "--trainer.check_val_every_n_epoch", "1", *QUIET]
    assert run_cli("fit", *args, "--trainer.max_epochs", "2") == 0
    run = in_tmp / "lightning_logs" / "circles" / "version_0"
    last = str(run / "checkpoints" / "last.ckpt")
    assert run_cli("fit", *args, "--trainer.max_epochs", "3", "--ckpt_path", last) == 0
    assert sorted(p.name for p in run.parent.iterdir()) == ["version_0"]
    assert torch.load(last, weights_only=True)["global_step"] == 3
    assert [step for step, _ in scalars(run)["val/acc"]] == [0, 1, 2]


def test_resuming_an_older_checkpoint_of_a_run_starts_a_new_run_and_keeps_the_newer_state(in_tmp: Path) -> None:
    args = ["--config", config("circles"), "--trainer.check_val_every_n_epoch", "1", *QUIET]
    assert run_cli("fit", *args, "--trainer.max_epochs", "4", "--checkpoint.save_top_k", "-1") == 0
    run = in_tmp / "lightning_logs" / "circles" / "version_0"
    last = run / "checkpoints" / "last.ckpt"
    newest = last.read_bytes()
    (older,) = (run / "checkpoints").glob("epoch=1-*.ckpt")
    assert run_cli("fit", *args, "--trainer.max_epochs", "3", "--ckpt_path", str(older)) == 0
    assert last.read_bytes() == newest  # version_0's newest state is untouched
    assert sorted(p.name for p in run.parent.iterdir()) == ["version_0", "version_1"]
    assert torch.load(run.parent / "version_1" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 3


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.mark.parametrize(
    ("given", "names"),
    [
        ([], "--ckpt_path lightning_logs/circles/version_0/checkpoints/last.ckpt"),
        (["--ckpt_path", "OLDER"], "--ckpt_path lightning_logs/circles/version_0/checkpoints/last.ckpt"),
    ],
    ids=["no-checkpoint", "older-checkpoint"],
)
def test_a_fit_into_an_existing_runs_version_is_refused_and_leaves_it_untouched(
    in_tmp: Path, capsys: pytest.CaptureFixture, given: list[str], names: str
) -> None:
    args = ["--config", config("circles"), "--trainer.check_val_every_n_epoch", "1", *QUIET]
    assert run_cli("fit", *args, "--trainer.max_epochs", "3", "--checkpoint.save_top_k", "-1") == 0
    run = in_tmp / "lightning_logs" / "circles" / "version_0"
    before = snapshot(run)
    older = str(next((run / "checkpoints").glob("epoch=0-*.ckpt")))
    given = [older if value == "OLDER" else value for value in given]
    capsys.readouterr()
    version = ["--trainer.logger.init_args.version", "0"]
    assert run_cli("fit", *args, "--trainer.max_epochs", "2", *version, *given) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "version_0 already holds a run" in lines[0] and names in lines[0], lines
    assert snapshot(run) == before  # no checkpoint rewritten, no curve or config.resumed-1.yaml added
    assert sorted(p.name for p in run.parent.iterdir()) == ["version_0"]
    # Resuming that run into the same version is what the message offers, and it works.
    assert run_cli("fit", *args, "--trainer.max_epochs", "4", *version, "--ckpt_path", "last") == 0
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4


def test_fits_started_side_by_side_each_claim_their_own_run_folder(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shell loop of fits started with `&` builds every Trainer before any of them writes (a first
    decode can take minutes): each must still get its own version_N, or their checkpoints overwrite
    each other. Other ranks of a DDP run claim nothing (rank 0's folder reaches them)."""
    from lightning.pytorch import Trainer

    from src.checkpointing import share_run_folder

    trainers = [Trainer(logger=True, enable_progress_bar=False, enable_model_summary=False) for _ in range(3)]
    for trainer in trainers:
        share_run_folder(trainer)
    runs = [Path(trainer.log_dir) for trainer in trainers]
    assert [run.name for run in runs] == ["version_0", "version_1", "version_2"]
    assert [Path(trainer.checkpoint_callback.dirpath) for trainer in trainers] == [run / "checkpoints" for run in runs]
    assert all(run.is_dir() and not any(run.iterdir()) for run in runs)  # claimed, still empty
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    monkeypatch.setenv("LOCAL_RANK", "1")  # a second process of one DDP run, as Lightning launches it
    monkeypatch.setattr(rank_zero_only, "rank", rank_zero_only.rank)  # restored after: that Trainer sets it
    other_rank = Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=True, enable_progress_bar=False)
    share_run_folder(other_rank)
    assert sorted(path.name for path in runs[0].parent.iterdir()) == ["version_0", "version_1", "version_2"]


def test_a_fit_refused_or_stopped_before_its_first_step_leaves_no_run_folder(
    in_tmp: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The version_N claimed for a fit is given back when the fit is refused (checkpoints aimed at an
    earlier run) or stopped by Ctrl-C while it still reads its data."""
    args = ["--config", config("circles"), *QUIET, "--trainer.max_epochs", "1"]
    assert run_cli("fit", *args) == 0
    runs = in_tmp / "lightning_logs" / "circles"
    earlier = ["--checkpoint.dirpath", str(runs / "version_0" / "checkpoints")]
    assert run_cli("fit", *args, *earlier) == 2
    assert "already holds checkpoints of another run" in capsys.readouterr().err
    assert sorted(path.name for path in runs.iterdir()) == ["version_0"]

    def interrupted(*_: object, **__: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("src.datamodules.ToyPointsDataModule.setup", interrupted)
    assert run_cli("fit", *args) != 0
    assert sorted(path.name for path in runs.iterdir()) == ["version_0"]


def test_a_trainer_built_without_a_subcommand_claims_no_run_folder(in_tmp: Path) -> None:
    """`TemplateCLI(run=False)` (a script that may only read the config or the data) leaves no empty version_N."""
    from src.cli import TemplateCLI

    cli = TemplateCLI(args=["--config", config("circles"), *QUIET], run=False)
    assert not (in_tmp / "lightning_logs" / "circles" / "version_0").exists()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)  # and a fit from it still gets its run folder
    assert (in_tmp / "lightning_logs" / "circles" / "version_0" / "checkpoints" / "last.ckpt").is_file()


def test_a_refused_checkpoint_leaves_no_run_folder(in_tmp: Path, capsys: pytest.CaptureFixture) -> None:
    """A fit from a checkpoint trained on other classes stops before it claims a run folder."""
    args = ["--config", config("blobs"), *QUIET, "--trainer.max_epochs", "1"]
    assert run_cli("fit", *args) == 0
    outside = in_tmp / "four_blobs.ckpt"
    shutil.copy(in_tmp / "lightning_logs" / "blobs" / "version_0" / "checkpoints" / "last.ckpt", outside)
    capsys.readouterr()
    other = ["--data.centers", "3", "--trainer.logger.init_args.name", "three_blobs"]
    assert run_cli("fit", *args, *other, "--ckpt_path", str(outside)) == 2
    err = capsys.readouterr().err
    assert "four_blobs.ckpt was trained on the classes" in err, err
    assert not (in_tmp / "lightning_logs" / "three_blobs").exists()


def test_a_fit_without_a_logger_keeps_the_checkpoints_of_an_earlier_one(
    in_tmp: Path, capsys: pytest.CaptureFixture
) -> None:
    args = ["--config", config("circles"), "--trainer.logger", "false", *QUIET]
    assert run_cli("fit", *args, "--trainer.max_epochs", "3") == 0
    checkpoints = in_tmp / "checkpoints"
    before = snapshot(checkpoints)
    assert "last.ckpt" in before
    capsys.readouterr()
    assert run_cli("fit", *args, "--trainer.max_epochs", "2") == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "already holds checkpoints of another run" in lines[0], lines
    assert f"--ckpt_path {checkpoints / 'last.ckpt'}" in lines[0] and "--trainer.default_root_dir" in lines[0]
    assert snapshot(checkpoints) == before
    # A fast_dev_run writes no checkpoint: nothing to refuse.
    assert run_cli("fit", *args, "--trainer.fast_dev_run", "true") == 0
    assert snapshot(checkpoints) == before
    # The line's two ways out: resume that run there, or start a new one elsewhere.
    assert run_cli("fit", *args, "--trainer.max_epochs", "4", "--ckpt_path", str(checkpoints / "last.ckpt")) == 0
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["global_step"] == 4
    assert run_cli("fit", *args, "--trainer.max_epochs", "2", "--trainer.default_root_dir", "other") == 0
    assert (in_tmp / "other" / "checkpoints" / "last.ckpt").is_file()


def test_a_refused_fit_beside_a_damaged_last_checkpoint_offers_a_way_out_that_works(
    in_tmp: Path, capsys: pytest.CaptureFixture
) -> None:
    """With last.ckpt damaged the folder's run cannot be continued there (its newest state is
    unknown): the line offers its furthest intact checkpoint in a new folder, and that works."""
    args = ["--config", config("circles"), "--trainer.logger", "false", *QUIET]
    assert run_cli("fit", *args, "--trainer.max_epochs", "3", "--checkpoint.save_top_k", "-1") == 0
    checkpoints = in_tmp / "checkpoints"
    last = checkpoints / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    furthest = next(checkpoints.glob("epoch=2-*.ckpt"))
    capsys.readouterr()
    assert run_cli("fit", *args, "--trainer.max_epochs", "4", "--ckpt_path", str(furthest)) == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and "already holds checkpoints" in line, line
    assert f"--trainer.default_root_dir DIR (adding --ckpt_path {furthest}" in line, line
    more = ["--trainer.max_epochs", "4", "--trainer.default_root_dir", "other", "--ckpt_path", str(furthest)]
    assert run_cli("fit", *args, *more) == 0
    assert torch.load(in_tmp / "other" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4
    assert last.stat().st_size == 1000  # the damaged file is left for the user


def test_a_resumed_run_can_write_its_checkpoints_to_a_new_folder(in_tmp: Path) -> None:
    """`--ckpt_path last --checkpoint.dirpath DIR`: the run goes on in its version_N, its new
    checkpoints in DIR (e.g. after its disk filled up); nothing is overwritten, so nothing is refused."""
    args = ["--config", config("circles"), "--trainer.check_val_every_n_epoch", "1", *QUIET]
    assert run_cli("fit", *args, "--trainer.max_epochs", "3") == 0
    run = in_tmp / "lightning_logs" / "circles" / "version_0"
    before = snapshot(run / "checkpoints")
    more = ["--trainer.max_epochs", "4", "--ckpt_path", "last", "--checkpoint.dirpath", "elsewhere"]
    assert run_cli("fit", *args, *more) == 0
    assert torch.load(in_tmp / "elsewhere" / "last.ckpt", weights_only=True)["global_step"] == 4
    assert snapshot(run / "checkpoints") == before
    assert sorted(p.name for p in run.parent.iterdir()) == ["version_0"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (["--data.dataset", "blobs"], "was trained on the classes [0, 1], but this data has [0, 1, 2, 3]"),
        (
            ["--data.dataset", "blobs", "--data.centers", "2", "--data.n_features", "3"],
            "does not fit the model built for this data (net.layers.0.weight is [512, 2] in the checkpoint, "
            "[512, 3] here; checkpoint's classes [0, 1], the data's [0, 1])",
        ),
    ],
    ids=["other-classes", "other-input-shape"],
)
def test_a_checkpoint_that_does_not_fit_the_data_is_one_line(
    in_tmp: Path, capsys: pytest.CaptureFixture, data: list[str], message: str
) -> None:
    args = ["--config", config("circles"), *QUIET]
    assert run_cli("fit", *args, "--trainer.max_epochs", "2") == 0
    capsys.readouterr()
    assert run_cli("test", *args, "--ckpt_path", "last", *data) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines


def test_resuming_with_nothing_to_resume_fails_clearly(in_tmp: Path, capsys: pytest.CaptureFixture) -> None:
    assert run_cli("fit", "--config", config("circles"), "--ckpt_path", "last", *QUIET) == 2
    error = capsys.readouterr().err
    assert "no trained run to take a checkpoint from" in error and "Traceback" not in error
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
    cli = TemplateCLI(args=["fit", *args])
    assert cli.trainer.precision == "bf16-mixed"
    curves = scalars(in_tmp / "lightning_logs" / "circles" / "version_0")
    # bf16 reaches 0.98 here (0.975-0.99 with seeds 1-3); an untrained net scores about 0.5.
    assert curves["test/acc"][-1][1] >= 0.95 and all(v == v for _, v in curves["train/loss_step"])


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
    # rich's progress bar, counting epochs from 1 as the plain lines do (Lightning's own says "Epoch 29/29")
    assert "━" in screen and "Epoch 30/30" in screen and "Epoch 29/29" not in screen
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


def test_a_run_without_max_epochs_validates_on_its_interval_and_counts_epochs_alone(
    in_tmp: Path, capsys: pytest.CaptureFixture
) -> None:
    """`--trainer.max_epochs -1` (ended here by max_steps; in use, by max_time or a signal) has no last
    epoch: the epoch train metrics keep the validation interval instead of being computed every epoch,
    and progress shows no '/-1'."""
    args = ["--config", config("circles"), "--trainer.max_epochs", "-1", "--trainer.max_steps", "30"]
    assert run_cli("fit", *args, "--trainer.check_val_every_n_epoch", "10", *QUIET) == 0
    run = in_tmp / "lightning_logs" / "circles" / "version_0"
    curves = scalars(run)
    assert [step for step, _ in curves["val/acc"]] == [9, 19, 29]
    assert [step for step, _ in curves["train/acc"]] == [9, 19, 29]  # epoch train metrics beside validation only
    out = capsys.readouterr().out
    assert re.search(r"^epoch 30  val/loss", out, re.MULTILINE) and "/-1" not in out, out[-2000:]
