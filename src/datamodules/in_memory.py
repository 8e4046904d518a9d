"""The part every data module here shares: tensors per split, served by InMemoryLoader."""

import math

import torch
from lightning.pytorch import LightningDataModule, Trainer

from src.checkpointing.resume_position import training_position
from src.datamodules.in_memory_loader import InMemoryLoader
from src.errors import UserInputError

Split = tuple[torch.Tensor, torch.Tensor]


def empty_split(split: str, split_options: str) -> UserInputError:
    """The error for a split with no samples, naming the options that size the splits."""
    return UserInputError(f"the {split} split is empty: change {split_options} so that every split gets data")


def split_loader(
    splits: dict[str, Split],
    split: str,
    batch_size: int | None,
    shuffle: bool,
    seed: int,
    trainer: Trainer | None,
    owner: str,
    split_options: str,
) -> InMemoryLoader:
    """An InMemoryLoader over one of `splits`, sharded by rank and resumable mid-epoch (training)."""
    if split not in splits:
        raise UserInputError(f"{owner} has no {split} split; call setup() first")
    inputs, targets = splits[split]
    if len(inputs) == 0:
        raise empty_split(split, split_options)
    world_size = trainer.world_size if trainer else 1
    batch_size = batch_size or len(inputs)
    per_rank = math.ceil(len(inputs) / world_size)
    return InMemoryLoader(
        (inputs, targets),
        batch_size=batch_size,
        shuffle=shuffle,
        # A last training batch of one sample is skipped: BatchNorm cannot train on one (the
        # shuffle leaves out another sample each epoch).
        drop_last=split == "train" and per_rank > 1 and per_rank % batch_size == 1,
        seed=seed,
        rank=trainer.global_rank if trainer else 0,
        world_size=world_size,
        position=training_position(trainer) if trainer is not None and split == "train" else None,
    )


class InMemoryDataModule(LightningDataModule):
    """A data module whose splits are (inputs, targets) tensor pairs held in memory.

    Subclasses fill `self.splits` in `setup()` and set `input_shape` (and `num_classes` for
    classification), which LightningCLI links into the model. Their `state_dict()` (kept in
    every checkpoint) is all that turns a user's raw inputs into the model's inputs and names its
    outputs: src.tools.predictor reads it; `setup("predict")` needs no training data.

    Args:
        batch_size: samples per training batch; None trains on the whole split at once.
        eval_batch_size: samples per validation/test batch; None means the whole split.
        seed: seed of the data's generation, split and shuffling.
    """

    def __init__(self, batch_size: int | None, eval_batch_size: int | None, seed: int) -> None:
        super().__init__()
        for name, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if value is not None and value < 1:
                raise UserInputError(f"data.{name} must be >= 1 (or null for the whole split), got {value}")
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.seed = seed
        self.splits: dict[str, Split] = {}
        # True once load_state_dict() took a trained model's data state (classes, standardisation):
        # then it is used as it is, never refitted on the files.
        self.restored = False

    def _announce(self, message: str) -> None:
        """Print a line about the data once, from the first process of a multi-process (DDP) run."""
        if self.trainer is None or self.trainer.is_global_zero:
            print(message, flush=True)

    SPLIT_OPTIONS = "data.val_fraction and data.test_fraction"

    def _loader(self, split: str, batch_size: int | None, shuffle: bool) -> InMemoryLoader:
        options = self.SPLIT_OPTIONS
        return split_loader(
            self.splits, split, batch_size, shuffle, self.seed, self.trainer, type(self).__name__, options
        )

    def _split_length(self, split: str) -> int | None:
        """How many samples `split` holds; None when it is not set up."""
        return len(self.splits[split][0]) if split in self.splits else None

    def train_dataloader(self) -> InMemoryLoader:
        # Lightning asks for the validation loader only at the first validation: an empty split
        # is refused here, when the fit starts, not after the epochs before it.
        validating = self.trainer is None or self.trainer.limit_val_batches != 0
        if validating and self._split_length("val") == 0:
            raise empty_split("val", self.SPLIT_OPTIONS)
        # `trainer.overfit_batches` trains the same first batches every epoch: no shuffling.
        overfitting = self.trainer is not None and bool(self.trainer.overfit_batches)
        return self._loader("train", self.batch_size, shuffle=not overfitting)

    def val_dataloader(self) -> InMemoryLoader:
        return self._loader("val", self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> InMemoryLoader:
        return self._loader("test", self.eval_batch_size, shuffle=False)

    def input_normalization(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(mean, std) that turn a user's raw input into the model's input, broadcastable
        over one sample; None when the model takes raw inputs. Exported models include it."""
        return None

    def prediction_state(self) -> dict[str, object]:
        """`state_dict()` for prediction: the checkpoint's when it was restored, else fitted here on
        the training split (for a checkpoint that holds no data state, saved by plain Lightning)."""
        if not self.restored:
            self.setup("fit")
        return self.state_dict()
