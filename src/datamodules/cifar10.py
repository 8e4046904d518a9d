"""CIFAR-10: the image-folder module with CIFAR-10's ten classes, its official batches and download."""

from pathlib import Path
from typing import Literal
from urllib.error import HTTPError, URLError

from torchvision.datasets import CIFAR10

from src.datamodules import image_decoding
from src.datamodules.batch_augment import CIFAR10_MEAN, CIFAR10_STD, FlipMode
from src.datamodules.image_decoding import CLASSES, Splits, fit_to_size, read_torchvision_batches, to_channels
from src.datamodules.image_folder import ImageFolderDataModule
from src.errors import UserInputError, first_line


class CIFAR10DataModule(ImageFolderDataModule):
    """CIFAR-10 from torchvision's batches (downloaded if absent), an image tree or a zip.

    The same pipeline as `ImageFolderDataModule` (decoded once into a uint8 cache, the whole
    set on the device, whole-batch flip/translate there), with what CIFAR-10 adds:

    - a third source, torchvision's `cifar-10-batches-py/`, downloaded when nothing is found
      and `download` is on;
    - the ten classes fixed in CIFAR-10's order (airplane ... truck), so a tree or zip with
      other class folders is refused and one with only some of them keeps the others' indices;
    - the published per-channel mean and std (for RGB), and a plain seeded validation split
      (its classes are balanced), as before this module was an image folder: the same
      images and the same numbers as the published CIFAR-10 runs.

    Args:
        data_dir: folder with `cifar-10-batches-py/`, `train/<class>/` images or one zip of
            them; or the zip file itself.
        download: let torchvision download the official batches when nothing is found.
        cache_dir: where decoded tensors are cached (a read-only data_dir is fine).
        val_size: training images held out for validation (seeded): a count or a fraction.
        batch_size: training batch size.
        eval_batch_size: validation/test batch size.
        translate: random shift of training images, in pixels (0 turns it off).
        flip: random horizontal flips of training images; "alternate": airbench's derandomized ones.
        crop_epochs: train the first this many epochs on random `crop_size` crops (cheaper epochs).
        crop_size: the side of those crops, in pixels.
        train_subset: train on only this many images (quick runs and tests).
        seed: seed of the validation split and the shuffling.
        image_size: bring the images to this size (32: CIFAR-10's own, untouched).
        channels: 3 (RGB) or 1 (grayscale).
        skip_bad_images: skip undecodable files of a tree or zip (counted in a printed line).
    """

    cache_prefix = "cifar10"
    fixed_classes = CLASSES
    stratified_validation = False

    def __init__(
        self,
        data_dir: Path = Path("data/cifar10"),
        download: bool = True,
        cache_dir: Path = Path("data/cache"),
        val_size: int | float = 5000,
        batch_size: int = 512,
        eval_batch_size: int = 1000,
        translate: int = 2,
        flip: FlipMode = True,
        crop_epochs: int = 0,
        crop_size: int = 24,
        train_subset: int | None = None,
        seed: int = 42,
        image_size: int | tuple[int, int] = 32,
        channels: Literal[1, 3] = 3,
        skip_bad_images: bool = False,
    ) -> None:
        self.download = download
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
            crop_epochs=crop_epochs,
            crop_size=crop_size,
            skip_bad_images=skip_bad_images,
            train_subset=train_subset,
            seed=seed,
        )

    def _source(self) -> tuple[str, list[Path]]:
        batches = self.data_dir / CIFAR10.base_folder
        if batches.is_dir():
            return "batches", sorted(p for p in batches.iterdir() if p.is_file())
        return super()._source()

    def _missing_source(self) -> tuple[str, list[Path]]:
        if not self.download:
            raise UserInputError(
                f"no CIFAR-10 data in {self.data_dir}: looked for {CIFAR10.base_folder}/, train/<class>/ images "
                "and a .zip of them. Point --data.data_dir at your copy (e.g. "
                "../shared/datasets/cifar10-train-jpeg.zip) or set --data.download true to fetch it"
            )
        try:
            read_torchvision_batches(self.data_dir, download=True)
        except (OSError, RuntimeError) as error:  # URLError, HTTPError, socket errors; a bad md5
            raise UserInputError(self._download_failed(error)) from None
        return self._source()

    def _download_failed(self, error: Exception) -> str:
        """What failed to download, from where, and the forms a copy can be given in instead."""
        # An HTTPError says its status ('HTTP Error 404: Not Found'); other URLErrors keep theirs in reason.
        cause = error.reason if isinstance(error, URLError) and not isinstance(error, HTTPError) else error
        return (
            f"could not download CIFAR-10 from {CIFAR10.url} into {self.data_dir} "
            f"({first_line(cause, 120)}). Offline? Give a copy with --data.data_dir: "
            f"a folder holding {CIFAR10.base_folder}/ (the extracted {CIFAR10.filename}, which may also be put "
            f"unextracted in {self.data_dir}), a train/<class>/ image tree (test/<class>/ optional), or a .zip of "
            "that tree (e.g. --data.data_dir ../shared/datasets/cifar10-train-jpeg.zip)"
        )

    def _read(self, kind: str) -> tuple[Splits, list[str]]:
        if kind != "batches":
            return super()._read(kind)
        splits = image_decoding.read_torchvision_batches(self.data_dir, download=False)
        return {
            name: (fit_to_size(to_channels(images, self.channels), self.image_size), labels)
            for name, (images, labels) in splits.items()
        }, []

    def published_normalization(self) -> tuple[list[float], list[float]] | None:
        """CIFAR-10's published RGB statistics (the normalisation the published runs used);
        grayscale CIFAR-10 is measured like any image folder."""
        return (list(CIFAR10_MEAN), list(CIFAR10_STD)) if self.channels == 3 else None
