"""The Lightning Trainer plus the template's two extra commands, `lr_find` and `export`.

LightningCLI turns each Trainer method named in `TemplateCLI.subcommands()` into a
subcommand whose options are the method's arguments, so these read like `fit`:
`python train.py export --config configs/circles.yaml --ckpt_path best`.
"""

import functools
import signal
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningDataModule, LightningModule, Trainer

from src.checkpointing import RunCheckpoint, discard_unstarted_run, empty_run_folders, stop_on_signal
from src.checkpointing.runs import check_writable
from src.errors import UserInputError
from src.tools.export import ALL_FORMATS, ExportFormat, check_export_folder, export_checkpoint
from src.tools.learning_rate_finder import find_learning_rate

# Lightning warnings that say nothing to a user of this template, silenced only while the Trainer runs.
NOTICES = (
    # The modules log the step loss by global step, so an epoch shorter than log_every_n_steps
    # (every full-batch task) still gets its curve.
    "The number of training batches .* is smaller than the logging interval",
    # Epoch values are logged from torchmetrics' compute(), which already reduces across DDP ranks.
    r"It is recommended to use `self.log\(.*sync_dist=True",
    # A resumed run writes into its own checkpoints folder; a fit into another run's folder is refused
    # before it starts (src/checkpointing/occupied_run.py), so this says nothing new.
    "Checkpoint directory .* exists and is not empty",
    # Lightning 2.6 calls a torch.utils._pytree API that torch 2.9+ deprecates; nothing for users to do.
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
)


@contextmanager
def lightning_notices_silenced() -> Iterator[None]:
    """Within the block, the warnings in NOTICES are not shown; the filters found are put back after it."""
    with warnings.catch_warnings():
        for message in NOTICES:
            warnings.filterwarnings("ignore", message=message)
        yield


def quiet(method: Callable[..., Any]) -> Callable[..., Any]:
    """`method` (a Trainer method) run with the warnings in NOTICES silenced; same signature and help."""

    @functools.wraps(method)
    def run(self: Trainer, *args: Any, **kwargs: Any) -> Any:
        with lightning_notices_silenced():
            return method(self, *args, **kwargs)

    return run


def discarding_unstarted_runs(fit: Callable[..., Any]) -> Callable[..., Any]:
    """`fit` (a Trainer's) that removes its new run folder when it fails, or is stopped (Ctrl-C, SIGTERM:
    exceptions that are not `Exception`s), before training a step."""

    @functools.wraps(fit)
    def run(self: Trainer, *args: Any, **kwargs: Any) -> Any:
        new_folders = empty_run_folders(self)
        try:
            return fit(self, *args, **kwargs)
        except BaseException:
            discard_unstarted_run(self, new_folders)
            raise

    return run


def stopping_before_training(fit: Callable[..., Any]) -> Callable[..., Any]:
    """`fit` (a Trainer's) where Ctrl-C or SIGTERM outside training (while the data is read or decoded,
    in the sanity check, before the first step) stops at once, as a stop in training does:
    `StoppedBySignal` saying what the run holds, exit 130 or 143, a new run's folder removed. Without
    it Lightning's handling exits 1 on Ctrl-C, and a SIGTERM before Lightning's own handler is in place
    kills the process and leaves the folder. In training, RunCheckpoint handles both."""

    @functools.wraps(fit)
    def run(self: Trainer, *args: Any, **kwargs: Any) -> Any:
        callback = self.checkpoint_callback
        if not isinstance(callback, RunCheckpoint):
            return fit(self, *args, **kwargs)

        stopping: list[int] = []

        def stop(signum: int, frame: Any) -> None:
            if callback.in_training or stopping:  # in training: reached through Lightning's SIGTERM handler,
                return  # which RunCheckpoint calls; stopping: a second signal while stopping is ignored
            stopping.append(signum)
            resumed = bool(self.ckpt_path or kwargs.get("ckpt_path"))  # a resumed checkpoint is restored only later
            raise callback.interruption(self, resumed=resumed, signum=signum)

        try:
            previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGINT, signal.SIGTERM)}
        except ValueError:  # not the main thread: signals are not ours to handle
            return fit(self, *args, **kwargs)
        try:
            return fit(self, *args, **kwargs)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)

    return run


class TemplateTrainer(Trainer):
    """A Trainer with `lr_find` and `export`."""  # its fit, validate, test and predict hide NOTICES

    fit = stopping_before_training(discarding_unstarted_runs(quiet(Trainer.fit)))
    validate = quiet(Trainer.validate)
    test = quiet(Trainer.test)
    predict = quiet(Trainer.predict)

    def lr_find(
        self,
        model: LightningModule,
        datamodule: LightningDataModule,
        min_lr: float = 1e-6,
        max_lr: float = 1.0,
        num_training: int = 100,
        output_dir: Path | None = None,
    ) -> None:
        """Find a learning rate: an LR range test, its plot saved as lr_find.png.

        Args:
            min_lr: learning rate of the first step.
            max_lr: learning rate of the last step.
            num_training: number of training steps, the LR rising exponentially between the two.
            output_dir: where lr_find.png and lr_find.csv go (default: the experiment's folder
                in lightning_logs, whatever the logger).
        """
        if not 0 < min_lr < max_lr:
            raise UserInputError(f"need 0 < --min_lr < --max_lr, got {min_lr} and {max_lr}")
        if num_training < 10:
            raise UserInputError(f"--num_training must be >= 10 steps, got {num_training}")
        folder = Path(output_dir) if output_dir is not None else self.experiment_dir()
        # Before the range test, not after it: the plot's folder, and where Lightning saves the model for a moment.
        check_writable(folder, "Choose another place with --output_dir")
        check_writable(
            Path(self.default_root_dir),
            "Lightning's range test saves the model there while it runs: give --trainer.default_root_dir",
        )
        self.loggers = []  # a range test is not a run: no version folder of its own
        suggestion, plot, numbers = find_learning_rate(self, model, datamodule, folder, min_lr, max_lr, num_training)
        if suggestion is None:
            print("The LR range test gave no suggestion (the loss never fell steadily); see the plot.")
        else:
            print(f"Suggested learning rate: {suggestion:.3g}  (train with --model.optimizer.lr {suggestion:.3g})")
        print(f"Plot: {plot}\nLosses: {numbers}")

    def export(
        self,
        model: LightningModule,
        datamodule: LightningDataModule,
        ckpt_path: str | None = None,
        formats: list[ExportFormat] = list(ALL_FORMATS),  # noqa: B006 - read only
        output_dir: Path | None = None,
        overwrite: bool = False,
    ) -> None:
        """Export a checkpoint: plain state_dict, torch.export (.pt2), TorchScript and ONNX, each checked
        against PyTorch.

        Args:
            ckpt_path: best, last or a checkpoint file.
            formats: which of state_dict, pt2, torchscript and onnx to write.
            output_dir: where to write them (default: export/<checkpoint name>/ in the run's folder, or
                beside a checkpoint that is not in a run's checkpoints/ folder).
            overwrite: replace files in output_dir that an export of this checkpoint did not write.
        """
        if ckpt_path is None:
            raise UserInputError("export needs a trained model: add --ckpt_path best, last or a checkpoint file")
        if not formats:
            raise UserInputError(f"--formats is empty: choose from {', '.join(ALL_FORMATS)}")
        checkpoint = Path(ckpt_path)
        # A run's checkpoints/ folder: export/ beside it, in the run; any other file: export/ beside the file.
        run = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
        folder = Path(output_dir) if output_dir is not None else run / "export" / checkpoint.stem
        checkpoint_dir = getattr(self.checkpoint_callback, "dirpath", None)  # when the config names one
        check_export_folder(
            folder, checkpoint, tuple(formats), overwrite, Path(checkpoint_dir) if checkpoint_dir else None
        )
        with stop_on_signal("export", f"{folder} is as it was before this export"):
            record = export_checkpoint(model, datamodule, checkpoint, folder, tuple(formats))
        for kind, name in record["files"].items():
            difference = record["max_abs_difference"][kind]
            print(f"{kind:>12}: {folder / name}  (max |difference| to PyTorch {difference:.2g})")
        for kind, how in record["exporters"].items():
            print(f"{kind:>12}  made by {how}")
        print(f"{'description':>12}: {folder / 'model.json'}")

    def experiment_dir(self) -> Path:
        """<save_dir>/<name> of the first logger (TensorBoard, or any of src/loggers), else the working folder."""
        logger = self.logger
        if logger is not None and getattr(logger, "root_dir", None):
            return Path(logger.root_dir)
        return Path(self.default_root_dir)
