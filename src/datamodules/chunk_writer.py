"""`train.py optimize`: an image folder (or zip) written as LitData chunks for ChunkedImageDataModule.

The folder is read exactly as ImageFolderDataModule reads it (the same class names, validation
split, image size and training mean/std), each image is decoded once at its training size, and
`litdata.optimize` writes the splits as chunks to a folder or to `s3://bucket/prefix`.
"""

import tempfile
from pathlib import Path
from typing import Any, Literal

from src.datamodules.chunk_storage import check_empty, import_litdata, is_remote, join, write_record
from src.datamodules.image_folder import ImageFolderDataModule
from src.errors import UserInputError


def worker_error(error: RuntimeError) -> Exception:
    """The one line of a user mistake (an undecodable image) that failed a LitData worker, or the
    error itself when it was something else."""
    marker = f"{UserInputError.__module__}.{UserInputError.__name__}: "
    text = str(error)
    if marker not in text:
        return error
    return UserInputError(text.split(marker, 1)[1].strip().splitlines()[0])


class ChunkItem:
    """One image of a split as a chunk item, {"image": uint8 C x H x W, "label": int}: what
    `litdata.optimize` calls in its worker processes (so a picklable object, not a closure)."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __call__(self, index: int) -> dict[str, Any]:
        image, label = self.dataset[index]
        return {"image": image.contiguous(), "label": int(label)}


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
    with tempfile.TemporaryDirectory() as cache:  # the mean/std pass's cache: not kept
        images = ImageFolderDataModule(
            data_dir=data_dir,
            image_size=image_size,
            channels=channels,
            val_size=val_size,
            seed=seed,
            streaming=True,
            flip=False,  # stored as they are: ChunkedImageDataModule augments whole batches
            translate=0,
            num_workers=num_workers,  # the mean/std pass
            cache_dir=Path(cache),
        )
        images.setup("fit")
        counts = write_splits(litdata, images, output_dir, num_workers, chunk_bytes)
    record = {
        "class_names": list(images.class_names),
        "image_size": list(images.image_size),
        "channels": images.channels,
        "mean": images.mean,
        "std": images.std,
        "splits": counts,
        "source": str(data_dir),
    }
    write_record(output_dir, record)
    return record


def write_splits(
    litdata: Any, images: ImageFolderDataModule, output_dir: str, num_workers: int, chunk_bytes: str
) -> dict[str, int]:
    """Each split of the streaming `images` written by `litdata.optimize` into `output_dir/<split>`;
    the number of images of each."""
    streams = images.images.streams  # type: ignore[union-attr]
    counts = {}
    for split in ("train", "val", "test"):
        if split not in streams:
            continue
        dataset = streams[split]
        counts[split] = len(dataset)
        try:
            litdata.optimize(
                fn=ChunkItem(dataset),
                inputs=list(range(len(dataset))),
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
