"""`train.py optimize`: an image folder (or zip) written as LitData chunks for ChunkedImageDataModule.

The folder is read exactly as ImageFolderDataModule reads it (the same class names, validation
split, image size and training mean/std), each image is decoded once at its training size, and
`litdata.optimize` writes the splits as chunks to a folder or to `s3://bucket/prefix`; the
training images' mean and std are summed by the workers as they write, not in a pass of their own.
"""

import math
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import torch

from src.datamodules.chunk_storage import check_empty, import_litdata, is_remote, join, write_record
from src.datamodules.image_decoding import SKIP_HINT, SPLITS
from src.datamodules.image_folder import ImageFolderDataModule
from src.datamodules.standardisation import PixelMoments
from src.errors import UserInputError


def worker_error(error: RuntimeError) -> Exception:
    """The one line of a user mistake (an undecodable image) that failed a LitData worker, or the
    error itself when it was something else."""
    marker = f"{UserInputError.__module__}.{UserInputError.__name__}: "
    text = str(error)
    if marker not in text:
        return error
    return UserInputError(text.split(marker, 1)[1].strip().splitlines()[0].replace(SKIP_HINT, ""))


class UnmeasuredImageFolder(ImageFolderDataModule):
    """The image folder's streaming splits without their mean/std pass over the files: `optimize`
    sums the training images' moments as it writes them, so each image is decoded once."""

    SPLIT_OPTIONS = "--val_size"  # `optimize`'s own flag, in the line for an empty split

    def published_normalization(self) -> tuple[list[float], list[float]]:
        """Placeholders that skip the measuring pass; `optimize` records the summed ones."""
        return [0.0] * self.channels, [1.0] * self.channels

    def _chooses_streaming(self, kind: str) -> bool:
        """The files, read once by the chunk writers, without the line a fit prints about its data path
        (workers that decode and augment each batch), which is not what `optimize` does."""
        if kind not in ("tree", "zip"):
            return super()._chooses_streaming(kind)
        self.data_path = "streaming"
        return True


class ChunkShard:
    """The images of one shard of a split as chunk items, {"image": uint8 C x H x W, "label": int},
    their pixel moments saved in `moments_dir/<shard>.pt` when it is given: what `litdata.optimize`
    calls in its worker processes (so a picklable object, not a closure)."""

    def __init__(self, dataset: Any, moments_dir: str | None) -> None:
        self.dataset = dataset
        self.moments_dir = moments_dir

    def __call__(self, shard: tuple[int, list[int]]) -> Iterator[dict[str, Any]]:
        number, indices = shard
        moments = PixelMoments()
        for index in indices:
            image, label = self.dataset[index]
            moments.add(image.unsqueeze(0))
            yield {"image": image.contiguous(), "label": int(label)}
        if self.moments_dir is not None:
            torch.save(moments.state(), Path(self.moments_dir, f"{number}.pt"))


def shards(count: int, num_workers: int) -> list[tuple[int, list[int]]]:
    """The indices 0..count-1 in numbered runs, at least 8 per worker and at most 256 images each,
    so the workers share the split evenly."""
    size = max(1, min(256, math.ceil(count / (8 * max(1, num_workers)))))
    starts = range(0, count, size)
    return [(number, list(range(start, min(start + size, count)))) for number, start in enumerate(starts)]


def optimize(
    data_dir: Path,
    output_dir: str,
    image_size: int | tuple[int, int] = 64,
    channels: Literal[1, 3] = 3,
    val_size: int | float = 0.1,
    seed: int = 42,
    num_workers: int = 2,
    chunk_bytes: str = "64MB",
) -> dict[str, Any]:
    """Write `data_dir` (train/<class>/ images, test/<class>/ optional, or a zip of them) as LitData
    chunks in `output_dir` (a folder or s3://bucket/prefix), one sub-folder per split, and
    `dataset.json` beside them; return that record.

    Args:
        data_dir: the image folder or zip, as ImageFolderDataModule takes it.
        output_dir: where the chunks go: a new or empty folder, or s3://bucket/prefix.
        image_size: the side (or [height, width]) the images are stored and trained at.
        channels: 3 (RGB) or 1 (grayscale).
        val_size: training images held out for validation when there is no val/ folder.
        seed: seed of that hold-out (the same as the image-folder path's).
        num_workers: processes that decode and write.
        chunk_bytes: the size of one chunk file ("64MB").
    """
    litdata = import_litdata()
    check_empty(output_dir)
    with tempfile.TemporaryDirectory() as cache:  # the data module's cache and the moments: not kept
        images = UnmeasuredImageFolder(
            data_dir=data_dir,
            image_size=image_size,
            channels=channels,
            val_size=val_size,
            seed=seed,
            streaming=True,
            flip=False,  # stored as they are: ChunkedImageDataModule augments whole batches
            translate=0,
            num_workers=num_workers,
            cache_dir=Path(cache),
        )
        images.setup("fit")
        moments_dir = Path(cache, "moments")
        moments_dir.mkdir()
        counts = write_splits(litdata, images, output_dir, num_workers, chunk_bytes, str(moments_dir))
        moments = summed_moments(moments_dir)
        expected = counts["train"] * images.image_size[0] * images.image_size[1]
        if moments.count != expected:  # a shard's worker wrote no sums: never publish partial ones
            raise RuntimeError(f"the chunk writers summed {moments.count} training pixels, not {expected}")
        mean, std = moments.mean_std(str(data_dir))
    record = {
        "class_names": list(images.class_names),
        "image_size": list(images.image_size),
        "channels": images.channels,
        "mean": mean,
        "std": std,
        "splits": counts,
        "source": str(data_dir),
    }
    write_record(output_dir, record)
    return record


def summed_moments(moments_dir: Path) -> PixelMoments:
    """The moments of the whole training split: every shard's, merged in shard order."""
    moments = PixelMoments()
    for path in sorted(moments_dir.glob("*.pt"), key=lambda path: int(path.stem)):
        moments.merge(PixelMoments.from_state(torch.load(path, weights_only=True)))
    return moments


def write_splits(
    litdata: Any,
    images: ImageFolderDataModule,
    output_dir: str,
    num_workers: int,
    chunk_bytes: str,
    moments_dir: str,
) -> dict[str, int]:
    """Each split of the streaming `images` written by `litdata.optimize` into `output_dir/<split>`,
    the training images' moments into `moments_dir`; the number of images of each split."""
    streams = images.images.streams  # type: ignore[union-attr]
    counts = {}
    for split in SPLITS:
        if split not in streams:
            continue
        dataset = streams[split]  # never empty: the image folder refuses an empty split or class folder first
        counts[split] = len(dataset)
        try:
            litdata.optimize(
                fn=ChunkShard(dataset, moments_dir if split == "train" else None),
                inputs=shards(len(dataset), num_workers),
                output_dir=join(output_dir, split),
                chunk_bytes=chunk_bytes,
                num_workers=max(1, num_workers),
                verbose=False,
                # Forked workers start at once; object storage needs spawned ones (its client is not fork-safe).
                start_method="spawn" if is_remote(output_dir) else "fork",
            )
        except RuntimeError as error:  # a worker's error comes back as the text of its traceback
            raise worker_error(error) from None
    return counts
