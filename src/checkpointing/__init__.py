"""How a run saves, stops and resumes: atomic verified checkpoint files, the last.ckpt policy,
signals, RNG state, the run folder shared by loggers and checkpoints, `--ckpt_path last|best`
and the resume position inside an epoch. See docs/run-safety.md.

The command line enters through `RunSafety` (its checkpoint and Trainer parts), `RunCheckpoint`
(the checkpoint callback), `stop_on_signal` (evaluations stopped in one line) and
`empty_run_folders` and `discard_unstarted_run` (the Trainer's fit, when it fails before its first step).
"""

from src.checkpointing.rng_state import RngState
from src.checkpointing.run_checkpoint import RunCheckpoint, TrainingInterrupted
from src.checkpointing.run_folder import RunFolder, discard_unstarted_run, empty_run_folders, share_run_folder
from src.checkpointing.run_safety import RunSafety
from src.checkpointing.signal_stops import stop_on_signal

__all__ = [
    "RngState",
    "RunCheckpoint",
    "RunFolder",
    "RunSafety",
    "TrainingInterrupted",
    "discard_unstarted_run",
    "empty_run_folders",
    "share_run_folder",
    "stop_on_signal",
]
