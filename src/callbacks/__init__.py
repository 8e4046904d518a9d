"""Callbacks the template adds to the Trainer."""

from src.callbacks.rng_state import RngState
from src.callbacks.run_checkpoint import RunCheckpoint, TrainingInterrupted

__all__ = ["RngState", "RunCheckpoint", "TrainingInterrupted"]
