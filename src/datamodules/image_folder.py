"""Any folder of images, one subfolder per class, as one uint8 tensor on the device."""

import hashlib
import os
import time
from pathlib import Path
from typing import Literal

import torch

from src.datamodules import image_decoding
from src.datamodules.batch_augment import FlipMode, normalize, random_crop
from src.datamodules.image_decoding import (
    Listing,
    Size,
    Splits,
    check_split_names,
    find_zip,
    list_tree,
    list_zip,
    preprocessing_record,
    source_fingerprint,
)
from src.datamodules.image_folder_in_memory import InMemoryImages, read_cache, write_cache
from src.datamodules.image_folder_streaming import StreamingImages
from src.datamodules.in_memory import InMemoryDataModule, empty_split
from src.datamodules.splits import name_rank, stratified_split
from src.datamodules.standardisation import fit_pixel_standardisation
from src.errors import UserInputError, first_line

# How the validation images are held out (state_dict records it: a run resumed from a checkpoint of
# another scheme is told its validation images changed).
VALIDATION_SPLIT = "seeded hash of file names"
CACHE_FORMAT = 3  # bump when the cache file's layout or the decoding changes (3: EXIF orientation, 16-bit)
MIN_IMAGE_SIDE = 4  # the smallest image every net of src/modules/nets takes (and the resize handles)


def available_memory(device: torch.device) -> int:
    """Bytes free where the in-memory path would hold the images: the GPU's free memory, else
    the host's available memory (MemAvailable; the physical pages free where /proc is absent)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


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
            count (500) or a fraction (0.1); stratified by class and seeded by file name (images
            added later leave the others in their split).
        cache_dir: where decoded tensors are cached (a read-only data_dir is fine).
        batch_size: training batch size.
        eval_batch_size: validation/test batch size.
        translate: random shift of training images, in pixels (0 turns it off).
        flip: random horizontal flips of training images (off for digits, text, ...);
            "alternate": airbench's derandomized flips, each image mirrored every other epoch
            (in memory; the streaming path flips at random, and says so).
        crop_epochs: train the first this many epochs on random `crop_size` crops of the images:
            the same scale, fewer pixels, so those epochs cost less (progressive resizing; a net
            that pools globally, as AirbenchNet does, takes any size). 0: never.
        crop_size: the side of those crops, in pixels.
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
    SPLIT_OPTIONS = "data.val_size"
    fixed_classes: tuple[str, ...] | None = None  # a data set with known classes (CIFAR-10) names them
    stratified_validation = True
    validation_held_out = False  # set up with validation images held out of train/ (no val/ folder)

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
        flip: FlipMode = True,
        crop_epochs: int = 0,
        crop_size: int = 24,
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
        self.images: InMemoryImages | StreamingImages | None = None  # the chosen path's splits, set up in setup()
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
        if translate >= min(size):  # the shift reflects the borders, which needs a margin inside the image
            raise UserInputError(
                f"data.translate must be below the image side ({min(size)} pixels, image_size {image_size}), "
                f"got {translate}: lower data.translate"
            )
        if crop_epochs < 0 or (crop_epochs and not 0 < crop_size < min(size)):
            raise UserInputError(
                f"data.crop_epochs must be >= 0 and data.crop_size between 1 and the image size - 1 "
                f"(image_size {image_size}), got crop_epochs {crop_epochs}, crop_size {crop_size}"
            )
        self.data_dir = Path(data_dir)
        self.cache_dir = Path(cache_dir)
        self.image_size: Size = (int(size[0]), int(size[1]))
        self.channels = channels
        self.val_size = val_size
        self.translate = translate
        self.flip = flip
        self.crop_epochs = crop_epochs
        self.crop_size = crop_size
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
            where = "does not exist" if not Path(self.data_dir).exists() else "has no train/<class>/ images"
            raise UserInputError(
                f"--data.data_dir {self.data_dir} {where}: expected {self.data_dir}/train/<class>/<images> "
                "(optionally val/ and test/ beside train/), or a .zip of that tree; give your folder with "
                "--data.data_dir"
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
            others: list[str] = []
            if kind == "tree":
                self._listings[kind] = list_tree(self.data_dir, others)
            else:
                self._listings[kind] = list_zip(find_zip(self.data_dir), others)  # type: ignore[arg-type]
            if others:
                shown = ", ".join(sorted(others)[:3]) + (", ..." if len(others) > 3 else "")
                self._announce(
                    f"Left out {len(others)} image(s) in formats not read here ({shown}): convert them to "
                    f"{image_decoding.FORMAT_NAMES} to use them"
                )
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
                        f"({', '.join(image_decoding.IMAGE_SUFFIXES)}): add some or remove the folder"
                    )

    def _settings(self, classes: bool = True) -> str:
        decoding = (
            f"format {CACHE_FORMAT}|size {self.image_size}|channels {self.channels}|skip_bad {self.skip_bad_images}"
        )
        return f"{decoding}|classes {self.class_names}" if classes else decoding

    def _cache_file(self, kind: str, files: list[Path]) -> Path:
        """Named after the source files' sizes and times and the settings; for a zip, whose one
        file says nothing of which members are read, also after the members listed."""
        settings = self._settings()
        if kind == "zip":
            names = "\n".join(name for folders in self._listing(kind).values() for n in folders.values() for name in n)
            settings += f"|listed {hashlib.sha256(names.encode()).hexdigest()}"
        return self.cache_dir / f"{self._cache_family(kind)}-{source_fingerprint(files, settings)}.pt"

    def _cache_family(self, kind: str) -> str:
        """The start of the cache names of this source (the folder, or the zip) at these settings, whatever
        its files hold: a cache of the family that is not today's can never be read again."""
        where = find_zip(self.data_dir) if kind == "zip" else self.data_dir
        identity = f"{Path(str(where)).resolve()}|{self._settings(classes=False)}".encode("utf-8", "surrogateescape")
        return f"{self.cache_prefix}-{kind}-{hashlib.sha256(identity).hexdigest()[:8]}"

    def _remove_stale_caches(self, kind: str, kept: Path) -> None:
        """Delete this source's caches from before its files changed (each a full copy of the decoded
        images), so editing the folder does not fill the disk; other sources' and settings' stay."""
        stale = []
        for path in self.cache_dir.glob(f"{self._cache_family(kind)}-*.pt"):
            try:
                if path != kept:
                    path.unlink(missing_ok=True)
                    stale.append(path)
            except OSError:  # another user's file in a shared cache folder: theirs to remove
                continue
        if stale:
            self._announce(f"Removed {len(stale)} cache file(s) of {self.data_dir} from before its files changed")

    def cache_path(self) -> Path:
        return self._cache_file(*self._source())

    def _missing_source(self) -> tuple[str, list[Path]]:
        """What to do when data_dir holds nothing: subclasses may download; here it is an error."""
        if self.data_dir.is_dir():  # Train/ or training/: named as it should be
            names = [path.name for path in self.data_dir.iterdir() if path.is_dir()]
            check_split_names(names, str(self.data_dir), self.data_dir)
        raise UserInputError(f"no images in {self.data_dir}: expected train/<class>/<images> or a .zip of that tree")

    def _read(self, kind: str) -> tuple[Splits, list[str]]:
        """Decode the whole source: its splits, and the files skipped as undecodable."""
        listing = self._listing(kind)
        self.check_listing(listing)
        args = (listing, self.class_names, self.image_size, self.channels, self.skip_bad_images)
        if kind == "tree":
            return image_decoding.read_image_tree(self.data_dir, *args)
        return image_decoding.read_image_zip(find_zip(self.data_dir), *args)  # type: ignore[arg-type]

    def prepare_data(self) -> None:
        if self.trainer is not None and self.trainer.predicting:  # the user's images, not the training set
            return
        if self.trainer is not None and self.trainer.testing and self.restored:  # setup reads test/ only
            return
        kind, files = self._source()  # one scan: a tree of 60,000 files takes a while to stat
        if kind == "none":
            kind, files = self._missing_source()
        if self._chooses_streaming(kind):
            # Nothing to decode ahead (the workers read the files), but the mean/std of the training
            # images is measured here, once per machine, and kept: every rank's setup reads it. A
            # trained model's data state brings its own.
            if not self.restored:
                self._setup_streaming(kind, files)
            return
        cache = self._cache_file(kind, files)
        if cache.is_file():
            return
        started = time.perf_counter()
        splits, skipped = self._read(kind)
        if "train" not in splits:
            raise UserInputError(f"no image of {self.data_dir}/train could be decoded ({len(skipped)} skipped)")
        write_cache(cache, splits, skipped)
        self._remove_stale_caches(kind, cache)
        count = sum(len(labels) for _, labels in splits.values())
        self._announce(
            f"Decoded {count:,} images in {time.perf_counter() - started:.1f} s into {cache} "
            "(once: later runs with the same files and settings load it in about a second)"
        )

    # --- splits, and the path that holds them ------------------------------------------------------------------
    def _subset(self, count: int) -> torch.Tensor:
        """`train_subset` positions out of `count`, drawn with the data's seed, in stored order."""
        return torch.randperm(count, generator=torch.Generator().manual_seed(self.seed))[: self.train_subset].sort()[0]

    def _held_out(self, labels: torch.Tensor, names: list[str] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(train, val) indices: `val_size` images (or that fraction) held out, seeded; stratified:
        each class gives its share (rounded), so small classes keep their proportion. Given the
        images' file `names`, each class holds out the files first in the order of a seeded hash of
        their names: adding or removing images leaves the others where they were (a seeded shuffle
        would deal every class out anew, and a resumed run would train on images it validated on)."""
        count = round(self.val_size * len(labels)) if isinstance(self.val_size, float) else self.val_size
        if count >= len(labels):
            raise UserInputError(f"data.val_size ({self.val_size}) must be below the {len(labels)} training images")
        generator = torch.Generator().manual_seed(self.seed)
        if not self.stratified_validation:
            order = torch.randperm(len(labels), generator=generator)
            return order[count:], order[:count]

        def order(members: torch.Tensor) -> torch.Tensor:
            if names is None:  # no file names (CIFAR-10's batches): a seeded shuffle
                return members[torch.randperm(len(members), generator=generator)]
            keys = [name_rank(self.seed, names[index]) for index in members.tolist()]
            return members[sorted(range(len(members)), key=keys.__getitem__)]

        val, train = stratified_split(
            labels,
            [count],
            self.class_names,
            order,
            "training image(s)",
            "add images or lower data.val_size",
        )
        return train, val

    def published_normalization(self) -> tuple[list[float], list[float]] | None:
        """A data set's published mean and std, used instead of measuring them; None here."""
        return None

    def _chooses_streaming(self, kind: str) -> bool:
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

    def setup(self, stage: str | None = None) -> None:
        if stage == "fit":
            self._check_net_takes_crops()
        if self.images is not None or stage == "predict":  # prediction reads only the user's images
            return
        if stage == "test" and self.restored:
            self._setup_restored_test()
            return
        kind, files = self._source()
        if kind == "none":
            kind, files = self._missing_source()
        streaming = self._chooses_streaming(kind)
        if self.trainer is not None and self.trainer.world_size > 1:
            # Free memory differs between processes: every rank takes rank 0's path, so all
            # ranks run the same number of batches.
            streaming = bool(self.trainer.strategy.broadcast(streaming, src=0))
            self.data_path = "streaming" if streaming else "in memory"
        if streaming and self.flip == "alternate":
            self._announce("data.flip alternate: the streaming path's workers flip each image at random instead")
        self.images = self._setup_streaming(kind, files) if streaming else self._setup_in_memory()

    def _check_net_takes_crops(self) -> None:
        """With crop_epochs, one line now if the model's net cannot take the crops (a fixed-size
        head, as BlitzCNN and TinyVGG have), rather than torch's shape error at the first step."""
        net = getattr(self.trainer.lightning_module, "net", None) if self.trainer is not None else None
        if not self.crop_epochs or not isinstance(net, torch.nn.Module):
            return
        device = next(net.parameters(), torch.empty(0)).device
        probe = torch.zeros(2, self.channels, self.crop_size, self.crop_size, device=device)
        was_training = net.training
        try:
            net.eval()
            with torch.no_grad():
                net(probe)
        except RuntimeError as error:
            raise UserInputError(
                f"data.crop_epochs trains on {self.crop_size}x{self.crop_size} crops, which the net "
                f"{type(net).__name__} cannot take ({first_line(error, 100)}): set data.crop_epochs 0, or use a net "
                "that pools globally (AirbenchNet, TorchvisionNet)"
            ) from None
        finally:
            net.train(was_training)

    def _setup_in_memory(self) -> InMemoryImages:
        """The cached splits (decoded first if absent), a validation split held out when the
        source has none, the mean and std of the training split, all moved to the device."""
        cache = self.cache_path()
        if not cache.is_file():
            self.prepare_data()
            cache = self.cache_path()
        data, skipped = read_cache(cache)
        if skipped:
            shown = ", ".join(skipped[:3]) + (", ..." if len(skipped) > 3 else "")
            self._announce(f"Skipped {len(skipped)} image(s) that could not be decoded (data.skip_bad_images): {shown}")
        images, labels = data["train"]
        if "val" in data:
            train, splits = torch.arange(len(images)), {"val": data["val"]}
        else:
            train, val = self._held_out(labels, self._decoded_train_names(skipped))
            self.validation_held_out = True
            splits = {"val": (images[val], labels[val])}
        if self.train_subset is not None:  # a seeded random subset: the images are stored class by class
            train = train[self._subset(len(train))]
        splits["train"] = (images[train], labels[train])
        self.has_test_split = "test" in data
        if self.has_test_split:
            splits["test"] = data["test"]
        if not self.restored:  # a trained model keeps the standardisation it was trained with
            self.mean, self.std = self.published_normalization() or fit_pixel_standardisation(
                splits["train"][0].split(4096), str(self.data_dir)
            )
        return self._in_memory(splits)

    def _decoded_train_names(self, skipped: list[str]) -> list[str] | None:
        """The names of the cached training images, in the cache's order (the listing's, less the
        files skipped as undecodable); None for a source without file names (CIFAR-10's batches)."""
        kind, _ = self._source()
        if kind not in ("tree", "zip"):
            return None
        left_out = set(skipped)
        return [name for names in self._listing(kind)["train"].values() for name in names if name not in left_out]

    def _in_memory(self, splits: Splits) -> InMemoryImages:
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        images = InMemoryImages(
            splits, device, self.seed, self.flip, self.translate, type(self).__name__, self.SPLIT_OPTIONS
        )
        self.splits = images.splits
        return images

    def _setup_streaming(self, kind: str, files: list[Path]) -> StreamingImages:
        """The files of each split (a validation split held out when the source has none), read
        by workers; the mean and std measured on every training image once, then kept."""
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
            train, val = self._held_out(labels, [name for name, _ in train_items])
            self.validation_held_out = True
            items["val"] = [train_items[i] for i in val.tolist()]
            train_items = [train_items[i] for i in train.tolist()]
        if self.train_subset is not None:  # a seeded random subset: the items are stored class by class
            chosen = self._subset(len(train_items))
            train_items = [train_items[i] for i in chosen.tolist()]
        items["train"] = train_items
        if not items["val"] or not train_items:  # as the in-memory path refuses them
            raise empty_split("val" if not items["val"] else "train", self.SPLIT_OPTIONS)
        self.has_test_split = "test" in items
        images = StreamingImages(
            root,  # type: ignore[arg-type]
            items,
            self.image_size,
            self.channels,
            flip=bool(self.flip),
            translate=self.translate,
            skip_bad=self.skip_bad_images,
            num_workers=self.num_workers,
            seed=self.seed,
        )
        if not self.restored:  # a trained model keeps the standardisation it was trained with
            self.mean, self.std = self.published_normalization() or images.normalization(
                self._cache_file(kind, files), self._announce
            )
        return images

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
            splits, _ = image_decoding.read_image_tree(self.data_dir, *args)
        else:
            splits, _ = image_decoding.read_image_zip(find_zip(self.data_dir), *args)  # type: ignore[arg-type]
        if "test" not in splits:
            raise UserInputError(f"no test image of {self.data_dir} could be decoded")
        self.has_test_split = True
        self.images = self._in_memory({"test": splits["test"]})

    # --- what the checkpoint keeps, so prediction and export need no training data ----------
    def state_dict(self) -> dict[str, object]:
        return {
            "class_names": list(self.class_names),
            "image_size": list(self.image_size),
            "channels": self.channels,
            "mean": self.mean,
            "std": self.std,
            "validation_split": VALIDATION_SPLIT,
        }

    def load_state_dict(self, state_dict: dict[str, object]) -> None:
        if "class_names" not in state_dict:  # a checkpoint without a data state (saved by plain Lightning)
            return
        resuming = self.trainer is not None and self.trainer.state.fn == "fit"
        drawn = self.stratified_validation and self.validation_held_out  # set up before the restore, in a fit
        if resuming and drawn and state_dict.get("validation_split") != VALIDATION_SPLIT:
            self._announce(
                "This run was trained with the validation split of an earlier version (a seeded shuffle); this "
                "version holds out images by a hash of their names, so some of today's validation images were "
                "trained on: its validation scores are no longer held out (start a new run with --model.init_from "
                "to compare them)"
            )
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
        return preprocessing_record(self.channels, self.image_size)

    # --- batches, from the chosen path ----------------------------------------------------
    def sample_images(self, count: int) -> torch.Tensor:
        """The first `count` training images, normalised as the model sees them (no augmentation;
        with flip "alternate", as stored: half of them mirrored)."""
        if self.images is None:
            self.setup("fit")
        return normalize(self.images.sample(count), *self._normalization())  # type: ignore[union-attr]

    def _split_length(self, split: str) -> int | None:
        if isinstance(self.images, StreamingImages):  # streamed splits are lists of files, not self.splits
            return len(self.images.streams[split]) if split in self.images.streams else None
        return super()._split_length(split)

    def _loader(self, split: str, batch_size: int | None, shuffle: bool):  # type: ignore[override]
        if self.images is None:
            raise UserInputError(f"{type(self).__name__} has no {split} split; call setup() first")
        return self.images.loader(split, batch_size, shuffle, self.trainer)

    def test_dataloader(self):  # type: ignore[override]
        if not self.has_test_split:
            raise UserInputError(
                f"{self.data_dir} has no test images (no test/<class>/ folder): validation accuracy is the "
                "held-out figure; add test/<class>/ images to test"
            )
        return super().test_dataloader()

    def on_before_batch_transfer(self, batch: object, dataloader_idx: int) -> object:
        """Whatever the path drops on the host (streaming: undecodable evaluation items)."""
        return self.images.before_transfer(batch) if self.images is not None else batch

    def on_after_batch_transfer(self, batch: object, dataloader_idx: int) -> object:
        """Augment (training only) and normalise uint8 image batches where they now are."""
        images, *rest = batch if isinstance(batch, (tuple, list)) else (batch,)
        if self.trainer is not None and self.trainer.training and self.images is not None:
            images = self.images.augment(images, self.trainer.current_epoch)
            if self.trainer.current_epoch < self.crop_epochs:
                images = random_crop(images, self.crop_size)
        images = normalize(images, *self._normalization())
        return (images, *rest) if rest else images
