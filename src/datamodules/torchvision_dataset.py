"""Any torchvision classification data set by name (MNIST, FashionMNIST, KMNIST, CIFAR100, SVHN, ...):
the image-folder module fed from torchvision's own download instead of a folder.

    data:
      class_path: src.datamodules.TorchvisionDataModule
      init_args:
        name: FashionMNIST     # a class of torchvision.datasets
        image_size: 28
        channels: 1

torchvision downloads the set into `data_dir` the first time (its own URLs and checksums);
offline, the download fails with one line saying how to bring the files. The images are then
decoded once into the image folder's cache, held in memory and augmented by whole batches,
exactly as an image folder is: the same validation hold-out (stratified, seeded), measured
mean/std, checkpoint state and `predict` on your own image files. The class names are the
set's own (`classes`), else its label numbers.
"""

import inspect
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torchvision
from filelock import FileLock

from src.datamodules.batch_augment import FlipMode
from src.datamodules.image_decoding import Splits, fit_to_size, image_tensor, to_channels
from src.datamodules.image_folder import ImageFolderDataModule
from src.errors import UserInputError, first_line

DOWNLOAD_LOCK = ".download.lock"  # held by the process that downloads; left in data_dir, not part of the set


def _usable(cls: object) -> bool:
    """Whether torchvision's `cls` is a set this module can ask for: it downloads itself and has a
    train/test split (train=... or split=...); detection, stereo or captioning sets do not fit."""
    if not isinstance(cls, type):
        return False
    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False
    return "download" in parameters and ("train" in parameters or "split" in parameters)


def dataset_class(name: str) -> type:
    """torchvision.datasets.<name>, or one line listing the names this module can use."""
    found = getattr(torchvision.datasets, name, None)
    if not _usable(found):
        known = ", ".join(sorted(n for n in torchvision.datasets.__all__ if _usable(getattr(torchvision.datasets, n))))
        what = "a torchvision data set" if isinstance(found, type) else "a torchvision data set name"
        raise UserInputError(
            f"data.name {name!r} is not {what} that downloads itself with a train/test split; one of: {known}"
        )
    return found  # type: ignore[return-value]


def split_arguments(cls: type, split: str) -> dict[str, Any]:
    """How `cls` is asked for its training or test part: train=True/False (MNIST, CIFAR) or
    split="train"/"test" (SVHN, ...)."""
    parameters = inspect.signature(cls).parameters
    if "train" in parameters:
        return {"train": split == "train"}
    if "split" in parameters:
        return {"split": split}
    raise UserInputError(f"torchvision's {cls.__name__} has no train/test split this module knows how to ask for")


def as_uint8_images(dataset: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(N x C x H x W uint8 images, N labels) of a torchvision data set: straight from its arrays
    when it keeps them (`data` with `targets` or `labels`), else image by image."""
    data = getattr(dataset, "data", None)
    labels = getattr(dataset, "targets", getattr(dataset, "labels", None))
    if data is not None and labels is not None and getattr(data, "ndim", 0) in (3, 4):
        images = torch.as_tensor(np.asarray(data))
        if images.dtype == torch.uint8:
            if images.ndim == 3:  # N x H x W (the MNIST family)
                images = images.unsqueeze(1)
            elif images.shape[-1] in (1, 3) and images.shape[1] not in (1, 3):  # N x H x W x C (CIFAR)
                images = images.permute(0, 3, 1, 2)
            return images.contiguous(), torch.as_tensor(np.asarray(labels), dtype=torch.long)
    pictures, targets = [], []
    for sample in dataset:  # (PIL image, class index) for a classification set
        if not (isinstance(sample, tuple) and len(sample) == 2 and hasattr(sample[0], "mode")):
            raise UserInputError(
                f"torchvision's {type(dataset).__name__} gives samples that are not (image, class index): this "
                "module trains image classifiers; choose a classification set such as MNIST, CIFAR10 or SVHN"
            )
        picture, label = sample
        if not isinstance(label, (int, np.integer)):
            raise UserInputError(
                f"torchvision's {type(dataset).__name__} labels its images with {type(label).__name__}, not a class "
                "index: choose a classification set such as MNIST, CIFAR10 or SVHN"
            )
        pictures.append(image_tensor(picture, 1 if picture.mode in ("L", "1", "I", "F") else 3))
        targets.append(int(label))
    if len({tuple(p.shape) for p in pictures}) > 1:
        raise UserInputError(f"torchvision's {type(dataset).__name__} has images of several sizes; use an image folder")
    return torch.stack(pictures), torch.tensor(targets, dtype=torch.long)


class TorchvisionDataModule(ImageFolderDataModule):
    """A torchvision classification data set by name, through the image folder's in-memory path.

    Args:
        name: the torchvision.datasets class (`MNIST`, `FashionMNIST`, `KMNIST`, `CIFAR100`, `SVHN`, ...).
        data_dir: where torchvision keeps (and downloads) the files.
        download: let torchvision download the set when it is not in data_dir.
        image_size: bring the images to this size (the set's own: 28 for the MNIST family, 32 for CIFAR).
        channels: 1 (grayscale) or 3 (RGB); images of the other kind are converted.
        val_size: training images held out for validation (stratified, seeded): a count or a fraction.
        cache_dir: where the decoded tensors are cached.
        batch_size: training batch size.
        eval_batch_size: validation/test batch size.
        translate: random shift of training images, in pixels (0 turns it off).
        flip: random horizontal flips of training images (off: digits and letters are not symmetric);
            "alternate": airbench's derandomized flips.
        train_subset: train on only this many images (quick runs and tests).
        seed: seed of the validation split and the shuffling.
    """

    def __init__(
        self,
        name: str = "FashionMNIST",
        data_dir: Path = Path("data/torchvision"),
        download: bool = True,
        image_size: int | tuple[int, int] = 28,
        channels: Literal[1, 3] = 1,
        val_size: int | float = 0.1,
        cache_dir: Path = Path("data/cache"),
        batch_size: int = 256,
        eval_batch_size: int = 1000,
        translate: int = 2,
        flip: FlipMode = False,
        train_subset: int | None = None,
        seed: int = 42,
    ) -> None:
        self.name = name
        self.dataset_class = dataset_class(name)
        self.download = download
        self.cache_prefix = f"torchvision-{name.lower()}"
        # torchvision reads a set's whole files when it is constructed: each split once per module.
        self._opened: dict[str, Any] = {}
        self._files: list[Path] | None = None
        super().__init__(
            data_dir=data_dir,
            image_size=image_size,
            channels=channels,
            val_size=val_size,
            cache_dir=cache_dir,
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            translate=translate,
            flip=flip,
            train_subset=train_subset,
            seed=seed,
            streaming=False,
            num_workers=0,
        )

    def _open(self, split: str, download: bool) -> Any:
        """torchvision's data set object for `split` (made once); missing files or a failed download as one line."""
        if split in self._opened:
            return self._opened[split]
        try:
            self._opened[split] = self.dataset_class(
                root=str(self.data_dir), download=download, **split_arguments(self.dataset_class, split)
            )
            return self._opened[split]
        except (OSError, RuntimeError) as error:  # no files (RuntimeError), a failed download (URLError, ...)
            if not self.download:
                raise UserInputError(
                    f"no {self.name} files in {self.data_dir} ({first_line(error)}): copy them there or set "
                    "--data.download true"
                ) from None
            raise UserInputError(
                f"could not download {self.name} into {self.data_dir} ({first_line(error)}). Offline? On a machine "
                f'with internet run `python -c "import torchvision; torchvision.datasets.{self.name}('
                f"'{self.data_dir}', download=True)\"` and copy {self.data_dir} here"
            ) from None

    def _source(self) -> tuple[str, list[Path]]:
        try:
            self._open("train", download=False)
        except UserInputError:  # not there (yet)
            return "none", []
        if self._files is None:  # what names the cache: the set's files as they are now
            self._files = sorted(p for p in self.data_dir.rglob("*") if p.is_file() and p.name != DOWNLOAD_LOCK)
        return "torchvision", self._files

    def _missing_source(self) -> tuple[str, list[Path]]:
        if not self.download:
            self._open("train", download=False)  # the one-line "no files" error
        # LightningCLI reads num_classes while it builds the model, in every process of a DDP run
        # and before any process group: one process downloads, the others wait, then find the files.
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            lock = FileLock(self.data_dir / DOWNLOAD_LOCK)
            lock.acquire()
        except OSError as error:
            raise UserInputError(
                f"cannot download {self.name} into {self.data_dir} ({first_line(error)}): give a writable "
                "--data.data_dir, or copy the files there"
            ) from None
        try:
            self._open("train", download=True)
            self._open("test", download=True)
        finally:
            lock.release()
        return self._source()

    def _read_classes(self) -> None:
        kind, _ = self._source()
        if kind == "none":
            self._missing_source()
        dataset = self._open("train", download=False)
        names = getattr(dataset, "classes", None)
        if not names:
            _, labels = as_uint8_images(dataset)
            names = [str(label) for label in range(int(labels.max()) + 1)]
        self._class_names = [str(name) for name in names]
        self.has_test_split = True

    def _read(self, kind: str) -> tuple[Splits, list[str]]:
        splits = {}
        for split in ("train", "test"):
            images, labels = as_uint8_images(self._open(split, download=False))
            if images.shape[1] == 1 and self.channels == 3:  # grayscale given to an RGB model
                images = images.repeat(1, 3, 1, 1)
            splits[split] = (fit_to_size(to_channels(images, self.channels), self.image_size), labels)
        return splits, []
