"""Callbacks the template adds to the Trainer."""

from src.callbacks.run_checkpoint import RunCheckpoint

__all__ = ["RunCheckpoint"]
