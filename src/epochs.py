"""Where a fit ends, in epochs, for everything that does something on its last one."""

from typing import Any


def last_epoch(trainer: Any) -> int | None:
    """The number (counting from 1) of the fit's last epoch: `max_epochs`; None for a run without
    one (`max_epochs` -1 or None: it ends by steps, time or a stop)."""
    end = trainer.max_epochs
    return end if end is not None and end > 0 else None


def is_last_epoch(trainer: Any, epoch: int) -> bool:
    """Whether `epoch` (Lightning's, counting from 0) is the fit's last, or past it (a resume)."""
    end = last_epoch(trainer)
    return end is not None and epoch + 1 >= end
