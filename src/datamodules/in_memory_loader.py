"""Batches sliced from tensors already in memory: no per-sample indexing, no workers.

Lightning accepts any iterable with a length as a dataloader. This one shuffles with a
generator seeded per epoch, so the order is reproducible and a run resumed mid-epoch
replays exactly the remaining batches (`state_dict` / `load_state_dict`, which Lightning
saves in checkpoints). Under DDP each rank takes its own shard of every epoch's order.
"""

import math
from collections.abc import Iterator
from typing import Any

import torch


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
        self.epoch = 0  # epoch whose order is being (or was last) served
        self.batches_done = 0  # first batch of the epoch's order to serve
        self._started = False
        self._restored = False
        self._exhausted = False
        self._yielded = 0

    @property
    def num_samples(self) -> int:
        """Samples this rank sees per epoch (padded by repetition so every rank has as many)."""
        return math.ceil(len(self.tensors[0]) / self.world_size)

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def _epoch_order(self) -> torch.Tensor | None:
        """This rank's sample indices for the current epoch; None means "all, in order"."""
        total = len(self.tensors[0])
        whole_set_per_batch = self.batch_size >= total  # the order cannot change a full-batch step
        if self.world_size == 1 and (not self.shuffle or whole_set_per_batch):
            return None
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(total, generator=generator)
        else:
            order = torch.arange(total)
        padded = self.num_samples * self.world_size
        if padded > total:
            order = torch.cat([order, order[: padded - total]])
        order = order[self.rank :: self.world_size]
        device = self.tensors[0].device
        return order.to(device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        return self._batches()

    def _batches(self) -> Iterator[tuple[torch.Tensor, ...]]:
        # A generator's body runs at the first next(), so an iterator that Lightning creates
        # but never advances does not count as an epoch.
        if self._restored:
            self._restored = False
            if self.batches_done >= len(self):
                self.epoch, self.batches_done = self.epoch + 1, 0
        elif self._started:
            self.epoch, self.batches_done = self.epoch + 1, 0
        self._started = True
        self._exhausted = False
        order = self._epoch_order()
        self._yielded = self.batches_done
        for batch in range(self.batches_done, len(self)):
            start, stop = batch * self.batch_size, (batch + 1) * self.batch_size
            self._yielded = batch + 1
            if order is None:
                yield tuple(t[start:stop] for t in self.tensors)
            else:
                index = order[start:stop]
                yield tuple(t[index] for t in self.tensors)
        self._exhausted = True

    def state_dict(self) -> dict[str, Any]:
        """Position in the stream of epochs, as plain ints (safe for weights-only loading).

        Lightning fetches one batch ahead of training, so until the epoch's batches run
        out, the last batch handed out has not been trained on yet.
        """
        if not self._started:
            return {"epoch": self.epoch, "batches_done": self.batches_done}
        trained = self._yielded if self._exhausted else max(self._yielded - 1, self.batches_done)
        return {"epoch": self.epoch, "batches_done": trained}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue from a saved position: the next iteration resumes that epoch's order."""
        self.epoch = int(state_dict["epoch"])
        self.batches_done = int(state_dict["batches_done"])
        self._restored = True
