"""Checkpoint integrity, non-finite losses and disk trouble: clear errors, nothing good lost."""

import errno
import os
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from src.checkpointing import discard_unstarted_run
from src.checkpointing.checkpoint_io import AtomicCheckpointIO, record_path, sha256_of
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


def test_a_fit_from_a_checkpoint_that_fails_before_its_state_is_restored_keeps_its_run_folder(tmp_path: Path) -> None:
    """Lightning restores the global step late in a fit: a resume that fails in setup still reads
    step 0, and its run folder (curves, configs; checkpoints elsewhere) must stay."""
    run = tmp_path / "version_3"
    run.mkdir()
    for name in ("events.out.tfevents.1.host.1.0", "config.yaml", "hparams.yaml"):
        (run / name).write_text("kept")

    def failed_fit(ckpt_path: str | None) -> SimpleNamespace:
        logger = TensorBoardLogger(save_dir=str(tmp_path.parent), name=tmp_path.name, version=3)
        return SimpleNamespace(is_global_zero=True, global_step=0, ckpt_path=ckpt_path, loggers=[logger])

    discard_unstarted_run(failed_fit("elsewhere/last.ckpt"))
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml", "events.out.tfevents.1.host.1.0", "hparams.yaml"]
    discard_unstarted_run(failed_fit(None))  # a new run that failed before its first step: nothing to keep
    assert not run.exists()
