"""The image folder's streaming path, for sets that do not fit in memory: DataLoader workers
read, decode, resize and augment each image when it is needed; nothing is cached but the
training images' mean and std."""

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from lightning.pytorch import Trainer
from torch.utils.data import DataLoader

from src.checkpointing.atomic_files import write_atomically
from src.checkpointing.resume_position import training_position
from src.datamodules.image_decoding import Size, unwritable_cache
from src.datamodules.image_file_dataset import (
    UNDECODABLE,
    EpochSampler,
    ImageFiles,
    ResumableStream,
    training_transform,
)
from src.datamodules.standardisation import fit_pixel_standardisation
from src.errors import UserInputError

Items = list[tuple[str, int]]  # (file name in the tree or zip member, label)


class StreamingImages:
    """Every split as a list of files (`streams`: one ImageFiles per split), read by workers.

    Training batches come in a seeded order per epoch, each DDP rank its shard; a run resumed
    mid-epoch trains the batches that remained (`ResumableStream`), though the workers' random
    augmentation is not replayed. With `skip_bad`, undecodable files are replaced in training
    and dropped from evaluation batches (`before_transfer`).

    Args:
        root: the tree's root folder, or the zip file.
        items: the files of each split.
        size: (height, width) of the images given out.
        channels: 3 (RGB) or 1 (grayscale).
        flip: random horizontal flips of training images.
        translate: random shift of training images, in pixels (0 turns it off).
        skip_bad: skip undecodable files instead of stopping at the first.
        num_workers: DataLoader worker processes.
        seed: seed of the shuffling.
    """

    def __init__(
        self,
        root: Path,
        items: dict[str, Items],
        size: Size,
        channels: int,
        flip: bool,
        translate: int,
        skip_bad: bool,
        num_workers: int,
        seed: int,
    ) -> None:
        transform = training_transform(size, translate, flip)
        self.streams = {
            split: ImageFiles(
                root,
                chosen,
                size,
                channels,
                transform if split == "train" else None,
                skip_bad=skip_bad,
                replace_bad=split == "train",
            )
            for split, chosen in items.items()
        }
        self.root = root
        self.size = size
        self.channels = channels
        self.skip_bad = skip_bad
        self.num_workers = num_workers
        self.seed = seed

    def normalization(self, source_cache: Path, announce: Callable[[str], None]) -> tuple[list[float], list[float]]:
        """The per-channel mean and std of every training image, read once by the workers
        (undecodable ones left out with skip_bad); kept beside `source_cache` under the
        training split's files, so later runs read two lists."""
        train = self.streams["train"]
        names = "\n".join(name for name, _ in train.items).encode("utf-8", "surrogateescape")  # any file name
        split = hashlib.sha256(names).hexdigest()[:16]
        path = source_cache.with_name(f"{source_cache.stem}-mean-std-{split}.json")
        if path.is_file():
            stored = json.loads(path.read_text())
            return stored["mean"], stored["std"]
        announce(f"Measuring the mean/std of the {len(train):,} training images: one pass over the files")
        started = time.perf_counter()
        plain = ImageFiles(train.root, train.items, self.size, self.channels, skip_bad=self.skip_bad)
        loader = DataLoader(plain, batch_size=256, num_workers=self.num_workers)
        counted = [0]

        def decodable() -> Iterator[torch.Tensor]:
            for images, labels in loader:
                kept = images[labels != UNDECODABLE]
                counted[0] += len(kept)
                if len(kept):
                    yield kept

        mean, std = fit_pixel_standardisation(decodable(), str(self.root))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(path, json.dumps({"mean": mean, "std": std}).encode())
        except OSError as error:
            raise unwritable_cache(path, error) from None
        announce(
            f"Mean/std of the {counted[0]:,} training images ready in {time.perf_counter() - started:.1f} s "
            f"(kept in {path})"
        )
        return mean, std

    def loader(
        self, split: str, batch_size: int | None, shuffle: bool, trainer: Trainer | None
    ) -> DataLoader | ResumableStream:
        """Workers' batches of a split; shuffled, in the order from (seed, epoch), each rank its
        shard: a resumed run, mid-epoch or at a boundary, trains the batches an uninterrupted one
        would have (ResumableStream)."""
        dataset = self.streams[split]
        sampler = None
        if shuffle:
            ranks = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
            sampler = EpochSampler(dataset, num_replicas=ranks[0], rank=ranks[1], seed=self.seed)
        batch_size = batch_size or len(dataset)
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            # As in memory: a last training batch of one sample is skipped (BatchNorm cannot train on one).
            drop_last=sampler is not None and len(sampler) > 1 and len(sampler) % batch_size == 1,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=trainer is not None and trainer.strategy.root_device.type == "cuda",
        )
        if sampler is None:
            return loader
        return ResumableStream(loader, sampler, training_position(trainer) if trainer is not None else None)

    def sample(self, count: int) -> torch.Tensor:
        """The first `count` training images, uint8, unaugmented; with skip_bad the undecodable
        ones are left out and named, else the first one ends the run."""
        train = self.streams["train"]
        images = [image for image in map(train.decodable_image, range(min(count, len(train)))) if image is not None]
        if not images:
            raise UserInputError(f"no training image of {self.root} could be decoded")
        return torch.stack(images)

    def before_transfer(self, batch: object) -> object:
        """With skip_bad: drop the evaluation items marked undecodable (on the host, before the
        transfer). A batch of nothing but such items comes out empty, and the modules'
        evaluation steps count it for nothing."""
        if not (self.skip_bad and isinstance(batch, (tuple, list)) and len(batch) == 2):
            return batch
        images, labels = batch
        keep = labels != UNDECODABLE
        return batch if bool(keep.all()) else (images[keep], labels[keep])

    def augment(self, images: torch.Tensor, epoch: int) -> torch.Tensor:
        """Nothing more: the workers flipped and shifted each training image."""
        return images
