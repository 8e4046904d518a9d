"""Any folder of images, one subfolder per class, as one uint8 tensor on the device."""

import hashlib
import io
import json
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import DataLoader

from src.checkpointing.atomic_files import write_atomically
from src.datamodules import image_sources
from src.datamodules.batch_augment import normalize, random_flip, random_translate
from src.datamodules.image_files import (
    UNDECODABLE,
    EpochSampler,
    ImageFiles,
    ResumableStream,
    available_memory,
    training_transform,
)
from src.datamodules.image_sources import Listing, Size, Splits, find_zip, list_tree, list_zip, source_fingerprint
from src.datamodules.in_memory import InMemoryDataModule, training_position
from src.datamodules.splits import stratified_split
from src.datamodules.standardisation import constant_safe_std
from src.errors import UserInputError

CACHE_FORMAT = 2  # bump when the cache file's layout changes
MIN_IMAGE_SIDE = 4  # the smallest image every net of src/modules/nets takes (and the resize handles)


def check_image_size(size: Size, channels: int, batch_size: int) -> None:
    """Refuse an image size no net takes, or one whose training batch (as float32, as the
    model sees it) would not fit in the memory free on this machine."""
    height, width = size
    if min(size) < MIN_IMAGE_SIDE:
        raise UserInputError(
            f"data.image_size {height}x{width} is too small: images need at least {MIN_IMAGE_SIDE} pixels a side for "
            f"the nets' convolutions and pooling; use --data.image_size {MIN_IMAGE_SIDE} or more (32 is the default)"
        )
    batch = batch_size * channels * height * width * 4
    free = available_memory(torch.device("cpu"))
    if batch > free:
        raise UserInputError(
            f"data.image_size {height}x{width} is too large: one batch of {batch_size} images of {channels}x{height}x"
            f"{width} float32 takes {batch / 2**30:,.1f} GiB, more than the {free / 2**30:,.1f} GiB of memory free "
            "here; use a smaller --data.image_size (32 to 512 are usual) or --data.batch_size"
        )


class ImageFolderDataModule(InMemoryDataModule):
    """Image classification from a folder of class folders (or a zip of one):

        my_photos/train/<class>/*.png|jpg|jpeg|bmp|webp|gif   required
        my_photos/val/<class>/*                               optional: else held out from train/
        my_photos/test/<class>/*                              optional: else `test` says there is none

    - Classes are the folder names of `train/`, sorted; they are the model's outputs in that
      order, exposed as `class_names` and `num_classes`, and saved in checkpoints. Images in
      subfolders of a class folder belong to that class (hidden folders are left out).
    - Images of any size and mode (RGB, grayscale, RGBA, palette, CMYK: PIL converts) are
      brought to `image_size`: resized so the shorter side fits (antialiased, aspect ratio
      kept), then center-cropped; `channels` 3 (RGB) or 1 (grayscale).
    - `prepare_data` decodes the source once into a uint8 cache file named after the source's
      fingerprint and these settings (rebuilt when a file or a setting changes, written
      atomically); later runs start in seconds. `setup` holds out a seeded, stratified
      validation split when there is no `val/` and moves every split to the accelerator once.
    - Per-channel mean and std are measured on the training split, saved in checkpoints
      (with the classes, image size and channels), and used by `predict` and `export`.
    - Batches are normalised and augmented (random flip and translation; training only) on
      the device, a whole batch at a time, in `on_after_batch_transfer`; no worker processes.
    - Streaming, for sets that do not fit: `num_workers` DataLoader processes read, decode,
      resize and augment (torchvision.transforms.v2: the same flip and reflected shift) each
      image when it is needed; no image is cached; batches are normalised on the device. Chosen
      by `streaming: true`, or automatically (`null`) when the decoded set would take more than
      half the memory free where it would be held (the GPU's, or the host's). A printed line
      says which path runs and why. Mean and std are measured on every training image in one
      pass of the workers and kept in `cache_dir`; a run resumed mid-epoch trains the batches
      that remained (`ResumableStream`), though the workers' random augmentation is not replayed.

    Args:
        data_dir: the folder holding `train/`, or a zip of it (or a folder holding one zip).
        image_size: side of the square images the model sees, or (height, width); at least 4,
            and small enough for a training batch of them to fit in memory.
        channels: 3 for RGB, 1 for grayscale.
        val_size: with no `val/` folder, the training images held out for validation: a
            count (500) or a fraction (0.1); stratified by class and seeded.
        cache_dir: where decoded tensors are cached (a read-only data_dir is fine).
        batch_size: training batch size.
        eval_batch_size: validation/test batch size.
        translate: random shift of training images, in pixels (0 turns it off).
        flip: random horizontal flips of training images (off for digits, text, ...).
        skip_bad_images: skip files that cannot be decoded instead of stopping at the first
            with its name (counted in a printed line; the streaming path names each where it
            meets it, replaces it in training and drops it in evaluation: see ImageFiles).
        train_subset: train on only this many images (quick runs and tests).
        seed: seed of the validation split and the shuffling.
        streaming: read files on the fly (true), hold the decoded set in memory (false), or
            choose by the memory estimate (null).
        num_workers: DataLoader worker processes of the streaming path (null: the CPU count, at most 8).
    """

    cache_prefix = "images"
    fixed_classes: tuple[str, ...] | None = None  # a data set with known classes (CIFAR-10) names them
    stratified_validation = True

    def __init__(
        self,
        data_dir: Path,
        image_size: int | tuple[int, int] = 32,
        channels: Literal[1, 3] = 3,
        val_size: int | float = 0.1,
        cache_dir: Path = Path("data/cache"),
        batch_size: int = 128,
        eval_batch_size: int = 1000,
        translate: int = 2,
        flip: bool = True,
        skip_bad_images: bool = False,
        train_subset: int | None = None,
        seed: int = 42,
        streaming: bool | None = None,
        num_workers: int | None = None,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, seed)
        if num_workers is not None and num_workers < 0:
            raise UserInputError(f"data.num_workers must be >= 0, got {num_workers}")
        self.streaming = streaming
        self.num_workers = min(8, os.cpu_count() or 1) if num_workers is None else num_workers
        self.streams: dict[str, ImageFiles] = {}  # the streaming path's data sets, per split
        self.data_path: str | None = None  # "in memory" or "streaming", once decided
        if val_size < 0 or translate < 0 or (train_subset is not None and train_subset < 1):
            raise UserInputError("data.val_size and data.translate must be >= 0, data.train_subset >= 1")
        if isinstance(val_size, float) and val_size >= 1:
            raise UserInputError(f"data.val_size as a fraction must be below 1, got {val_size}")
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if len(size) != 2 or min(size) < 1:
            raise UserInputError(f"data.image_size must be a positive size or [height, width], got {image_size}")
        if channels not in (1, 3):
            raise UserInputError(f"data.channels must be 1 (grayscale) or 3 (RGB), got {channels}")
        check_image_size((int(size[0]), int(size[1])), channels, batch_size)
        self.data_dir = Path(data_dir)
        self.cache_dir = Path(cache_dir)
        self.image_size: Size = (int(size[0]), int(size[1]))
        self.channels = channels
        self.val_size = val_size
        self.translate = translate
        self.flip = flip
        self.skip_bad_images = skip_bad_images
        self.train_subset = train_subset
        self.input_shape = (channels, *self.image_size)
        self.mean: list[float] | None = None  # per channel, of pixels in [0, 1]: fitted in setup or loaded
        self.std: list[float] | None = None
        self._listings: dict[str, Listing] = {}
        # The model's outputs: fixed, restored from a checkpoint, or train/'s folders (read when first asked).
        self._class_names = list(self.fixed_classes) if self.fixed_classes is not None else None
        self.has_test_split = True  # until the source says otherwise

    @property
    def class_names(self) -> list[str]:
        if self._class_names is None:
            self._read_classes()
        return self._class_names  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def _read_classes(self) -> None:
        """The class folders of train/ (sorted), checked, and whether there is a test/."""
        kind, _ = self._source()
        if kind == "none":
            raise UserInputError(
                f"no images in {self.data_dir}: expected {self.data_dir}/train/<class>/<images> "
                "(optionally val/ and test/ beside train/), or a .zip of that tree"
            )
        listing = self._listing(kind)
        self._class_names = sorted(listing.get("train", {}))
        self.check_listing(listing)
        self.has_test_split = "test" in listing

    # --- finding, checking and caching the source -----------------------------------------
    def _source(self) -> tuple[str, list[Path]]:
        """The kind of source in data_dir and the files whose change invalidates the cache."""
        if self.data_dir.is_dir() and not os.access(self.data_dir, os.R_OK | os.X_OK):
            raise UserInputError(
                f"cannot read {self.data_dir}: Permission denied; give this user read access "
                f"(chmod -R a+rX {self.data_dir}) or copy the images somewhere readable"
            )
        # A trained model's test (classes restored from its checkpoint) needs only test/.
        if (self.data_dir / "train").is_dir() or (self.restored and (self.data_dir / "test").is_dir()):
            listing = self._listing("tree")
            names = [name for folders in listing.values() for images in folders.values() for name in images]
            return "tree", [self.data_dir / name for name in names]
        archive = find_zip(self.data_dir)
        if archive is not None:
            return "zip", [archive]
        return "none", []

    def _listing(self, kind: str) -> Listing:
        if kind not in self._listings:
            if kind == "tree":
                self._listings[kind] = list_tree(self.data_dir)
            else:
                self._listings[kind] = list_zip(find_zip(self.data_dir))  # type: ignore[arg-type]
        return self._listings[kind]

    def check_listing(self, listing: Listing) -> None:
        """One clear error for a source the model cannot learn from: no train/ classes, one class,
        a class folder without images, a val/ or test/ class that train/ lacks."""
        where = self.data_dir
        train = listing.get("train", {})
        if not train and not self.restored:
            raise UserInputError(f"{where} has no train/<class>/ folders of images")
        if self.fixed_classes is None and not self.restored and len(train) < 2:
            raise UserInputError(
                f"{where}/train has a single class folder ({next(iter(train))}): a classifier needs at least two"
            )
        for split, folders in listing.items():
            for label, names in folders.items():
                if label not in self.class_names:
                    known = (
                        f"CIFAR-10's classes are {', '.join(self.class_names)}"
                        if self.fixed_classes is not None and self.cache_prefix == "cifar10"
                        else f"the model's classes (from its checkpoint) are {', '.join(self.class_names)}"
                        if self.restored
                        else f"the classes are train/'s folders: {', '.join(self.class_names)}"
                    )
                    raise UserInputError(f"unknown class folder {label!r} ({split}/{label}/ in {where}): {known}")
                if not names:
                    raise UserInputError(
                        f"class folder {split}/{label} in {where} has no images "
                        f"({', '.join(image_sources.IMAGE_SUFFIXES)}): add some or remove the folder"
                    )

    def _settings(self) -> str:
        return (
            f"format {CACHE_FORMAT}|size {self.image_size}|channels {self.channels}|"
            f"skip_bad {self.skip_bad_images}|classes {self.class_names}"
        )

    def _cache_file(self, kind: str, files: list[Path]) -> Path:
        """Named after the source files' sizes and times and the settings; for a zip, whose one
        file says nothing of which members are read, also after the members listed."""
        settings = self._settings()
        if kind == "zip":
            names = "\n".join(name for folders in self._listing(kind).values() for n in folders.values() for name in n)
            settings += f"|listed {hashlib.sha256(names.encode()).hexdigest()}"
        return self.cache_dir / f"{self.cache_prefix}-{kind}-{source_fingerprint(files, settings)}.pt"

    def cache_path(self) -> Path:
        return self._cache_file(*self._source())

    def _missing_source(self) -> tuple[str, list[Path]]:
        """What to do when data_dir holds nothing: subclasses may download; here it is an error."""
        raise UserInputError(f"no images in {self.data_dir}: expected train/<class>/<images> or a .zip of that tree")

    def _read(self, kind: str) -> tuple[Splits, list[str]]:
        """Decode the whole source: its splits, and the files skipped as undecodable."""
        listing = self._listing(kind)
        self.check_listing(listing)
        args = (listing, self.class_names, self.image_size, self.channels, self.skip_bad_images)
        if kind == "tree":
            return image_sources.read_image_tree(self.data_dir, *args)
        return image_sources.read_image_zip(find_zip(self.data_dir), *args)  # type: ignore[arg-type]

    def prepare_data(self) -> None:
        if self.trainer is not None and self.trainer.predicting:  # the user's images, not the training set
            return
        if self.trainer is not None and self.trainer.testing and self.restored:  # setup reads test/ only
            return
        kind, files = self._source()  # one scan: a tree of 60,000 files takes a while to stat
        if kind == "none":
            kind, files = self._missing_source()
        if self._streams(kind):
            return  # nothing to decode ahead: the workers read the files
        cache = self._cache_file(kind, files)
        if cache.is_file():
            return
        started = time.perf_counter()
        splits, skipped = self._read(kind)
        if "train" not in splits:
            raise UserInputError(f"no image of {self.data_dir}/train could be decoded ({len(skipped)} skipped)")
        record: dict[str, object] = {name: {"images": x, "labels": y} for name, (x, y) in splits.items()}
        record["skipped"] = skipped
        buffer = io.BytesIO()
        torch.save(record, buffer)
        cache.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(cache, buffer.getvalue())
        count = sum(len(labels) for _, labels in splits.values())
        self._announce(
            f"Decoded {count:,} images in {time.perf_counter() - started:.1f} s into {cache} "
            "(once: later runs with the same files and settings load it in about a second)"
        )

    # --- splits on the device -------------------------------------------------------------
    def _subset(self, count: int) -> torch.Tensor:
        """`train_subset` positions out of `count`, drawn with the data's seed, in stored order."""
        return torch.randperm(count, generator=torch.Generator().manual_seed(self.seed))[: self.train_subset].sort()[0]

    def _held_out(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(train, val) indices: `val_size` images (or that fraction) held out, seeded; stratified:
        each class gives its share (rounded), so small classes keep their proportion."""
        count = round(self.val_size * len(labels)) if isinstance(self.val_size, float) else self.val_size
        if count >= len(labels):
            raise UserInputError(f"data.val_size ({self.val_size}) must be below the {len(labels)} training images")
        generator = torch.Generator().manual_seed(self.seed)
        if not self.stratified_validation:
            order = torch.randperm(len(labels), generator=generator)
            return order[count:], order[:count]
        val, train = stratified_split(
            labels,
            [count],
            self.class_names,
            lambda members: members[torch.randperm(len(members), generator=generator)],
            "training image(s)",
            "add images or lower data.val_size",
        )
        return train, val

    def published_normalization(self) -> tuple[list[float], list[float]] | None:
        """A data set's published mean and std, used instead of measuring them; None here."""
        return None

    def fit_normalization(self, batches: Iterable[torch.Tensor]) -> tuple[list[float], list[float]]:
        """Per-channel mean and std of the pixels in [0, 1] of the training images, given as
        uint8 batches (N x C x H x W), summed in float64 one batch at a time: no float copy.
        A channel constant on them (a blank one) keeps std 1, as a constant feature column does."""
        total = squares = low = high = None
        count = 0
        for batch in batches:
            pixels = batch.to(torch.float64).transpose(0, 1).flatten(1) / 255
            total = pixels.sum(1) if total is None else total + pixels.sum(1)
            squares = pixels.square().sum(1) if squares is None else squares + pixels.square().sum(1)
            low = pixels.amin(1) if low is None else torch.minimum(low, pixels.amin(1))
            high = pixels.amax(1) if high is None else torch.maximum(high, pixels.amax(1))
            count += pixels.shape[1]
        if total is None or squares is None or low is None or high is None:
            raise UserInputError(f"no training image of {self.data_dir} could be decoded")
        mean = total / count
        std = (squares / count - mean.square()).clamp_min(0).sqrt()
        return mean.tolist(), constant_safe_std(std, low == high).tolist()

    def _announce(self, message: str) -> None:
        if self.trainer is None or self.trainer.is_global_zero:
            print(message, flush=True)

    def _streams(self, kind: str) -> bool:
        """Whether this run reads files on the fly; decided (and said) once."""
        if self.data_path is not None:  # decided
            return self.data_path == "streaming"
        if kind not in ("tree", "zip"):  # CIFAR-10's batches are one file, in memory anyway
            decision = False
            reason = "the source is one file of arrays"
        else:
            count = sum(len(names) for folders in self._listing(kind).values() for names in folders.values())
            needed = count * self.channels * self.image_size[0] * self.image_size[1]
            device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
            free = min(available_memory(torch.device("cpu")), available_memory(device))
            estimate = f"{count:,} images x {'x'.join(map(str, self.input_shape))} uint8 = {needed / 2**20:,.1f} MiB"
            where = f"{free / 2**30:,.1f} GiB free on {device.type}"
            if self.streaming is None:
                decision = needed > free / 2
                reason = f"{estimate}, {'more' if decision else 'less'} than half of the {where}"
            else:
                decision = self.streaming
                reason = f"data.streaming {str(decision).lower()}; {estimate}, {where}"
        self.data_path = "streaming" if decision else "in memory"
        if decision:
            self._announce(
                f"Data path: streaming from files ({reason}): {self.num_workers} DataLoader workers decode, "
                "resize and augment each batch"
            )
        else:
            self._announce(
                f"Data path: in memory ({reason}): decoded once into a cache, augmented on the device by whole batches"
            )
        return decision

    def _setup_streaming(self, kind: str, files: list[Path]) -> None:
        listing = self._listing(kind)
        self.check_listing(listing)
        root = self.data_dir if kind == "tree" else find_zip(self.data_dir)
        items = {
            split: [(name, self.class_names.index(label)) for label, names in folders.items() for name in names]
            for split, folders in listing.items()
        }
        train_items = items["train"]
        if "val" not in items:
            labels = torch.tensor([label for _, label in train_items], dtype=torch.long)
            train, val = self._held_out(labels)
            items["val"] = [train_items[i] for i in val.tolist()]
            train_items = [train_items[i] for i in train.tolist()]
        if self.train_subset is not None:  # a seeded random subset: the items are stored class by class
            chosen = self._subset(len(train_items))
            train_items = [train_items[i] for i in chosen.tolist()]
        items["train"] = train_items
        transform = training_transform(self.image_size, self.translate, self.flip)
        self.streams = {
            split: ImageFiles(
                root,  # type: ignore[arg-type]
                chosen,
                self.image_size,
                self.channels,
                transform if split == "train" else None,
                skip_bad=self.skip_bad_images,
                replace_bad=split == "train",
            )
            for split, chosen in items.items()
        }
        self.has_test_split = "test" in items
        self.mean, self.std = self.published_normalization() or self._streamed_normalization(
            self._cache_file(kind, files)
        )

    def _streamed_normalization(self, source_cache: Path) -> tuple[list[float], list[float]]:
        """fit_normalization over every training image, read once by the DataLoader workers
        (undecodable ones left out with skip_bad_images); kept in the cache folder under the
        source's fingerprint and the training split's files, so later runs read two lists."""
        train = self.streams["train"]
        split = hashlib.sha256("\n".join(name for name, _ in train.items).encode()).hexdigest()[:16]
        path = source_cache.with_name(f"{source_cache.stem}-mean-std-{split}.json")
        if path.is_file():
            stored = json.loads(path.read_text())
            return stored["mean"], stored["std"]
        self._announce(f"Measuring the mean/std of the {len(train):,} training images: one pass over the files")
        started = time.perf_counter()
        plain = ImageFiles(train.root, train.items, self.image_size, self.channels, skip_bad=self.skip_bad_images)
        loader = DataLoader(plain, batch_size=256, num_workers=self.num_workers)
        counted = [0]

        def decodable() -> Iterator[torch.Tensor]:
            for images, labels in loader:
                kept = images[labels != UNDECODABLE]
                counted[0] += len(kept)
                if len(kept):
                    yield kept

        mean, std = self.fit_normalization(decodable())
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, json.dumps({"mean": mean, "std": std}).encode())
        self._announce(
            f"Mean/std of the {counted[0]:,} training images ready in {time.perf_counter() - started:.1f} s "
            f"(kept in {path})"
        )
        return mean, std

    def _decodable(self, indices: list[int]) -> list[torch.Tensor]:
        """The streamed training images at `indices` (before augmentation); with skip_bad_images
        the undecodable ones are left out and named, else the first one ends the run."""
        images = [image for image in map(self.streams["train"].decodable_image, indices) if image is not None]
        if not images:
            raise UserInputError(f"no training image of {self.data_dir} could be decoded")
        return images

    def setup(self, stage: str | None = None) -> None:
        if self.splits or self.streams or stage == "predict":  # prediction reads only the user's images
            return
        if stage == "test" and self.restored:
            self._setup_restored_test()
            return
        kind, files = self._source()
        if kind == "none":
            kind, files = self._missing_source()
        streaming = self._streams(kind)
        if self.trainer is not None and self.trainer.world_size > 1:
            # Free memory differs between processes: every rank takes rank 0's path, so all
            # ranks run the same number of batches.
            streaming = bool(self.trainer.strategy.broadcast(streaming, src=0))
            self.data_path = "streaming" if streaming else "in memory"
        if streaming:
            self._setup_streaming(kind, files)
            return
        cache = self.cache_path()
        if not cache.is_file():
            self.prepare_data()
            cache = self.cache_path()
        data = torch.load(cache, weights_only=True)
        skipped = data.pop("skipped", [])
        if skipped:
            shown = ", ".join(skipped[:3]) + (", ..." if len(skipped) > 3 else "")
            self._announce(f"Skipped {len(skipped)} image(s) that could not be decoded (data.skip_bad_images): {shown}")
        images, labels = data["train"]["images"], data["train"]["labels"]
        if "val" in data:
            train, splits = torch.arange(len(images)), {"val": (data["val"]["images"], data["val"]["labels"])}
        else:
            train, val = self._held_out(labels)
            splits = {"val": (images[val], labels[val])}
        if self.train_subset is not None:  # a seeded random subset: the images are stored class by class
            train = train[self._subset(len(train))]
        splits["train"] = (images[train], labels[train])
        self.has_test_split = "test" in data
        if self.has_test_split:
            splits["test"] = (data["test"]["images"], data["test"]["labels"])
        if not self.restored:  # a trained model keeps the standardisation it was trained with
            self.mean, self.std = self.published_normalization() or self.fit_normalization(
                splits["train"][0].split(4096)
            )
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        self.splits = {name: (x.to(device), y.to(device)) for name, (x, y) in splits.items()}

    def _setup_restored_test(self) -> None:
        """A trained model's test: only the test/ images of data_dir (a tree or a zip), labelled with the
        checkpoint's classes; no train/ is needed and nothing is cached."""
        kind, _ = self._source()
        if kind == "none" and self.fixed_classes is None:
            raise UserInputError(
                f"no images in {self.data_dir}: to test a trained model give a folder holding test/<class>/<images> "
                f"(classes: {', '.join(self.class_names)}), or a .zip of it"
            )
        if kind not in ("tree", "zip"):  # CIFAR-10's batches (or its download): decoded whole, as in training
            self.setup("fit")
            return
        listing = self._listing(kind)
        if "test" not in listing:
            raise UserInputError(
                f"{self.data_dir} has no test images (no test/<class>/ folder): put the labelled images to test "
                f"in {self.data_dir}/test/<class>/ (the model's classes: {', '.join(self.class_names)})"
            )
        self.check_listing({"test": listing["test"]})
        args = ({"test": listing["test"]}, self.class_names, self.image_size, self.channels, self.skip_bad_images)
        if kind == "tree":
            splits, _ = image_sources.read_image_tree(self.data_dir, *args)
        else:
            splits, _ = image_sources.read_image_zip(find_zip(self.data_dir), *args)  # type: ignore[arg-type]
        if "test" not in splits:
            raise UserInputError(f"no test image of {self.data_dir} could be decoded")
        self.has_test_split = True
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        self.splits = {"test": (splits["test"][0].to(device), splits["test"][1].to(device))}

    # --- what the checkpoint keeps, so prediction and export need no training data ----------
    def state_dict(self) -> dict[str, object]:
        return {
            "class_names": list(self.class_names),
            "image_size": list(self.image_size),
            "channels": self.channels,
            "mean": self.mean,
            "std": self.std,
        }

    def load_state_dict(self, state_dict: dict[str, object]) -> None:
        if "class_names" not in state_dict:  # a checkpoint from before the data module kept its state
            return
        saved = list(state_dict["class_names"])  # type: ignore[call-overload]
        if self._class_names is not None and saved != self._class_names:
            raise UserInputError(
                f"the checkpoint was trained on the classes {saved}, but {self.data_dir} has {self.class_names}; "
                "use the training run's data_dir"
            )
        size = tuple(state_dict["image_size"])  # type: ignore[call-overload]
        if size != self.image_size or state_dict["channels"] != self.channels:
            raise UserInputError(
                f"the checkpoint was trained on {state_dict['channels']} x {size[0]} x {size[1]} images; "
                f"give the same --data.image_size [{size[0]}, {size[1]}] and --data.channels {state_dict['channels']}"
            )
        self._class_names = saved
        if state_dict["mean"] is not None:
            self.mean, self.std = list(state_dict["mean"]), list(state_dict["std"])  # type: ignore[call-overload]
            self.restored = True

    def _normalization(self) -> tuple[list[float], list[float]]:
        if self.mean is None or self.std is None:  # no checkpoint state: measure the training split
            self.setup("fit")
        return self.mean, self.std  # type: ignore[return-value]

    def input_normalization(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """For images as float32 in [0, 1], C x H x W (what exported models take)."""
        mean, std = self._normalization()
        return torch.tensor(mean).view(-1, 1, 1), torch.tensor(std).view(-1, 1, 1)

    def preprocessing(self) -> dict[str, object]:
        """How a user's image becomes the model's input (written into exported model.json)."""
        return {
            "image_size": list(self.image_size),
            "channels": self.channels,
            "resize": "resize so the image covers image_size (aspect ratio kept, antialiased), then center crop",
            "color": "RGB" if self.channels == 3 else "grayscale (ITU-R 601-2 luma, PIL's 'L')",
        }

    # --- batches ----------------------------------------------------------------------------
    def sample_images(self, count: int) -> torch.Tensor:
        """The first `count` training images, normalised as the model sees them (no augmentation)."""
        if self.streams:
            images = torch.stack(self._decodable(list(range(min(count, len(self.streams["train"]))))))
        else:
            images = self.splits["train"][0][:count]
        return normalize(images, *self._normalization())

    def _stream_loader(self, split: str, batch_size: int | None, shuffle: bool) -> DataLoader | ResumableStream:
        workers = self.num_workers
        dataset = self.streams[split]
        trainer = self.trainer
        # Training order from (seed, epoch), each rank its shard: a resumed run, mid-epoch or
        # at a boundary, trains the batches an uninterrupted one would have (ResumableStream).
        sampler = None
        if shuffle:
            ranks = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
            sampler = EpochSampler(dataset, num_replicas=ranks[0], rank=ranks[1], seed=self.seed)
        loader = DataLoader(
            dataset,
            batch_size=batch_size or len(dataset),
            sampler=sampler,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=trainer is not None and trainer.strategy.root_device.type == "cuda",
        )
        if sampler is None:
            return loader
        return ResumableStream(loader, sampler, training_position(trainer) if trainer is not None else None)

    def train_dataloader(self):  # type: ignore[override]
        if self.streams:  # `trainer.overfit_batches` trains the same first batches every epoch
            overfitting = self.trainer is not None and bool(self.trainer.overfit_batches)
            return self._stream_loader("train", self.batch_size, shuffle=not overfitting)
        return super().train_dataloader()

    def val_dataloader(self):  # type: ignore[override]
        if self.streams:
            return self._stream_loader("val", self.eval_batch_size, shuffle=False)
        return super().val_dataloader()

    def test_dataloader(self):  # type: ignore[override]
        if not self.has_test_split:
            raise UserInputError(
                f"{self.data_dir} has no test images (no test/<class>/ folder): validation accuracy is the "
                "held-out figure; add test/<class>/ images to test"
            )
        if self.streams:
            return self._stream_loader("test", self.eval_batch_size, shuffle=False)
        return super().test_dataloader()

    def on_before_batch_transfer(self, batch: object, dataloader_idx: int) -> object:
        """Streaming with skip_bad_images: drop the evaluation items marked undecodable (on the
        host, before the transfer). A batch of nothing but such items comes out empty, and
        the modules' evaluation steps count it for nothing."""
        if not (self.streams and self.skip_bad_images and isinstance(batch, (tuple, list)) and len(batch) == 2):
            return batch
        images, labels = batch
        keep = labels != UNDECODABLE
        return batch if bool(keep.all()) else (images[keep], labels[keep])

    def on_after_batch_transfer(self, batch: object, dataloader_idx: int) -> object:
        """Augment (training only) and normalise uint8 image batches where they now are."""
        images, *rest = batch if isinstance(batch, (tuple, list)) else (batch,)
        if self.trainer is not None and self.trainer.training and not self.streams:  # streams: workers augmented
            if self.flip:
                images = random_flip(images)
            images = random_translate(images, self.translate)
        images = normalize(images, *self._normalization())
        return (images, *rest) if rest else images
