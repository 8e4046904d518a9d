"""Never losing a run: atomic verified checkpoint files, last.ckpt policy, RNG state, finding runs."""

from src.checkpointing.rng_state import RngState
from src.checkpointing.run_checkpoint import RunCheckpoint, TrainingInterrupted

__all__ = ["RngState", "RunCheckpoint", "TrainingInterrupted"]
