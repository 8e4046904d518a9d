"""LightningCLI given its arguments from Python while sys.argv holds a command line, on purpose."""

import contextlib
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def args_from_python() -> Iterator[None]:
    """Within the block, Lightning's warning that a CLI got `args` beside a non-empty sys.argv is
    not shown: train.py hands on the arguments it read, and a sweep starts each trial's `fit`."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended to run from within Python")
        yield
