"""Ctrl-C and SIGTERM during validate, test or predict: stop at once and say so in one line.

Lightning turns Ctrl-C into "graceful shutdown" and exit status 1, lets SIGTERM finish a
predict (exit 0) and stops a test with its own exception. Nothing there is worth saving, so
these commands stop at the signal, as fit's stops end: one line and 128 + the signal's number.
"""

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from src.errors import StoppedBySignal

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def stop_on_signal(activity: str, consequence: str) -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise `StoppedBySignal` ("<SIGNAL> received during
    <activity>: <consequence>"); the handlers found are put back after it.

    Installed before the Trainer runs, so Lightning's own SIGTERM handler calls this one after
    its own, and hands it back when it tears down. A second signal while stopping is ignored.
    """
    stopping: list[int] = []

    def stop(signum: int, frame: FrameType | None) -> None:
        if stopping:
            return
        stopping.append(signum)
        name = signal.Signals(signum).name
        raise StoppedBySignal(signum, f"{name} received during {activity}: {consequence}")

    try:
        previous = {signum: signal.signal(signum, stop) for signum in STOP_SIGNALS}
    except ValueError:  # not the main thread: signals are not ours to handle
        yield
        return
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
