"""A checkpoint's own bytes are checked on every load: by its sha256 record, or by the CRC-32s
of its zip container when it has no record (a file copied from elsewhere)."""

import re
import shutil
import struct
import zipfile
from pathlib import Path

import pytest
import torch

from src.checkpointing.checkpoint_io import AtomicCheckpointIO, integrity_problem, record_path
from src.errors import UserInputError
from tests.conftest import run_cli
from tests.test_checkpoint_safety import SMALL, trained_run


def flip_a_byte_in_the_first_tensor(path: Path) -> None:
    """Flip the lowest byte of the first stored tensor's first value, leaving the zip directory
    and every header intact: torch.load still succeeds, with a changed weight."""
    with zipfile.ZipFile(path) as archive:
        entries = [info for info in archive.infolist() if re.search(r"/data/\d+$", info.filename)]
    first = min(entries, key=lambda info: int(info.filename.rsplit("/", 1)[1]))
    data = bytearray(path.read_bytes())
    name_length, extra_length = struct.unpack("<HH", data[first.header_offset + 26 : first.header_offset + 30])
    data[first.header_offset + 30 + name_length + extra_length] ^= 0x01
    path.write_bytes(bytes(data))


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def one_line(capsys: pytest.CaptureFixture) -> str:
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "Traceback" not in error, error
    return error


def test_a_copied_checkpoint_without_record_and_a_flipped_weight_byte_is_refused(
    in_tmp: Path, capsys: pytest.CaptureFixture
) -> None:
    best = next(trained_run(in_tmp).glob("epoch=*.ckpt"))
    elsewhere = in_tmp / "elsewhere"
    elsewhere.mkdir()
    intact, damaged = elsewhere / "intact.ckpt", elsewhere / "damaged.ckpt"
    shutil.copyfile(best, intact)
    shutil.copyfile(best, damaged)
    flip_a_byte_in_the_first_tensor(damaged)
    assert not record_path(intact).exists() and not record_path(damaged).exists()
    # torch.load alone notices nothing: it returns the damaged weights.
    before, after = weights(intact), weights(damaged)
    assert any(not torch.equal(before[name], after[name]) for name in before)

    capsys.readouterr()
    assert run_cli("test", *SMALL, "--ckpt_path", str(damaged)) == 2
    error = one_line(capsys)
    assert str(damaged) in error and "damaged" in error and "CRC-32" in error
    # A folder of the user's own: the file beside it could be another model, so none is named.
    assert "intact" not in error and "go back to an earlier checkpoint of its run" in error

    assert run_cli("test", *SMALL, "--ckpt_path", str(intact)) == 0


def test_the_trainers_own_load_checks_the_crc_too(tmp_path: Path) -> None:
    io = AtomicCheckpointIO()
    saved = tmp_path / "saved.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.arange(8.0)}}, saved)
    copy = tmp_path / "copy.ckpt"
    shutil.copyfile(saved, copy)
    assert torch.equal(io.load_checkpoint(copy)["state_dict"]["w"], torch.arange(8.0))
    flip_a_byte_in_the_first_tensor(copy)
    with pytest.raises(UserInputError, match=re.escape(f"checkpoint {copy} is damaged")):
        io.load_checkpoint(copy)


def test_a_matching_sha256_record_skips_the_crc_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    saved = tmp_path / "saved.ckpt"
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(4)}}, saved)

    def no_second_read(*args: object) -> None:
        raise AssertionError("the file was read again for its CRCs after its sha256 matched")

    monkeypatch.setattr(zipfile.ZipFile, "testzip", no_second_read)
    assert integrity_problem(saved) is None


def test_best_refuses_a_damaged_last_ckpt_and_names_the_best_file(in_tmp: Path, capsys: pytest.CaptureFixture) -> None:
    checkpoints = trained_run(in_tmp)
    last = checkpoints / "last.ckpt"
    best = next(checkpoints.glob("epoch=*.ckpt"))
    assert run_cli("test", *SMALL, "--ckpt_path", "best") == 0  # an intact run: best is found
    flip_a_byte_in_the_first_tensor(last)
    assert torch.load(last, weights_only=True)["callbacks"]  # torch.load still reads it

    capsys.readouterr()
    assert run_cli("test", *SMALL, "--ckpt_path", "best") == 2
    error = one_line(capsys)
    assert str(last.relative_to(in_tmp)) in error and "damaged" in error
    assert error.endswith(f"--ckpt_path {best.relative_to(in_tmp)}")

    assert run_cli("test", *SMALL, "--ckpt_path", str(best)) == 0  # the advice works


def test_an_emptied_last_ckpt_beside_the_checkpoint_resumed_is_kept_and_no_traceback(
    in_tmp: Path, capsys: pytest.CaptureFixture
) -> None:
    """An emptied last.ckpt (a full disk, `: > last.ckpt`) cannot say how far its run got: a fit from an
    older checkpoint of that run trains into a new folder and leaves it as it is."""
    checkpoints = trained_run(in_tmp)
    older = next(checkpoints.glob("epoch=*.ckpt"))
    (checkpoints / "last.ckpt").write_bytes(b"")
    capsys.readouterr()
    assert run_cli("fit", *SMALL, "--trainer.max_epochs", "6", "--ckpt_path", str(older)) == 0
    assert "Traceback" not in capsys.readouterr().err
    assert (checkpoints / "last.ckpt").read_bytes() == b""
    assert (in_tmp / "lightning_logs" / "circles" / "version_1" / "checkpoints" / "last.ckpt").is_file()


def test_best_with_a_damaged_last_ckpt_and_no_other_intact_file_says_so(
    in_tmp: Path, capsys: pytest.CaptureFixture
) -> None:
    checkpoints = trained_run(in_tmp)
    for checkpoint in checkpoints.glob("*.ckpt"):
        flip_a_byte_in_the_first_tensor(checkpoint)
    capsys.readouterr()
    assert run_cli("test", *SMALL, "--ckpt_path", "best") == 2
    error = one_line(capsys)
    assert str((checkpoints / "last.ckpt").relative_to(in_tmp)) in error and "no other intact checkpoint" in error


def test_the_previous_good_checkpoint_is_the_furthest_trained_lightning_checkpoint_that_verifies(
    tmp_path: Path,
) -> None:
    """Not the newest file by time: a copy or a stray file can be newer than the state to go back to."""
    io = AtomicCheckpointIO()
    for name, step in (("epoch=1-step=20.ckpt", 20), ("epoch=2-step=30.ckpt", 30), ("epoch=0-step=10.ckpt", 10)):
        io.save_checkpoint({"state_dict": {"w": torch.full((4,), float(step))}, "global_step": step}, tmp_path / name)
    io.save_checkpoint({"state_dict": {"w": torch.zeros(4)}, "global_step": 40}, tmp_path / "last.ckpt")
    flip_a_byte_in_the_first_tensor(tmp_path / "last.ckpt")
    (tmp_path / "notes.ckpt").write_text("not a checkpoint")  # newest of all by time, and no zip
    torch.save({"weights": torch.ones(2)}, tmp_path / "foreign.ckpt")  # a zip that verifies, without a state_dict
    with pytest.raises(UserInputError) as refused:
        AtomicCheckpointIO().load_checkpoint(tmp_path / "last.ckpt")
    assert f"the previous good checkpoint is {tmp_path / 'epoch=2-step=30.ckpt'}" in str(refused.value)
    # The furthest one damaged too: the next furthest that verifies.
    flip_a_byte_in_the_first_tensor(tmp_path / "epoch=2-step=30.ckpt")
    with pytest.raises(UserInputError) as refused:
        AtomicCheckpointIO().load_checkpoint(tmp_path / "last.ckpt")
    assert f"the previous good checkpoint is {tmp_path / 'epoch=1-step=20.ckpt'}" in str(refused.value)


def test_a_damaged_checkpoint_among_gathered_ones_names_no_other_model(tmp_path: Path) -> None:
    """In a folder a user filled with checkpoints of several models, the one beside it may be another
    model: only a run's own folder (or Lightning's names) gets a previous checkpoint named."""
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(4)}, "global_step": 50}, tmp_path / "diabetes.ckpt")
    io.save_checkpoint({"state_dict": {"w": torch.zeros(4)}, "global_step": 10}, tmp_path / "wine.ckpt")
    flip_a_byte_in_the_first_tensor(tmp_path / "wine.ckpt")
    with pytest.raises(UserInputError) as refused:
        io.load_checkpoint(tmp_path / "wine.ckpt")
    assert "diabetes" not in str(refused.value) and "an earlier checkpoint of its run" in str(refused.value)
