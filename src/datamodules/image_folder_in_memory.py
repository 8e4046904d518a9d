"""The image folder's in-memory path: the source decoded once into a uint8 cache file, the
splits held on the accelerator, training batches flipped and shifted there a whole batch at a time."""

import io
from pathlib import Path

import torch
from lightning.pytorch import Trainer

from src.checkpointing.atomic_files import write_atomically
from src.datamodules.batch_augment import FlipMode, alternate_flip, mirror_random_half, random_flip, random_translate
from src.datamodules.image_decoding import Splits, unwritable_cache
from src.datamodules.in_memory import split_loader
from src.datamodules.in_memory_loader import InMemoryLoader


def write_cache(cache: Path, splits: Splits, skipped: list[str]) -> None:
    """The decoded splits (and the names of the files skipped as undecodable), written atomically."""
    record: dict[str, object] = {name: {"images": x, "labels": y} for name, (x, y) in splits.items()}
    record["skipped"] = skipped
    buffer = io.BytesIO()
    torch.save(record, buffer)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(cache, buffer.getvalue())
    except OSError as error:
        raise unwritable_cache(cache, error) from None


def read_cache(cache: Path) -> tuple[Splits, list[str]]:
    """What `write_cache` wrote: the splits, and the files skipped when they were decoded."""
    data = torch.load(cache, weights_only=True)
    skipped = data.pop("skipped", [])
    return {name: (split["images"], split["labels"]) for name, split in data.items()}, skipped


class InMemoryImages:
    """Every split as one uint8 tensor on `device`, served by InMemoryLoader (no workers);
    training batches augmented on the device in `augment`.

    Args:
        splits: (images N x C x H x W uint8, labels) per split.
        device: where the tensors are held (the accelerator of the run).
        seed: seed of the shuffling (and of the half stored mirrored with flip "alternate").
        flip: random horizontal flips of training batches; "alternate": airbench's alternating
            flips (a seeded random half of the training images stored mirrored, in place in the
            given tensor, and every image mirrored on odd epochs).
        translate: random shift of training images, in pixels (0 turns it off).
        owner: the data module's class name, for the message of a split asked before setup().
        split_options: the data module's options that size the splits, for an empty split's message.
    """

    def __init__(
        self,
        splits: Splits,
        device: torch.device,
        seed: int,
        flip: FlipMode,
        translate: int,
        owner: str,
        split_options: str,
    ) -> None:
        self.splits = {name: (x.to(device), y.to(device)) for name, (x, y) in splits.items()}
        if flip == "alternate" and "train" in self.splits:
            images, labels = self.splits["train"]
            self.splits["train"] = (mirror_random_half(images, seed), labels)
        self.seed = seed
        self.flip = flip
        self.translate = translate
        self.owner = owner
        self.split_options = split_options

    def loader(self, split: str, batch_size: int | None, shuffle: bool, trainer: Trainer | None) -> InMemoryLoader:
        return split_loader(self.splits, split, batch_size, shuffle, self.seed, trainer, self.owner, self.split_options)

    def sample(self, count: int) -> torch.Tensor:
        """The first `count` training images, uint8, as stored (unaugmented; with flip "alternate",
        the stored half mirrored)."""
        return self.splits["train"][0][:count]

    def before_transfer(self, batch: object) -> object:
        """Nothing to drop: every image in memory was decoded."""
        return batch

    def augment(self, images: torch.Tensor, epoch: int) -> torch.Tensor:
        """A training batch of `epoch` flipped and shifted where it is, a whole batch at a time."""
        if self.flip == "alternate":
            images = alternate_flip(images, epoch)
        elif self.flip:
            images = random_flip(images)
        return random_translate(images, self.translate)
