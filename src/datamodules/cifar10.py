"""CIFAR-10 as one uint8 tensor on the device, augmented a whole batch at a time."""

import io
from pathlib import Path

import torch
from torchvision.datasets import CIFAR10

from src.checkpointing.atomic_files import write_atomically
from src.datamodules.batch_augment import CIFAR10_MEAN, CIFAR10_STD, normalize, random_flip, random_translate
from src.datamodules.image_sources import (
    CLASSES,
    find_zip,
    read_image_tree,
    read_image_zip,
    read_images_to_predict,
    read_torchvision_batches,
    source_fingerprint,
)
from src.datamodules.in_memory import InMemoryDataModule
from src.errors import UserInputError


class CIFAR10DataModule(InMemoryDataModule):
    """CIFAR-10 from torchvision's batches (downloaded if absent), an image tree or a zip.

    `prepare_data` decodes the source once into a uint8 cache file named after the source's
    fingerprint (rebuilt when the source changes, written atomically); later runs start in
    seconds. `setup` holds out `val_size` training images for validation and moves the
    splits to the accelerator once. Batches are normalised and augmented (flip, translate;
    training only) on the device in `on_after_batch_transfer`; no worker processes.

    Args:
        data_dir: folder with `cifar-10-batches-py/`, `train/<class>/` images or one zip of
            them; or the zip file itself.
        download: let torchvision download the official batches when nothing is found.
        cache_dir: where decoded tensors are cached (a read-only data_dir is fine).
        val_size: training images held out for validation (seeded).
        batch_size: training batch size.
        eval_batch_size: validation/test batch size.
        translate: random shift of training images, in pixels (0 turns it off).
        flip: random horizontal flips of training images.
        train_subset: train on only this many images (quick runs and tests).
        seed: seed of the validation split and the shuffling.
    """

    def __init__(
        self,
        data_dir: Path = Path("data/cifar10"),
        download: bool = True,
        cache_dir: Path = Path("data/cache"),
        val_size: int = 5000,
        batch_size: int = 512,
        eval_batch_size: int = 1000,
        translate: int = 2,
        flip: bool = True,
        train_subset: int | None = None,
        seed: int = 42,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, seed)
        if val_size < 0 or translate < 0 or (train_subset is not None and train_subset < 1):
            raise UserInputError("data.val_size and data.translate must be >= 0, data.train_subset >= 1")
        self.data_dir = Path(data_dir)
        self.download = download
        self.cache_dir = Path(cache_dir)
        self.val_size = val_size
        self.translate = translate
        self.flip = flip
        self.train_subset = train_subset
        self.input_shape = (3, 32, 32)
        self.num_classes = len(CLASSES)
        self.class_names = list(CLASSES)
        self.has_test_split = True

    # --- finding and caching the source -------------------------------------------------
    def _source(self) -> tuple[str, list[Path]]:
        """The kind of source in data_dir and the files whose change invalidates the cache."""
        batches = self.data_dir / CIFAR10.base_folder
        if batches.is_dir():
            return "batches", sorted(p for p in batches.iterdir() if p.is_file())
        if (self.data_dir / "train").is_dir():
            files = [p for p in self.data_dir.glob("*/*/*") if p.is_file() and p.parts[-3] in ("train", "test")]
            return "tree", files
        archive = find_zip(self.data_dir)
        if archive is not None:
            return "zip", [archive]
        return "none", []

    def cache_path(self) -> Path:
        return self._cache_file(*self._source())

    def _cache_file(self, kind: str, files: list[Path]) -> Path:
        return self.cache_dir / f"cifar10-{kind}-{source_fingerprint(files)}.pt"

    def prepare_data(self) -> None:
        if self.trainer is not None and self.trainer.predicting:  # the user's images, not CIFAR-10
            return
        kind, files = self._source()  # one scan: an image tree has 60,000 files to stat
        if kind == "none":
            if not self.download:
                raise UserInputError(
                    f"no CIFAR-10 data in {self.data_dir}: looked for {CIFAR10.base_folder}/, train/<class>/ images "
                    "and a .zip of them. Point --data.data_dir at your copy (e.g. "
                    "../shared/datasets/cifar10-train-jpeg.zip) or set --data.download true to fetch it"
                )
            read_torchvision_batches(self.data_dir, download=True)
            kind, files = self._source()
        cache = self._cache_file(kind, files)
        if cache.is_file():
            return
        if kind == "batches":
            splits = read_torchvision_batches(self.data_dir, download=False)
        elif kind == "tree":
            splits = read_image_tree(self.data_dir)
        else:
            splits = read_image_zip(find_zip(self.data_dir))  # type: ignore[arg-type]
        buffer = io.BytesIO()
        torch.save({name: {"images": x, "labels": y} for name, (x, y) in splits.items()}, buffer)
        cache.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(cache, buffer.getvalue())

    # --- splits on the device -----------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.splits or stage == "predict":  # prediction reads only the user's images
            return
        cache = self.cache_path()
        if not cache.is_file():
            self.prepare_data()
        data = torch.load(cache, weights_only=True)
        images, labels = data["train"]["images"], data["train"]["labels"]
        if self.val_size >= len(images):
            raise UserInputError(f"data.val_size ({self.val_size}) must be below the {len(images)} training images")
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(self.seed))
        val, train = order[: self.val_size], order[self.val_size :]
        if self.train_subset is not None:
            train = train[: self.train_subset]
        splits = {"train": (images[train], labels[train]), "val": (images[val], labels[val])}
        self.has_test_split = "test" in data
        if self.has_test_split:
            splits["test"] = (data["test"]["images"], data["test"]["labels"])
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        self.splits = {name: (x.to(device), y.to(device)) for name, (x, y) in splits.items()}

    def input_normalization(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """For images as float32 RGB in [0, 1] (what exported models take)."""
        return torch.tensor(CIFAR10_MEAN).view(3, 1, 1), torch.tensor(CIFAR10_STD).view(3, 1, 1)

    def read_predict_inputs(self, path: Path) -> tuple[torch.Tensor, dict[str, list[str]]]:
        images, files = read_images_to_predict(path)
        return images, {"file": files}

    def sample_images(self, count: int) -> torch.Tensor:
        """The first `count` training images, normalised as the model sees them (no augmentation)."""
        return normalize(self.splits["train"][0][:count], CIFAR10_MEAN, CIFAR10_STD)

    def test_dataloader(self):  # type: ignore[override]
        if not self.has_test_split:
            raise UserInputError(
                f"{self.data_dir} has no test images (no test/<class>/ folder, no official test batches): "
                "validation accuracy is the held-out figure; give a source with a test split to test"
            )
        return super().test_dataloader()

    def on_after_batch_transfer(self, batch: object, dataloader_idx: int) -> object:
        """Augment (training only) and normalise uint8 image batches where they now are."""
        images, *rest = batch if isinstance(batch, (tuple, list)) else (batch,)
        if self.trainer is not None and self.trainer.training:
            if self.flip:
                images = random_flip(images)
            images = random_translate(images, self.translate)
        images = normalize(images, CIFAR10_MEAN, CIFAR10_STD)
        return (images, *rest) if rest else images
