"""Images streamed from LitData chunks in a folder or object storage (`s3://...`), for data sets
larger than a disk or shared by many machines. `train.py optimize` writes the chunks.

The chunks hold each image already decoded at its training size (uint8, C x H x W) with its
label, per split (`train/`, `val/`, `test/`), beside `dataset.json`: the class names, image size
and the training split's mean and std, the same state an ImageFolderDataModule keeps, so a
checkpoint predicts, exports and serves alike. LitData's StreamingDataset shuffles per epoch,
shards across DDP ranks and dataloader workers, and downloads chunks ahead into a local cache;
its loader's position is saved in checkpoints, so a run resumed mid-epoch trains the batches
that remained. Augmentation (flip, translate) and standardisation happen on whole batches where
they land, as in the image-folder path. S3 credentials come from the usual AWS environment
variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, ...), never from configs.
"""

import json
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningDataModule

from src.datamodules.batch_augment import normalize, random_flip, random_translate
from src.errors import UserInputError

DATASET_RECORD = "dataset.json"
SPLITS = ("train", "val", "test")


def is_remote(location: str) -> bool:
    """Whether `location` is an object-storage URL (`s3://bucket/prefix`) rather than a folder."""
    return "://" in location


def join(location: str, name: str) -> str:
    return f"{location.rstrip('/')}/{name}"


def read_record(location: str) -> dict[str, Any]:
    """`dataset.json` of chunks at `location`; a missing one, an unreachable bucket or missing
    credentials end in one line."""
    where = join(location, DATASET_RECORD)
    if not is_remote(location):
        path = Path(where)
        if not path.is_file():
            raise UserInputError(
                f"{location} holds no LitData chunks written by this template (no {DATASET_RECORD}); "
                "write them with `python train.py optimize --data_dir my_photos/ --output_dir DIR`"
            )
        return json.loads(path.read_text())
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _, key = where.split("://", 1)[1].partition("/")
    try:
        body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    except (BotoCoreError, ClientError) as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise UserInputError(
            f"cannot read {where} ({reason}); check the bucket and the AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY "
            "(and AWS_ENDPOINT_URL for S3-compatible storage) environment variables"
        ) from None
    return json.loads(body)


def write_record(location: str, record: dict[str, Any]) -> None:
    """Write `dataset.json` beside the chunks at `location` (a folder or `s3://`)."""
    text = json.dumps(record, indent=2)
    if not is_remote(location):
        Path(join(location, DATASET_RECORD)).write_text(text)
        return
    import boto3

    bucket, _, key = join(location, DATASET_RECORD).split("://", 1)[1].partition("/")
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=text.encode())


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
            raise UserInputError("data.batch_size and data.eval_batch_size must be >= 1, translate and num_workers >= 0")
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
        self.restored = False  # True once a checkpoint's data state was loaded
        self.has_test_split = True

    # --- what the chunks hold -----------------------------------------------------------------
    @property
    def record(self) -> dict[str, Any]:
        if self._record is None:
            self._record = read_record(self.data_dir)
        return self._record

    @property
    def class_names(self) -> list[str]:
        return list(self.record["class_names"])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        height, width = self.record["image_size"]
        return (int(self.record["channels"]), int(height), int(width))

    def state_dict(self) -> dict[str, object]:
        record = self.record
        keys = ("class_names", "image_size", "channels", "mean", "std")
        return {key: record[key] for key in keys}

    def load_state_dict(self, state_dict: dict[str, object]) -> None:
        self._record = {**(self._record or {}), **state_dict}
        self.restored = True

    def prediction_state(self) -> dict[str, object]:
        return self.state_dict()

    def input_normalization(self) -> tuple[torch.Tensor, torch.Tensor]:
        """For images as float32 in [0, 1], C x H x W (what exported models take)."""
        return torch.tensor(self.record["mean"]).view(-1, 1, 1), torch.tensor(self.record["std"]).view(-1, 1, 1)

    def preprocessing(self) -> dict[str, object]:
        """How a user's image becomes the model's input (written into exported model.json)."""
        channels = int(self.record["channels"])
        return {
            "image_size": list(self.record["image_size"]),
            "channels": channels,
            "resize": "resize so the image covers image_size (aspect ratio kept, antialiased), then center crop",
            "color": "RGB" if channels == 3 else "grayscale (ITU-R 601-2 luma, PIL's 'L')",
        }

    # --- batches ------------------------------------------------------------------------------
    def _loader(self, split: str, batch_size: int, shuffle: bool) -> Any:
        import litdata

        if split == "test" and not self.record.get("splits", {}).get("test"):
            raise UserInputError(
                f"{self.data_dir} has no test split (its image folder had no test/<class>/ folder): validation "
                "accuracy is the held-out figure"
            )
        dataset = litdata.StreamingDataset(
            join(self.data_dir, split),
            shuffle=shuffle,
            seed=self.seed,
            cache_dir=self.cache_dir,
            max_cache_size=self.max_cache_size,
        )
        return litdata.StreamingDataLoader(dataset, batch_size=batch_size, num_workers=self.num_workers)

    def train_dataloader(self) -> Any:
        return self._loader("train", self.batch_size, shuffle=True)

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
        return normalize(images, tuple(self.record["mean"]), tuple(self.record["std"])), labels

    def sample_images(self, count: int) -> torch.Tensor:
        """The first `count` validation images, standardised as the model sees them."""
        images = next(iter(self._loader("val", count, shuffle=False)))["image"]
        return normalize(images, tuple(self.record["mean"]), tuple(self.record["std"]))
