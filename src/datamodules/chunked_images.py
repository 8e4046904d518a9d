"""Images streamed from LitData chunks in a folder or object storage (`s3://...`), for data sets
larger than a disk or shared by many machines. `train.py optimize` writes the chunks.

The chunks hold each image already decoded at its training size (uint8, C x H x W) with its
label, per split (`train/`, `val/`, `test/`), beside `dataset.json`: the class names, image size
and the training split's mean and std, the same state an ImageFolderDataModule keeps, so a
checkpoint predicts, exports and serves alike. LitData's StreamingDataset shuffles per epoch,
shards across DDP ranks and dataloader workers, and downloads chunks ahead into a local cache;
the Trainer's position (epoch and batches trained) is in every checkpoint, so a run resumed
mid-epoch trains the batches that remained (ResumableChunks). Augmentation (flip, translate)
and standardisation happen on whole batches where they land, as in the image-folder path. S3
credentials come from the usual AWS environment variables (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, ...), never from configs.
"""

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningDataModule

from src.checkpointing.resume_position import training_position
from src.datamodules.batch_augment import normalize, random_flip, random_translate
from src.datamodules.chunk_storage import import_litdata, join, read_record
from src.datamodules.image_decoding import preprocessing_record
from src.errors import UserInputError


class ResumableChunks:
    """A StreamingDataLoader whose epoch and start are set from the Trainer's `position` when an
    epoch's first batch is asked for, as ResumableStream does for image files: a run resumed
    mid-epoch trains exactly the batches that remained, and a resumed epoch is shuffled as it
    was the first time.

    LitData's own loader state is not used: Lightning saves it as counted ahead by its
    prefetching, and does not restore it when a run-length-aware LR schedule (one-cycle,
    cosine) asked for the loader early. The position is given to LitData through its public
    `state_dict`/`load_state_dict`, rebuilt from the batches the Trainer has trained.

    An epoch's last batch is skipped when it holds one image, as the in-memory loaders drop it:
    BatchNorm cannot train on a single image whose features have shrunk to 1 x 1.
    """

    def __init__(self, loader: Any, position: Callable[[], tuple[int, int]] | None) -> None:
        self.loader, self.position = loader, position

    def __len__(self) -> int:
        batches, size = len(self.loader), self.loader.batch_size
        return batches - 1 if self._remainder_of_one(batches, size) else batches

    def _remainder_of_one(self, batches: int, size: int) -> bool:
        """Whether this rank's epoch ends in a batch of one image after others (LitData fills
        every batch but the last)."""
        items = self.loader.dataset.get_len(self.loader.num_workers, size)
        return batches > 1 and size > 1 and items % size == 1

    def __iter__(self) -> Iterator[Any]:
        return self._batches()

    def _batches(self) -> Iterator[Any]:
        """Started when the first batch is asked for: Lightning iterates the loader before it has
        reset (or restored) its progress for the epoch."""
        if self.position is not None:
            epoch, trained = self.position()
            self.loader.current_epoch = epoch  # LitData counts epochs from 1: its next epoch is `epoch + 1`
            if trained:
                self.loader.load_state_dict(self._state_at(epoch + 1, trained))
            else:  # a restored epoch's end may not have been read to the end, which clears LitData's flag
                self.loader.restore = False
        started = False
        for batch in self.loader:
            if started and self.loader.batch_size > 1 and len(batch["label"]) == 1:
                continue  # the remainder of one, after the epoch's full batches: read on to LitData's end
            started = True
            yield batch

    def _state_at(self, epoch: int, batches: int) -> dict[str, Any]:
        """The loader's state after `batches` batches of LitData epoch `epoch`."""
        loader = self.loader
        samples = batches * loader.batch_size
        workers = max(1, loader.num_workers)
        dataset = loader.dataset.state_dict(samples, workers, loader.batch_size)
        state = loader.state_dict()
        state.update(current_epoch=epoch, num_samples_yielded=samples, latest_worker_idx=(batches - 1) % workers)
        state["dataset"] = {**dataset, "current_epoch": epoch}
        return state


class ChunkedImageDataModule(LightningDataModule):
    """Image classification from LitData chunks (see the module docstring).

    Args:
        data_dir: the chunks `train.py optimize` wrote: a folder or `s3://bucket/prefix`.
        batch_size: training batch size.
        eval_batch_size: validation/test batch size.
        translate: random shift of training images, in pixels (0 turns it off).
        flip: random horizontal flips of training images.
        num_workers: dataloader worker processes (each streams its share of the chunks).
        seed: seed of the per-epoch shuffle.
        cache_dir: where remote chunks are cached locally (None: LitData's default).
        max_cache_size: how much of that cache may be used, e.g. "50GB".
    """

    def __init__(
        self,
        data_dir: str = "data/chunks",
        batch_size: int = 256,
        eval_batch_size: int = 1000,
        translate: int = 2,
        flip: bool = True,
        num_workers: int = 2,
        seed: int = 42,
        cache_dir: str | None = None,
        max_cache_size: str = "50GB",
    ) -> None:
        super().__init__()
        if batch_size < 1 or eval_batch_size < 1 or translate < 0 or num_workers < 0:
            raise UserInputError("data.batch_size and eval_batch_size must be >= 1, translate and num_workers >= 0")
        self.data_dir = str(data_dir)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.translate = translate
        self.flip = flip
        self.num_workers = num_workers
        self.seed = seed
        self.cache_dir = cache_dir
        self.max_cache_size = max_cache_size
        self._record: dict[str, Any] | None = None
        self._restored: dict[str, object] | None = None  # a checkpoint's data state
        self.restored = False  # True once a checkpoint's data state was loaded

    # --- what the chunks hold, or what a checkpoint restored ----------------------------------
    @property
    def record(self) -> dict[str, Any]:
        """The chunks' `dataset.json`, read when first needed."""
        if self._record is None:
            self._record = read_record(self.data_dir)
        return self._record

    @property
    def has_test_split(self) -> bool:
        return bool(self.record.get("splits", {}).get("test"))

    def state_dict(self) -> dict[str, object]:
        """Class names, image size, channels and mean/std: a checkpoint's, once restored (so the
        chunks need not be there to predict), else the chunks' own."""
        if self._restored is not None:
            return dict(self._restored)
        return {key: self.record[key] for key in ("class_names", "image_size", "channels", "mean", "std")}

    def load_state_dict(self, state_dict: dict[str, object]) -> None:
        self._restored = dict(state_dict)
        self.restored = True

    @property
    def class_names(self) -> list[str]:
        return list(self.state_dict()["class_names"])  # type: ignore[call-overload]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        state = self.state_dict()
        height, width = state["image_size"]  # type: ignore[misc]
        return (int(state["channels"]), int(height), int(width))  # type: ignore[call-overload]

    def _mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        state = self.state_dict()
        return tuple(state["mean"]), tuple(state["std"])  # type: ignore[call-overload]

    def prediction_state(self) -> dict[str, object]:
        return self.state_dict()

    def input_normalization(self) -> tuple[torch.Tensor, torch.Tensor]:
        """For images as float32 in [0, 1], C x H x W (what exported models take)."""
        mean, std = self._mean_std()
        return torch.tensor(mean).view(-1, 1, 1), torch.tensor(std).view(-1, 1, 1)

    def preprocessing(self) -> dict[str, object]:
        """How a user's image becomes the model's input (written into exported model.json)."""
        channels, height, width = self.input_shape
        return preprocessing_record(channels, (height, width))

    # --- batches ------------------------------------------------------------------------------
    def _loader(self, split: str, batch_size: int, shuffle: bool) -> Any:
        litdata = import_litdata()
        self._check_restored_fits()
        if split == "test" and not self.has_test_split:
            raise UserInputError(
                f"{self.data_dir} has no test split (its image folder had no test/<class>/ folder): validation "
                "accuracy is the held-out figure"
            )
        dataset = litdata.StreamingDataset(
            join(self.data_dir, split),
            shuffle=shuffle,
            seed=self.seed,
            # Every validation and test image counts once; training drops a rank's remainder (LitData's
            # rule under DDP) so ranks step together.
            drop_last=None if split == "train" else False,
            cache_dir=self.cache_dir,
            max_cache_size=self.max_cache_size,
        )
        return litdata.StreamingDataLoader(dataset, batch_size=batch_size, num_workers=self.num_workers)

    def _check_restored_fits(self) -> None:
        """A checkpoint's classes and image shape must be the chunks' own: its labels and pixels
        would otherwise be read against another model."""
        if self._restored is None:
            return
        record = self.record
        for key in ("class_names", "image_size", "channels"):
            if list(np.atleast_1d(record[key])) != list(np.atleast_1d(self._restored[key])):
                raise UserInputError(
                    f"the checkpoint was trained on {key} {self._restored[key]}, but the chunks in {self.data_dir} "
                    f"have {record[key]}; use the chunks the run was trained on"
                )

    def train_dataloader(self) -> Any:
        side = min(self.input_shape[1:])
        if self.translate >= side:  # the shift reflects the borders, which needs a margin inside the image
            raise UserInputError(
                f"data.translate must be below the image side of the chunks ({side} pixels), got {self.translate}: "
                "lower data.translate"
            )
        position = training_position(self.trainer) if self.trainer is not None else None
        return ResumableChunks(self._loader("train", self.batch_size, shuffle=True), position)

    def val_dataloader(self) -> Any:
        return self._loader("val", self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> Any:
        return self._loader("test", self.eval_batch_size, shuffle=False)

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """LitData's batches are dicts; the modules take (images, labels)."""
        return (batch["image"], batch["label"]) if isinstance(batch, dict) else batch

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Augment (training only) and standardise the uint8 batch where it now is."""
        images, labels = batch
        if self.trainer is not None and self.trainer.training:
            if self.flip:
                images = random_flip(images)
            images = random_translate(images, self.translate)
        return normalize(images, *self._mean_std()), labels

    def sample_images(self, count: int) -> torch.Tensor:
        """The first `count` training images, standardised as the model sees them (no augmentation)."""
        images = next(iter(self._loader("train", count, shuffle=False)))["image"]
        return normalize(images, *self._mean_std())
