"""Trainer values that Lightning accepts and later fails on with a traceback (a division by zero)
or, worse, runs with silently wrong (a negative clip value flips every gradient): refused up front."""

from typing import Any

from src.errors import UserInputError


def check_trainer_options(trainer: dict[str, Any]) -> None:
    """One line for the first Trainer value in `trainer` (the parsed `trainer` group) that cannot work."""
    every = trainer.get("check_val_every_n_epoch")
    if every is not None and every < 1:
        raise UserInputError(
            f"--trainer.check_val_every_n_epoch must be >= 1 (validate every N epochs), got {every}; to validate "
            "less, raise it, or turn validation off with --trainer.limit_val_batches 0"
        )
    accumulate = trainer.get("accumulate_grad_batches")
    if accumulate is not None and accumulate < 1:
        raise UserInputError(
            f"--trainer.accumulate_grad_batches must be >= 1 (1: an optimizer step every batch), got {accumulate}"
        )
    interval = trainer.get("val_check_interval")
    numeric = isinstance(interval, (int, float)) and not isinstance(interval, bool)
    if interval is not None and not numeric:
        raise UserInputError(
            f"--trainer.val_check_interval {interval}: a time-based interval is not supported here (Lightning "
            "2.6's early stopping fails on one); give a fraction of an epoch, such as 0.5, or a number of "
            "training batches"
        )
    if numeric and (interval <= 0 or (isinstance(interval, float) and interval > 1)):
        raise UserInputError(
            f"--trainer.val_check_interval must be a fraction of an epoch in (0, 1] or a number of training "
            f"batches >= 1, got {interval}"
        )
    nodes = trainer.get("num_nodes")
    if nodes is not None and nodes < 1:
        raise UserInputError(f"--trainer.num_nodes must be >= 1, got {nodes}")
    clip = trainer.get("gradient_clip_val")
    if clip is not None and clip < 0:
        raise UserInputError(
            f"--trainer.gradient_clip_val must be >= 0 (0 or null: no clipping), got {clip}: a negative limit "
            "would reverse every gradient"
        )
