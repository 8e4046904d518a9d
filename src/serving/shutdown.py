"""Stopping `serve`: SIGTERM (kill, Docker, Kubernetes) and Ctrl-C shut down every worker and free the port.

LitServe shuts its workers down on KeyboardInterrupt only; SIGTERM would end the main process
alone and leave the workers serving the port. Here both signals take LitServe's path, once (a
second signal during the shutdown is ignored), and the command then ends as a stopped one
(exit 130 or 143, as for a stopped fit). The inference workers ignore SIGINT: Ctrl-C reaches the
whole process group, and the main process stops them itself. LitServe's shared-state process (a
multiprocessing manager) ignores SIGTERM as it ignores SIGINT: a SIGTERM to the whole group
(systemd, `timeout`) would end it before the workers that read it, each then failing with a traceback.
A process that cannot be stopped in order (`kill -9`, the OOM killer) takes every child with it on
Linux, which would otherwise go on answering on the port with nobody behind them.
"""

import ctypes
import multiprocessing
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from src.errors import StoppedBySignal

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def stopped_by_signals(port: int) -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise KeyboardInterrupt once; after it, a received
    signal ends the command with StoppedBySignal. The handlers found are put back."""
    received: list[int] = []
    owner = os.getpid()

    def stop(signum: int, frame: FrameType | None) -> None:
        if os.getpid() != owner:  # a forked HTTP server process: end as the signal's default would
            if multiprocessing.current_process().name.startswith("SyncManager"):
                return  # LitServe's shared state: the main process shuts it down last (manager.shutdown)
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        if not received:
            received.append(signum)
            raise KeyboardInterrupt

    previous = {number: signal.signal(number, stop) for number in STOP_SIGNALS}
    try:
        yield
    except KeyboardInterrupt:
        if not received:
            raise
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if received:
        name = signal.Signals(received[0]).name
        raise StoppedBySignal(received[0], f"{name} received: the server stopped its workers and freed port {port}")


def stop_leftover_workers(server: Any) -> None:
    """Terminate any inference worker still alive: a signal during start-up comes before LitServe's
    own shutdown is in place."""
    for worker in getattr(server, "inference_workers", None) or []:
        if worker.is_alive():
            worker.terminate()
            worker.join(timeout=5)
            if worker.is_alive():
                worker.kill()


def ignore_interrupts_in_worker() -> None:
    """In an inference worker: leave Ctrl-C to the main process, which stops the workers in order,
    and end with it if it is killed outright."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is not None and parent.pid is not None:
        end_with_parent(parent.pid)


PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies
_prctl: Any = None  # libc's prctl, looked up before any fork (not in a child forked from threads)
_parent_at_fork = 0  # the forking process's pid, read in the child


def _set_death_signal() -> Any:
    """libc's prctl on Linux, looked up once; None elsewhere (macOS, Windows: nothing to do)."""
    global _prctl
    if _prctl is None and sys.platform.startswith("linux"):
        _prctl = ctypes.CDLL(None, use_errno=True).prctl
    return _prctl


def end_with_parent(parent: int) -> None:
    """In a child of `serve` (Linux): be killed when `parent` dies, even by SIGKILL; at once if it
    already has. Elsewhere nothing happens."""
    prctl = _set_death_signal()
    if prctl is None:
        return
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the line above
        os.kill(os.getpid(), signal.SIGKILL)


def forked_children_end_with_parent() -> None:
    """Every process forked from here on (LitServe's HTTP servers and shared-state process) ends
    with the process that forked it (Linux; a no-op elsewhere)."""
    global _parent_at_fork

    def note_parent() -> None:
        global _parent_at_fork
        _parent_at_fork = os.getpid()

    if _set_death_signal() is not None and not _parent_at_fork:
        os.register_at_fork(before=note_parent, after_in_child=lambda: end_with_parent(_parent_at_fork))
        _parent_at_fork = os.getpid()
