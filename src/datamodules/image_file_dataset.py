"""The files of the image folder's streaming path: a Dataset that reads, decodes and augments
one file at a time in DataLoader worker processes, its per-epoch sampler, and the stream that
resumes it mid-epoch."""

import os
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torchvision.transforms import v2

from src.datamodules.image_decoding import (
    SKIP_HINT,
    Size,
    decode,
    fit_to_size,
    open_zip,
    read_file,
    read_zip_member,
)
from src.datamodules.in_memory_loader import Position
from src.errors import UserInputError

UNDECODABLE = -1  # the label of an evaluation item whose file could not be decoded


class ImageFiles(Dataset):
    """(uint8 C x H x W image, label) pairs read from a tree or a zip on every access.

    Each image is decoded (PIL), converted to `channels`, brought to `size` as the in-memory
    path does it (`fit_to_size`), then augmented by `transform` (torchvision.transforms.v2 on
    uint8 tensors). Normalisation happens later, on the device, as in the in-memory path.
    A zip is opened once per worker process (a ZipFile handle cannot cross processes).

    With `skip_bad`, a file that cannot be decoded is named once by each process that meets it
    and then, with `replace_bad` (training), replaced by the next decodable item, so a batch
    keeps its size (every DDP rank steps together, BatchNorm never sees an empty batch);
    without it (evaluation) it comes as a blank image labelled `UNDECODABLE`, which the data
    module drops before the batch reaches the model, so each decodable image counts once.

    Args:
        root: the tree's root folder, or the zip file.
        items: (name relative to root or zip member, label) pairs.
        size: (height, width) of the images given out.
        channels: 3 (RGB) or 1 (grayscale).
        transform: applied to each uint8 image (None: none).
        skip_bad: skip undecodable files (as above) instead of raising.
        replace_bad: with skip_bad, give the next decodable item instead of a marked blank.
    """

    def __init__(
        self,
        root: Path,
        items: list[tuple[str, int]],
        size: Size,
        channels: int,
        transform: v2.Transform | None = None,
        skip_bad: bool = False,
        replace_bad: bool = False,
    ) -> None:
        self.root = Path(root)
        self.skip_bad = skip_bad
        self.replace_bad = replace_bad
        self.items = items
        self.size = size
        self.channels = channels
        self.transform = transform
        self._zip: zipfile.ZipFile | None = None
        self._zip_pid = -1
        self._named: set[str] = set()  # undecodable files this process has named

    def __len__(self) -> int:
        return len(self.items)

    def _read(self, name: str) -> bytes:
        """A file's bytes; one that cannot be read (permissions, a damaged zip) ends the run."""
        if self.root.is_dir():
            return read_file(self.root / name)
        if self._zip is None or self._zip_pid != os.getpid():  # one handle per worker process
            self._zip, self._zip_pid = open_zip(self.root), os.getpid()
        return read_zip_member(self._zip, name)

    def image(self, index: int) -> torch.Tensor:
        """The image at `index` as uint8, before augmentation."""
        name = self.items[index][0]
        return fit_to_size(decode(self._read(name), name, self.channels), self.size)

    def decodable_image(self, index: int) -> torch.Tensor | None:
        """`image(index)`, or None for an undecodable file when `skip_bad` (named once per
        process: workers print their own); without `skip_bad` such a file ends the run, as
        does a file that cannot be read at all."""
        name = self.items[index][0]
        data = self._read(name)
        try:
            return fit_to_size(decode(data, name, self.channels), self.size)
        except UserInputError as error:
            if not self.skip_bad:  # the same line as the in-memory path's
                raise UserInputError(f"{error} (in {self.root}; fix or delete it{SKIP_HINT})") from None
            if name not in self._named:
                self._named.add(name)
                print(f"Skipped an image that could not be decoded (data.skip_bad_images): {name}", flush=True)
            return None

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.decodable_image(index)
        if image is None:
            if not self.replace_bad:  # evaluation: marked, dropped by the data module
                return torch.zeros(self.channels, *self.size, dtype=torch.uint8), UNDECODABLE
            index, image = self._next_decodable(index)
        if self.transform is not None:
            image = self.transform(image)
        return image, self.items[index][1]

    def _next_decodable(self, index: int) -> tuple[int, torch.Tensor]:
        """The first item after `index` (wrapping round) that decodes, and its image."""
        for step in range(1, len(self.items)):
            candidate = (index + step) % len(self.items)
            image = self.decodable_image(candidate)
            if image is not None:
                return candidate, image
        raise UserInputError(f"no image of {self.root} could be decoded")

    def __getstate__(self) -> dict[str, object]:  # workers open their own zip handle
        return {**self.__dict__, "_zip": None, "_zip_pid": -1}


class EpochSampler(DistributedSampler):
    """DistributedSampler (this rank's shard of a seeded shuffle per epoch) told its epoch and
    how many of its first indices to leave out, by `ResumableStream` at each epoch's start."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.skip = 0

    def start(self, epoch: int, skip: int) -> None:
        self.set_epoch(epoch)
        self.skip = skip

    def __iter__(self) -> Iterator[int]:
        return iter(list(super().__iter__())[self.skip :])


class ResumableStream:
    """The streamed training batches: a DataLoader (workers, prefetching) whose epoch order and
    start are set from the Trainer's `position` when the epoch's first batch is asked for, as
    InMemoryLoader does: a run resumed mid-epoch trains exactly the batches that remained.

    The DataLoader is started lazily because its workers fetch ahead as soon as it is
    iterated, and Lightning iterates it before it has reset its progress for a new epoch.
    Lightning treats it as resumable (`state_dict`/`load_state_dict`): the position itself
    comes from the Trainer's restored progress.
    """

    def __init__(self, loader: DataLoader, sampler: EpochSampler, position: Position | None = None) -> None:
        self.loader, self.sampler, self.position = loader, sampler, position
        self.epoch = -1  # without a position (no Trainer): epochs counted from 0, each from its start

    def __len__(self) -> int:
        return len(self.loader)

    @property
    def worker_init_fn(self) -> Callable[[int], None] | None:
        """The DataLoader's: Lightning sets its per-rank worker seeding here (seed_everything(workers=True))."""
        return self.loader.worker_init_fn

    @worker_init_fn.setter
    def worker_init_fn(self, function: Callable[[int], None] | None) -> None:
        self.loader.worker_init_fn = function

    def __iter__(self) -> Iterator[Any]:
        return self._batches()

    def _batches(self) -> Iterator[Any]:
        self.epoch, first_batch = self.position() if self.position is not None else (self.epoch + 1, 0)
        self.sampler.start(self.epoch, first_batch * (self.loader.batch_size or 1))
        yield from self.loader

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Nothing to restore: the position comes from the Trainer's restored progress."""


def training_transform(size: Size, translate: int, flip: bool) -> v2.Transform | None:
    """The in-memory path's augmentation, per image: a random horizontal flip and a shift of up
    to `translate` pixels with reflected borders (a random crop of the reflect-padded image)."""
    steps: list[v2.Transform] = []
    if flip:
        steps.append(v2.RandomHorizontalFlip())
    if translate > 0:
        steps.append(v2.RandomCrop(list(size), padding=translate, padding_mode="reflect"))
    return v2.Compose(steps) if steps else None
