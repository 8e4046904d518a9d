"""One copy of the checkpoint for the whole server: what GET /info describes is what every worker runs.

The workers load the model after the main process has read it; a checkpoint replaced in between
(the `last.ckpt` of a run still training) would otherwise be served in two versions at once.
"""

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from src.checkpointing.checkpoint_io import recorded_hashes, sha256_of
from src.errors import UserInputError


@contextmanager
def checkpoint_snapshot(path: Path) -> Iterator[tuple[Path, str]]:
    """A private copy of `path` as read now (named with this process id) and its sha256; deleted on exit.

    A copy whose hash is not one the checkpoint's `.sha256` record holds was read half-written or
    is damaged: refused in one line.
    """
    descriptor, name = tempfile.mkstemp(prefix=f"serve-{os.getpid()}-", suffix=".ckpt")
    os.close(descriptor)
    snapshot = Path(name)
    try:
        try:
            shutil.copyfile(path, snapshot)
        except OSError as error:
            raise UserInputError(
                f"cannot copy {path} to {snapshot.parent} for the workers ({error.strerror or error}): free space "
                "there or point TMPDIR at another folder"
            ) from None
        sha256 = sha256_of(snapshot)
        recorded = recorded_hashes(path)
        if recorded and sha256 not in recorded:
            raise UserInputError(f"{path} changed while it was read, or is damaged: start the server again")
        yield snapshot, sha256
    finally:
        snapshot.unlink(missing_ok=True)
