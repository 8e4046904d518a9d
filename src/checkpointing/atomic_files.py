"""Writing a file so that a crash at any moment leaves either the old or the new content."""

import os
from pathlib import Path

TEMP_MARK = ".tmp-"


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to a temp file beside `path`, fsync it, and rename it into place."""
    temp = path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}")
    try:
        with temp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
