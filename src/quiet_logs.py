"""Lightning notices that tell a user of this template nothing, silenced at the logger that emits them.

Filters match a message's start on one named logger, so every other line of that logger (and
every other library's) still reaches the terminal.
"""

import contextlib
import logging
from collections.abc import Iterator


class DropMessages(logging.Filter):
    """Drops the records whose message starts with one of `prefixes`."""

    def __init__(self, *prefixes: str) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefixes)


@contextlib.contextmanager
def dropped(logger_name: str, *prefixes: str) -> Iterator[None]:
    """Within the block, `logger_name` drops messages starting with `prefixes`."""
    logger = logging.getLogger(logger_name)
    drop = DropMessages(*prefixes)
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


RANK_ZERO_LOGGER = "lightning.pytorch.utilities.rank_zero"  # where Lightning's rank_zero_info lines go
NOTICES = DropMessages(
    "💡 Tip: For seamless cloud logging",  # an advert for a hosted tracker, at every Trainer's start
    "Loading `train_dataloader` to estimate number of stepping batches",  # a schedule's length being read
)


def drop_lightning_notices() -> None:
    """Silence, for the whole process, the Lightning lines in NOTICES (adding the filter twice is a no-op)."""
    logging.getLogger(RANK_ZERO_LOGGER).addFilter(NOTICES)
