"""Where in an epoch a resumed run stands: what a data loader needs to serve exactly the batches left."""

from collections.abc import Callable

from lightning.pytorch import Trainer


def training_position(trainer: Trainer) -> Callable[[], tuple[int, int]]:
    """A function that gives the Trainer's epoch and the batches of it already trained (restored
    from checkpoints); a loader asks it when it starts an epoch.

    Lightning prefetches a batch, so a loader's own count runs one ahead; the fit loop's count
    of completed batches is the one a checkpoint restores. No public property gives it
    (tests/test_lightning_internals.py checks it is still there).
    """

    def position() -> tuple[int, int]:
        return trainer.current_epoch, trainer.fit_loop.epoch_loop.batch_progress.current.completed

    return position
