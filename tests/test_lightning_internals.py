"""The Lightning internals this template still relies on, one test each.

`pyproject.toml` pins `lightning<2.7`; when an upgrade changes one of these, its test fails
with a message naming the file that must change, before a user meets a strange error.
docs/run-safety.md lists them, with why each has no public route.
Replaced by public hooks: LightningCLI._get, ModelCheckpoint._save_last_checkpoint,
_monitor_candidates, _should_save_on_train_epoch_end (RunCheckpoint tells the moment from
on_validation_end, on_train_epoch_end, on_save_checkpoint and trainer.num_training_batches),
_last_global_step_saved; the loggers' _experiment, _initialized, _run_id, _run_name,
_tracking_uri and _experiment_name (constructor arguments, `tags`, super().experiment).
"""

import inspect
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.cli import LightningCLI

from src.datamodules import ToyPointsDataModule
from src.modules import ClassificationModule
from tests.conftest import QUIET, config, run_cli


def quick_trainer(**kwargs: object) -> L.Trainer:
    return L.Trainer(
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, **kwargs
    )


def test_prepare_subcommand_parser_still_builds_each_subcommand_parser(capsys) -> None:
    # src/cli/template_cli.py adds `predict --input/--output` by overriding this private method:
    # LightningCLI has no public hook that sees which subcommand a parser is for.
    method = getattr(LightningCLI, "_prepare_subcommand_parser", None)
    assert method is not None, "LightningCLI._prepare_subcommand_parser is gone: move predict's --input in src/cli"
    parameters = list(inspect.signature(method).parameters)
    assert parameters[:3] == ["self", "klass", "subcommand"], (
        f"LightningCLI._prepare_subcommand_parser now takes {parameters}: update src/cli/template_cli.py"
    )
    assert run_cli("predict", "--help") == 0
    assert "--input INPUT" in capsys.readouterr().out


def test_the_fit_loop_still_counts_completed_batches_where_the_loader_reads_them() -> None:
    # src/datamodules/in_memory.py resumes mid-epoch from this count (restored from checkpoints):
    # Lightning's prefetching means the loader's own count runs one batch ahead.
    seen: list[tuple[int, int]] = []

    class Record(L.Callback):
        def on_train_batch_start(self, trainer: L.Trainer, module: object, batch: object, batch_idx: int) -> None:
            count = trainer.fit_loop.epoch_loop.batch_progress.current.completed
            seen.append((batch_idx, count))

    dm = ToyPointsDataModule(n_samples=100, batch_size=20)
    quick_trainer(max_epochs=2, callbacks=[Record()]).fit(ClassificationModule(), datamodule=dm)
    assert seen and all(index == count for index, count in seen), (
        f"trainer.fit_loop.epoch_loop.batch_progress.current.completed no longer counts the epoch's "
        f"finished batches ({seen[:5]}): fix training_position in src/checkpointing/resume_position.py"
    )


def test_a_validation_after_an_epochs_last_batch_still_ends_before_the_epoch_does() -> None:
    # src/checkpointing/run_checkpoint.py writes last.ckpt for such a validation at the epoch's end (after
    # every callback of that moment), and for one inside an epoch at its own end: public hooks, but an order.
    events: list[str] = []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
            batch_idx = args[-1]
            events.append("last batch" if batch_idx + 1 >= trainer.num_training_batches else "batch")

        def on_validation_end(self, trainer: L.Trainer, module: object) -> None:
            if not trainer.sanity_checking:
                events.append("validation")

        def on_train_epoch_end(self, trainer: L.Trainer, module: object) -> None:
            events.append("epoch end")

    dm = ToyPointsDataModule(n_samples=100, batch_size=20)
    quick_trainer(max_epochs=1, val_check_interval=2, callbacks=[Record()]).fit(ClassificationModule(), datamodule=dm)
    assert events == ["batch", "batch", "validation", "batch", "last batch", "validation", "epoch end"], (
        f"Lightning's order of batch, validation and epoch ends changed ({events}): fix RunCheckpoint in "
        "src/checkpointing/run_checkpoint.py"
    )


def test_the_fit_loop_max_epochs_can_still_be_raised_for_the_lr_finder() -> None:
    # src/tools/learning_rate_finder.py lets a full-batch task (one step an epoch) take
    # num_training steps by raising the fit loop's max_epochs.
    trainer = quick_trainer(max_epochs=1)
    trainer.fit_loop.max_epochs = 7
    assert trainer.max_epochs == 7, "Trainer.fit_loop.max_epochs no longer sets max_epochs: fix the LR finder"


def test_checkpoints_still_keep_the_datamodule_state_under_its_class_name(in_tmp: Path) -> None:
    # src/tools/export.py reads the training standardisation from the checkpoint's entry named
    # after the data module's class, where Lightning stores LightningDataModule.state_dict().
    args = ["--config", config("regression_linear"), "--trainer.max_epochs", "5", *QUIET]
    assert run_cli("fit", *args, "--trainer.check_val_every_n_epoch", "5") == 0
    last = next(in_tmp.glob("lightning_logs/*/version_0/checkpoints/last.ckpt"))
    state = torch.load(last, weights_only=True)
    assert "RegressionDataModule" in state, (
        f"Lightning no longer stores the datamodule state under its class name (keys: {sorted(state)}): "
        "fix src/tools/export.py"
    )


def test_the_loggers_private_state_the_trackers_extend_is_still_there(tmp_path: Path) -> None:
    # src/checkpointing/run_folder.py numbers a second TensorBoard or CSV logger of a fit with the first
    # one's version (`_version`: no public setter after construction); src/loggers/run_loggers.py
    # gives W&B its run folder and run id when it starts (`_wandb_init`: the arguments of wandb.init,
    # known only once the run folder's number is).
    pytest.importorskip("wandb")
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger

    expected = {
        TensorBoardLogger(tmp_path): ("_version",),
        CSVLogger(tmp_path): ("_version",),
        WandbLogger(save_dir=str(tmp_path), offline=True): ("_wandb_init",),
    }
    for logger, names in expected.items():
        missing = [name for name in names if not hasattr(logger, name)]
        assert not missing, f"{type(logger).__name__} no longer has {missing}: update src/checkpointing/run_folder.py"
    tensorboard = TensorBoardLogger(tmp_path, name="runs")
    tensorboard._version = 7
    assert tensorboard.version == 7 and tensorboard.log_dir.endswith("version_7"), (
        "TensorBoardLogger no longer reads its number from _version: fix share_run_folder in "
        "src/checkpointing/run_folder.py"
    )


def test_lightning_still_flattens_hyperparameters_as_mlflow_logs_them() -> None:
    # src/loggers/run_loggers.py compares a resumed MLflow run's params with those given, flattened as
    # MLFlowLogger.log_hyperparams flattens them (no public function does the same).
    from argparse import Namespace

    from lightning.fabric.utilities.logger import _convert_params, _flatten_dict

    flat = _flatten_dict(_convert_params(Namespace(optimizer={"lr": 0.1, "momentum": 0.9}, seed=1)))
    assert flat == {"optimizer/lr": 0.1, "optimizer/momentum": 0.9, "seed": 1}, (
        f"Lightning's _flatten_dict/_convert_params changed ({flat}): fix MLflow.log_hyperparams in src/loggers"
    )


def test_the_rich_progress_bar_still_labels_epochs_in_one_method() -> None:
    # src/callbacks/epoch_progress_bar.py counts epochs from 1 by overriding this private method.
    from lightning.pytorch.callbacks import RichProgressBar

    from src.callbacks import EpochProgressBar

    method = getattr(RichProgressBar, "_get_train_description", None)
    assert method is not None, "RichProgressBar._get_train_description is gone: fix src/callbacks/epoch_progress_bar.py"
    assert list(inspect.signature(method).parameters) == ["self", "current_epoch"], (
        "RichProgressBar._get_train_description changed: fix src/callbacks/epoch_progress_bar.py"
    )
    bar = EpochProgressBar()
    bar._trainer = quick_trainer(max_epochs=100)
    assert bar._get_train_description(0).strip() == "Epoch 1/100"
    assert bar._get_train_description(99).strip() == "Epoch 100/100"
