"""Checkpoint integrity, non-finite losses and disk trouble: clear errors, nothing good lost."""

import errno
import os
import re
from pathlib import Path

import pytest
import torch

from src.checkpointing.checkpoint_io import AtomicCheckpointIO, record_path, remove_stale_temp_files, sha256_of
from src.datamodules.toy_points import ToyPointsDataModule
from src.errors import UserInputError
from tests.conftest import QUIET, ROOT, config, run_cli

SMALL = [
    "--config",
    config("circles"),
    "--trainer.max_epochs",
    "4",
    "--trainer.check_val_every_n_epoch",
    "1",
    "--model.net.init_args.hidden_sizes",
    "[16]",
    *QUIET,
]


def trained_run(in_tmp: Path) -> Path:
    assert run_cli("fit", *SMALL) == 0
    return in_tmp / "lightning_logs" / "circles" / "version_0" / "checkpoints"


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def empty(path: Path) -> None:
    path.write_bytes(b"")


def flip_a_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [truncate, empty, flip_a_bit])
def test_a_damaged_checkpoint_is_refused_naming_it_and_the_previous_good_one(
    in_tmp: Path, damage, capsys: pytest.CaptureFixture
) -> None:
    checkpoints = trained_run(in_tmp)
    last = checkpoints / "last.ckpt"
    damage(last)
    capsys.readouterr()
    assert run_cli("fit", *SMALL, "--trainer.max_epochs", "6", "--ckpt_path", "last") == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "Traceback" not in error
    assert str(last.relative_to(in_tmp)) in error and "damaged" in error
    best = next(checkpoints.glob("epoch=*.ckpt"))
    assert f"previous good checkpoint is {best.relative_to(in_tmp)}" in error
    assert sorted(p.name for p in (in_tmp / "lightning_logs" / "circles").iterdir()) == ["version_0"]


def test_every_checkpoint_has_its_sha256_recorded(in_tmp: Path) -> None:
    for checkpoint in trained_run(in_tmp).glob("*.ckpt"):
        assert sha256_of(checkpoint) in record_path(checkpoint).read_text().split()


def test_the_code_never_loads_with_weights_only_false() -> None:
    sources = [ROOT / "train.py", *(ROOT / "src").rglob("*.py")]
    offenders = [str(p) for p in sources if re.search(r"weights_only\s*=\s*False", p.read_text())]
    assert offenders == []


def test_a_nan_loss_stops_training_before_any_nan_weights_are_saved(
    in_tmp: Path, capsys: pytest.CaptureFixture
) -> None:
    args = [
        "--config",
        config("regression_linear"),
        "--model.optimizer",
        "torch.optim.SGD",
        "--model.optimizer.lr",
        "1e18",
        "--trainer.check_val_every_n_epoch",
        "1",
        "--checkpoint.last_every_n_steps",
        "1",
        *QUIET,
    ]
    assert run_cli("fit", *args) == 2
    error = capsys.readouterr().err.strip()
    assert "training loss became" in error and "Lower model.optimizer.lr" in error and "\n" not in error
    for checkpoint in (in_tmp / "lightning_logs" / "regression_linear" / "version_0" / "checkpoints").glob("*.ckpt"):
        state = torch.load(checkpoint, weights_only=True)["state_dict"]
        assert all(torch.isfinite(t).all() for t in state.values()), checkpoint


def test_a_full_disk_during_a_save_keeps_the_old_checkpoint_and_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    io = AtomicCheckpointIO()
    target = tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}}, target)
    good = target.read_bytes()

    def full_disk(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OSError):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}}, target)
    monkeypatch.undo()
    assert target.read_bytes() == good
    assert torch.equal(io.load_checkpoint(target)["state_dict"]["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt", "last.ckpt.sha256"]


def test_a_log_folder_that_cannot_be_created_gives_one_line(in_tmp: Path, capsys: pytest.CaptureFixture) -> None:
    (in_tmp / "blocked").write_text("a file where the log folder should go")
    args = [*SMALL, "--trainer.logger.init_args.save_dir", str(in_tmp / "blocked")]
    assert run_cli("fit", *args) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: cannot write") and "\n" not in error and "save_dir" in error


def test_stale_temp_files_are_removed_when_training_starts(in_tmp: Path) -> None:
    checkpoints = trained_run(in_tmp)
    stale = checkpoints / ".last.ckpt.tmp-999999999"
    stale.write_bytes(b"half a checkpoint")
    assert run_cli("fit", *SMALL, "--trainer.max_epochs", "5", "--ckpt_path", "last") == 0
    assert not stale.exists()


def test_only_this_projects_stale_temp_files_are_removed(tmp_path: Path) -> None:
    """The sweep before a save or an export deletes what a killed save or export left (`.<name>.tmp-<pid>`
    of a dead process, an export's `.export.tmp-<pid>` folder) and nothing else a user keeps there."""
    dead = tmp_path / ".last.ckpt.tmp-999999999"
    dead.write_bytes(b"half a checkpoint")
    staging = tmp_path / ".export.tmp-999999998"
    staging.mkdir()
    (staging / "model.onnx").write_bytes(b"half")
    live = tmp_path / f".model.json.tmp-{os.getppid()}"  # a save still going on in a running process
    live.write_bytes(b"being written")
    users = [tmp_path / ".notes.tmp-draft", tmp_path / ".cache.tmp-keep", tmp_path / ".photos.tmp-999999997"]
    users[0].write_text("a user's file")
    for folder in users[1:]:
        folder.mkdir()
        (folder / "kept.txt").write_text("a user's folder")
    assert sorted(remove_stale_temp_files(tmp_path)) == sorted([dead, staging])
    assert live.read_bytes() == b"being written" and users[0].read_text() == "a user's file"
    assert all((folder / "kept.txt").is_file() for folder in users[1:])


def test_a_fit_that_fails_before_its_first_step_removes_only_the_run_folder_it_made(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lightning restores a resumed run's step late in a fit: a resume that fails in setup still reads
    step 0 and no ckpt_path. The run folder it goes on in (curves, configs; checkpoints elsewhere)
    held files before it started and must stay; a new fit's own empty version_N goes."""
    args = [*SMALL, "--checkpoint.dirpath", "ckpts"]
    assert run_cli("fit", *args) == 0
    runs = in_tmp / "lightning_logs" / "circles"
    kept = {path.name: path.read_bytes() for path in (runs / "version_0").iterdir()}
    assert any(name.startswith("events.out.tfevents") for name in kept) and "config.yaml" in kept

    def broken_setup(self: ToyPointsDataModule, stage: str | None = None) -> None:
        raise UserInputError("the data could not be read")

    monkeypatch.setattr(ToyPointsDataModule, "setup", broken_setup)
    resume = ["--ckpt_path", "ckpts/last.ckpt", "--trainer.logger.init_args.version", "0", "--trainer.max_epochs", "6"]
    assert run_cli("fit", *args, *resume) == 2
    now = {path.name: path.read_bytes() for path in (runs / "version_0").iterdir()}
    assert all(now.get(name) == data for name, data in kept.items())  # the run's curves and configs stay
    assert run_cli("fit", *SMALL) == 2  # a new run that failed before its first step: nothing to keep
    assert sorted(path.name for path in runs.iterdir()) == ["version_0"]
    assert sorted(path.name for path in (in_tmp / "ckpts").glob("*.ckpt"))[-1] == "last.ckpt"
