"""Test-only callbacks, given to the real CLI as trainer.callbacks."""

import hashlib
import json
import os
import sys
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer


class SignalAtStep(Callback):
    """Sends `signum` to this process after training step `step`, like a scheduler or Ctrl-C would;
    with `once`, a file it makes then, only while that file does not exist (the first run only)."""

    def __init__(self, step: int, signum: int, once: str | None = None) -> None:
        self.step = step
        self.signum = signum
        self.once = once

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: object) -> None:
        if trainer.global_step == self.step:
            if self.once is not None:
                if os.path.exists(self.once):
                    return
                open(self.once, "x").close()
            os.kill(os.getpid(), self.signum)


class PrintStep(Callback):
    """Prints every finished training step, so a killer knows how far training got."""

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: object) -> None:
        print(f"step {trainer.global_step}", flush=True)
        sys.stdout.flush()


class SignalRankAtStep(Callback):
    """Sends `signum` to the process of global rank `rank` only, after training step `step` (DDP tests)."""

    def __init__(self, rank: int, step: int, signum: int) -> None:
        self.rank = rank
        self.step = step
        self.signum = signum

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: object) -> None:
        if trainer.global_rank == self.rank and trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


class NaNLossOnRank(Callback):
    """Makes the training inputs of global rank `rank` NaN from training step `step` on (DDP tests)."""

    def __init__(self, rank: int, step: int) -> None:
        self.rank = rank
        self.step = step

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: object, *args: object) -> None:
        if trainer.global_rank == self.rank and trainer.global_step >= self.step:
            batch[0].fill_(float("nan"))  # type: ignore[index]


class RecordRankView(Callback):
    """Writes `<folder>/rank<global rank>.json`: a digest of every training sample this rank trained
    on, per epoch; the digests of the whole training split; and a digest of the model's parameters
    (EMA copy included) at the end of training (DDP tests: shards disjoint and complete, ranks holding one model)."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.batches: dict[int, list[str]] = {}
        self.train_split: list[str] = []

    @staticmethod
    def _digests(inputs: torch.Tensor) -> list[str]:
        rows = inputs.detach().cpu().contiguous().reshape(len(inputs), -1).numpy()
        return [hashlib.sha1(row.tobytes()).hexdigest() for row in rows]

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        datamodule = trainer.datamodule
        inputs = datamodule.splits["train"][0]  # type: ignore[union-attr]
        if hasattr(datamodule, "sample_images"):  # images: normalised as the model sees them
            inputs = datamodule.sample_images(len(inputs))
        self.train_split = self._digests(inputs)

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: object, *args: object) -> None:
        self.batches.setdefault(trainer.current_epoch, []).extend(self._digests(batch[0]))  # type: ignore[index]

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        weights = hashlib.sha1()
        for name, value in sorted(pl_module.named_parameters()):  # BN statistics differ by rank
            weights.update(name.encode() + value.detach().cpu().contiguous().numpy().tobytes())
        record = {"batches": self.batches, "train_split": self.train_split, "weights": weights.hexdigest()}
        path = Path(self.folder) / f"rank{trainer.global_rank}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record))


class SignalInValidation(Callback):
    """Sends `signum` to this process at the first validation batch after training step `step`."""

    def __init__(self, step: int, signum: int) -> None:
        self.step = step
        self.signum = signum

    def on_validation_batch_start(self, trainer: Trainer, pl_module: LightningModule, *args: object) -> None:
        if not trainer.sanity_checking and trainer.global_step >= self.step:
            self.step = sys.maxsize  # once
            os.kill(os.getpid(), self.signum)


class DoubleCtrlC(Callback):
    """Presses Ctrl-C twice at the start of training step `step`: the second must stop at once."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, *args: object) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), 2)
            os.kill(os.getpid(), 2)


class SaveInitialWeights(Callback):
    """Saves the net's weights as training starts to `path` (tests that measure how far training moved them)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        torch.save(pl_module.net.state_dict(), self.path)


class SignalAtBatch(Callback):
    """Sends `signum` to this process after batch `batch` of epoch `epoch` (mid accumulation window)."""

    def __init__(self, epoch: int, batch: int, signum: int) -> None:
        self.epoch = epoch
        self.batch = batch
        self.signum = signum

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: object, batch: object, batch_idx: int
    ) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            os.kill(os.getpid(), self.signum)


class SignalInEvaluation(Callback):
    """Sends `signum` to this process after the first test, predict or validate-command batch."""

    def __init__(self, signum: int) -> None:
        self.signum = signum

    def _signal(self, trainer: Trainer) -> None:
        if not trainer.training and not trainer.sanity_checking and trainer.state.fn != "fit":
            os.kill(os.getpid(), self.signum)

    def on_test_batch_end(self, trainer: Trainer, *args: object) -> None:
        self._signal(trainer)

    def on_predict_batch_end(self, trainer: Trainer, *args: object) -> None:
        self._signal(trainer)

    def on_validation_batch_end(self, trainer: Trainer, *args: object) -> None:
        self._signal(trainer)


class PrintBatchShape(Callback):
    """Prints each training batch's epoch and image size as the net gets it (after the data module's augmentation)."""

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: object, *args: object) -> None:
        images = batch[0]  # type: ignore[index]
        print(f"epoch {trainer.current_epoch} batch {tuple(images.shape[2:])}", flush=True)


class SaveStemBias(Callback):
    """Saves the net's stem bias at the end of every training epoch, to `<folder>/<epoch>.pt`."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        torch.save(pl_module.net.stem[0].bias.detach().clone(), self.folder / f"{trainer.current_epoch}.pt")


class SignalAtFirstBatch(Callback):
    """Sends `signum` to this process as the first training batch starts, before its step."""

    def __init__(self, signum: int) -> None:
        self.signum = signum

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, *args: object) -> None:
        if trainer.global_step == 0:
            os.kill(os.getpid(), self.signum)


class SignalGroupAtSetup(Callback):
    """Rank 0 sends `signum` to its whole process group as the fit is set up, before any step: what a
    terminal's Ctrl-C does to every rank of a DDP run."""

    def __init__(self, signum: int) -> None:
        self.signum = signum

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if trainer.global_rank == 0:
            os.killpg(os.getpgid(0), self.signum)
