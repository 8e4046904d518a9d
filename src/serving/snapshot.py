"""One copy of the checkpoint for the whole server: what GET /info describes is what every worker runs.

The workers load the model after the main process has read it; a checkpoint replaced in between
(the `last.ckpt` of a run still training) would otherwise be served in two versions at once.
"""

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def checkpoint_snapshot(path: Path) -> Iterator[tuple[Path, str]]:
    """A private copy of `path`'s bytes as read now, and their sha256; the copy is deleted on exit."""
    data = path.read_bytes()
    descriptor, name = tempfile.mkstemp(prefix="serve-", suffix=".ckpt")
    snapshot = Path(name)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        yield snapshot, hashlib.sha256(data).hexdigest()
    finally:
        snapshot.unlink(missing_ok=True)
