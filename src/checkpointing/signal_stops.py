"""Ctrl-C and SIGTERM during validate, test or predict: stop at once and say so in one line.

Lightning turns Ctrl-C into "graceful shutdown" and exit status 1, lets SIGTERM finish a
predict (exit 0) and stops a test with its own exception. Nothing there is worth saving, so
these commands stop at the signal, as fit's stops end: one line and 128 + the signal's number.
"""

import signal
from collections.abc import Callable, Iterator
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

    with _signals_to(stop):
        yield


@contextmanager
def signals_held(done: str) -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM wait until it ends (a few file renames, say), then stop
    the command with `StoppedBySignal` ("<SIGNAL> received: <done>"): a stop never leaves half of it."""
    received: list[int] = []
    with _signals_to(lambda signum, frame: received.append(signum)):
        yield
    if received:
        raise StoppedBySignal(received[0], f"{signal.Signals(received[0]).name} received: {done}")


@contextmanager
def _signals_to(handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    """SIGINT and SIGTERM go to `handler` within the block, and to the handlers found after it (outside
    the main thread, where signals are not ours to handle, nothing changes)."""
    try:
        previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        for signum, found in previous.items():
            signal.signal(signum, found if found is not None else signal.SIG_DFL)
