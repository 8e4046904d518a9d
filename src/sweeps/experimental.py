"""Optuna features a sweep uses on purpose although Optuna marks them experimental."""

import contextlib
import warnings
from collections.abc import Iterator

import optuna


@contextlib.contextmanager
def experimental_optuna() -> Iterator[None]:
    """Within the block, Optuna's ExperimentalWarning is not shown: the heartbeat of a shared
    storage (which fails a dead worker's trials) and the matplotlib plots are such features."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        yield
