"""Checkpoint files that survive kill -9 and prove their integrity.

Each save serialises to memory, refuses non-finite weights, writes a temp file beside the
target, fsyncs it and renames it into place (atomic on one filesystem), so a kill at any
moment leaves either the old or the new file. Its sha256 goes to `<name>.sha256` before
the rename; that record keeps the previous hash too, so the file is valid whichever side
of the rename a kill lands. Loading checks the hash and always uses `weights_only=True`.

A checkpoint without a record (copied from elsewhere) is checked by its own container:
torch.save writes a zip that stores a CRC-32 per entry, which torch.load never checks, so
a flipped byte in a weight would otherwise load silently. A matching sha256 already proves
every byte, so then the CRC pass is skipped: one read of the file either way.
"""

import hashlib
import io
import os
import re
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from src.checkpointing.atomic_files import TEMP_MARK, write_atomically
from src.errors import UserInputError, first_line


class NonFiniteWeightsError(UserInputError):
    """A checkpoint would have stored NaN or infinite weights."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def record_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def recorded_hashes(path: Path) -> list[str]:
    record = record_path(path)
    return record.read_text().split() if record.is_file() else []


def _fsync_dir(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


_OUR_TEMP_NAME = re.compile(rf"\..+{re.escape(TEMP_MARK)}(\d+)")  # `.<name>.tmp-<pid>`, as write_atomically names them
EXPORT_STAGING_PREFIX = ".export"  # export's staging folder: `.export.tmp-<pid>`


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Delete temp files (and an export's staging folders) left in `folder` by processes that no longer run.

    Only names this project writes, ending in `.tmp-<pid>` of a dead process, are touched: a
    user's own hidden files and folders stay whatever they are called.
    """
    removed = []
    if not folder.is_dir():
        return removed
    for temp in folder.glob(f".*{TEMP_MARK}*"):
        ours = _OUR_TEMP_NAME.fullmatch(temp.name)
        if ours is None or temp.is_symlink():
            continue
        pid = int(ours.group(1))
        if pid != os.getpid() and _process_alive(pid):
            continue
        if temp.is_dir():
            if not temp.name.startswith(f"{EXPORT_STAGING_PREFIX}{TEMP_MARK}"):
                continue
            shutil.rmtree(temp, ignore_errors=True)
        else:
            temp.unlink(missing_ok=True)
        removed.append(temp)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_ZIP_MAGIC = b"PK\x03\x04"  # how every file written by torch.save (zip format) begins


def is_zip_checkpoint(path: Path) -> bool:
    """Whether `path` is in torch.save's zip format (the only one torch.load can mmap)."""
    with path.open("rb") as handle:
        return handle.read(len(_ZIP_MAGIC)) == _ZIP_MAGIC


def integrity_problem(path: Path) -> str | None:
    """What is wrong with `path`'s bytes, or None when they check out.

    With a sha256 record: the hash must match one recorded. Without one: each zip entry
    must match its CRC-32. A file that is not a zip (a legacy torch.save format, or not a
    checkpoint at all) has nothing to check here; torch.load judges it.
    """
    hashes = recorded_hashes(path)
    if hashes:
        if sha256_of(path) in hashes:
            return None
        return f"its sha256 does not match the one recorded when it was written ({record_path(path).name})"
    if not is_zip_checkpoint(path):
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            bad_entry = archive.testzip()
    except Exception as error:  # zipfile raises BadZipFile, EOFError, OSError... for a cut or garbled file
        detail = first_line(error, 100)
        return f"its zip container is broken ({detail})"
    if bad_entry is not None:
        return f"the CRC-32 of its entry {bad_entry} does not match (the bytes changed after it was written)"
    return None


def verify_checkpoint(path: Path) -> None:
    """Raise a one-line error naming `path`, the problem and the previous good checkpoint,
    unless its bytes match its sha256 record or, without a record, its zip CRC-32s."""
    problem = integrity_problem(path)
    if problem is not None:
        raise UserInputError(f"checkpoint {path} is damaged: {problem}; {previous_good(path)}")


def load_structure(path: Path) -> object:
    """A checkpoint's contents without reading its weights: a zip checkpoint is memory-mapped,
    so only its small pickle is read (check it first: the integrity check reads every byte once)."""
    return torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip_checkpoint(path))


def _training_step(path: Path) -> int | None:
    """The global step a Lightning checkpoint holds (read without its weights), or None for a file
    that is not one: not a zip or legacy torch file, or one without a state_dict."""
    try:
        state = load_structure(path)
    except Exception:  # torch raises many types for a damaged or foreign file
        return None
    if not isinstance(state, dict) or "state_dict" not in state:
        return None
    step = state.get("global_step", 0)
    return step if isinstance(step, int) else 0


def furthest_good(folder: Path, excluding: Path | None = None) -> Path | None:
    """The checkpoint in `folder` a run can go on from: the furthest trained (global step; the newer
    file on a tie) that is a Lightning checkpoint and whose bytes verify; None if there is none."""
    candidates = []
    for path in folder.glob("*.ckpt"):
        step = _training_step(path) if path != excluding and path.is_file() else None
        if step is not None:
            candidates.append((step, path.stat().st_mtime, path))
    for _, _, path in sorted(candidates, key=lambda found: found[:2], reverse=True):
        if integrity_problem(path) is None:
            return path
    return None


# Names Lightning gives a run's checkpoints (last.ckpt, last-v1.ckpt, epoch=3-step=40.ckpt).
_RUN_CHECKPOINT_NAME = re.compile(r"(last(-v\d+)?|.*epoch=\d+.*)\.ckpt")


def previous_good(path: Path) -> str:
    """Name the checkpoint beside `path` that a user can go back to (`furthest_good`), when `path` is
    one of a run's (in a `checkpoints/` folder, or named as Lightning names them): in a folder of
    checkpoints a user gathered, the file beside it may be another model."""
    if path.parent.name != "checkpoints" and not _RUN_CHECKPOINT_NAME.fullmatch(path.name):
        return "go back to an earlier checkpoint of its run (in the run's checkpoints/ folder)"
    good = furthest_good(path.parent, excluding=path)
    return f"the previous good checkpoint is {good}" if good is not None else "no other good checkpoint is beside it"


def _check_finite(checkpoint: dict[str, Any]) -> None:
    for name, tensor in checkpoint.get("state_dict", {}).items():
        if torch.is_tensor(tensor) and tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise NonFiniteWeightsError(
                f"refusing to save a checkpoint with non-finite weights ({name}); the last good checkpoint is kept"
            )


class AtomicCheckpointIO(TorchCheckpointIO):
    """TorchCheckpointIO with atomic writes, sha256 records and verified weights-only loads."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        _check_finite(checkpoint)
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        data = buffer.getvalue()
        digest = hashlib.sha256(data).hexdigest()
        previous = [sha256_of(target)] if target.is_file() else []  # the file a kill would leave
        write_atomically(record_path(target), "\n".join([digest, *previous]).encode() + b"\n")
        write_atomically(target, data)
        _fsync_dir(target.parent)

    def load_checkpoint(
        self, path: Any, map_location: Callable | None = lambda storage, loc: storage, weights_only: bool | None = None
    ) -> dict[str, Any]:
        target = Path(path)
        if not target.is_file():
            raise UserInputError(f"checkpoint not found: {target}")
        verify_checkpoint(target)
        return torch.load(target, map_location=map_location, weights_only=True)

    def remove_checkpoint(self, path: Any) -> None:
        super().remove_checkpoint(path)
        record_path(Path(path)).unlink(missing_ok=True)
