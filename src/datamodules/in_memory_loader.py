"""Batches sliced from tensors already in memory: no per-sample indexing, no workers.

Lightning accepts any iterable with a length as a dataloader. This one shuffles with a
generator seeded by the epoch number, so every epoch's order is reproducible. Given a
`position` (the Trainer's epoch and the batches of it already trained, both restored from
checkpoints), a run resumed mid-epoch replays exactly the remaining batches of that epoch.
Under DDP each rank takes its own shard of every epoch's order.
"""

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch

# Returns (epoch, batches of that epoch already trained).
Position = Callable[[], tuple[int, int]]


class InMemoryLoader:
    """Iterate over equally indexed tensors in (optionally shuffled) batches.

    Args:
        tensors: tensors whose first dimension indexes samples (e.g. inputs and targets).
        batch_size: samples per batch.
        shuffle: draw a new order every epoch (seeded by `seed` and the epoch number).
        drop_last: skip the last, smaller batch of an epoch.
        seed: base seed of the shuffling order.
        rank: this process's index under DDP.
        world_size: number of processes under DDP.
        position: where training stands, asked at the start of every epoch; without it the
            loader counts epochs itself, from 0.
    """

    def __init__(
        self,
        tensors: tuple[torch.Tensor, ...],
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        position: Position | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.tensors = tensors
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.position = position
        self.epoch = -1  # the epoch whose order was served last

    @property
    def num_samples(self) -> int:
        """Samples this rank sees per epoch (padded by repetition so every rank has as many)."""
        return math.ceil(len(self.tensors[0]) / self.world_size)

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def _epoch_order(self, epoch: int) -> torch.Tensor | None:
        """This rank's sample indices for `epoch`; None means "all, in order"."""
        total = len(self.tensors[0])
        whole_set_per_batch = self.batch_size >= total  # the order cannot change a full-batch step
        if self.world_size == 1 and (not self.shuffle or whole_set_per_batch):
            return None
        if self.shuffle:
            order = torch.randperm(total, generator=torch.Generator().manual_seed(self.seed + epoch))
        else:
            order = torch.arange(total)
        padded = self.num_samples * self.world_size
        if padded > total:
            order = torch.cat([order, order[: padded - total]])
        return order[self.rank :: self.world_size].to(self.tensors[0].device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        return self._batches()

    def _batches(self) -> Iterator[tuple[torch.Tensor, ...]]:
        # The body runs at the first next(), once Lightning has restored its progress, so an
        # iterator that is created but never advanced changes nothing.
        if self.position is not None:
            self.epoch, first_batch = self.position()
        else:
            self.epoch, first_batch = self.epoch + 1, 0
        order = self._epoch_order(self.epoch)
        for batch in range(first_batch, len(self)):
            start, stop = batch * self.batch_size, (batch + 1) * self.batch_size
            if order is None:
                yield tuple(t[start:stop] for t in self.tensors)
            else:
                index = order[start:stop]
                yield tuple(t[index] for t in self.tensors)

    def state_dict(self) -> dict[str, Any]:
        """The epoch last served. Lightning saves it, and treats the loader as resumable."""
        return {"epoch": self.epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Nothing to restore: the position comes from the Trainer's restored progress."""
