"""The command line: LightningCLI with checkpointing, data-to-model shape links and resuming."""

import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import ModelSummary
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from src.callbacks import (
    EarlyStoppingOnBest,
    EpochProgressBar,
    LastEpochValidation,
    ModelSummaryTable,
    PlainTextProgress,
)
from src.checkpointing import RunCheckpoint, RunSafety, stop_on_signal
from src.checkpointing.checkpoint_io import load_structure
from src.checkpointing.runs import check_one_run_folder, logger_entries
from src.checkpointing.stored_run import RUN_CONFIG_KEY, RUN_FOLDER_KEY
from src.class_paths import class_from_path
from src.cli.checkpoint_config import FROM_CHECKPOINT, with_checkpoint_config
from src.cli.checkpoint_fit import check_checkpoint_fits
from src.cli.checkpoint_values import check_given_values, report_data_changes
from src.cli.config_files import check_config_syntax
from src.cli.run_settings import run_settings
from src.cli.template_trainer import TemplateTrainer
from src.cli.trainer_options import check_trainer_options
from src.errors import UserInputError
from src.loggers import describe_run, store_file
from src.modules.nets.pretrained import weights_from_checkpoint
from src.tools.prediction_output import check_prediction_output, check_same_predictions
from src.tools.prediction_table import input_column_names, write_prediction_csv
from src.tools.predictor import load_predictor

BASE_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "base.yaml"
# Shapes that come from the data module, never typed in a config.
LINKED_FROM_DATA = ("input_shape", "num_classes")
# Model arguments that say how to run, not what is learned: a checkpoint never overrides them
# (so `validate --ckpt_path X --model.tta_translate 1` measures another test-time augmentation).
RUN_OPTIONS = ("compile", "init_from", "tta_flip", "tta_translate")


def restore_data_state(datamodule: Any, checkpoint: Path) -> None:
    """Give the data module the state its class saved in `checkpoint` (classes, standardisation, ...),
    once; a checkpoint without one (saved by plain Lightning with another data module) leaves it as it is,
    and predict fits it on the training data."""
    if getattr(datamodule, "restored", False):
        return
    state = load_structure(checkpoint).get(type(datamodule).__qualname__)
    if state is not None:
        datamodule.load_state_dict(state)


def monitored_mode(model_class: type, monitor: str, key: str) -> str:
    """Which way `monitor` improves, for a `--<key>.monitor` given without `--<key>.mode`: the model's
    own metrics are known (`val/acc` max, `val/loss` min); another (a typo, before any training)
    is refused, naming the model's metrics and the mode a metric of the user's own code needs."""
    best = getattr(model_class, "best_metric", None)
    if best is not None and monitor in (f"val/{best}", f"val/{best}_best"):  # the model's own best metric
        return model_class.best_mode
    mode_of = getattr(model_class, "mode_of", None)
    mode = mode_of(monitor) if mode_of is not None else None
    if mode is None:
        logged = ", ".join(f"val/{name}" for name in sorted(getattr(model_class, "metric_modes", {})))
        raise UserInputError(
            f"--{key}.monitor {monitor} is not a metric this model logs; choose one of: {logged} (a metric "
            f"your own code logs needs --{key}.mode max or min: which way it improves)"
        )
    return mode


class SaveRunConfig(SaveConfigCallback):
    """Saves the resolved config in the run folder (a resumed run adds config.resumed-K.yaml) and
    stores it with the run in MLflow (an artifact) and W&B (a run file) too."""

    run_dir: str | None = None
    _config_text: str | None = None

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if not trainer.loggers or stage != "fit":  # only a fit makes or continues a run with its own config
            return
        self.run_dir = trainer.log_dir  # a collective call under DDP: every rank asks, here
        if not self.already_saved and self.run_dir is not None:
            name, count = "config.yaml", 0
            while (Path(self.run_dir) / name).exists():
                count += 1
                name = f"config.resumed-{count}.yaml"
            self.config_filename = name
        super().setup(trainer, pl_module, stage)

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        """Every checkpoint carries the run's resolved config (YAML text, as config.yaml holds it), so
        predict, test and export can rebuild its model and data module from the checkpoint alone."""
        if self._config_text is None:
            self._config_text = self.parser.dump(self.config, skip_none=False)
        checkpoint[RUN_CONFIG_KEY] = self._config_text
        # The run folder, found again when the checkpoint is resumed from any --checkpoint.dirpath.
        if self.run_dir is not None and "://" not in self.run_dir:
            checkpoint[RUN_FOLDER_KEY] = str(Path(self.run_dir).resolve())

    def save_config(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Rank 0 only, after the file is written: hand it to each tracker that keeps files.
        (No collective calls here, such as trainer.log_dir: the other ranks would never answer.)"""
        if self.run_dir is not None:
            store_file(trainer.loggers, Path(self.run_dir) / self.config_filename)


# What a signal during an evaluation leaves: nothing was written, so nothing was lost.
EVALUATION_STOPPED = "no results were reported; existing checkpoints and logs are untouched"
TEST_AFTER_FIT_STOPPED = (
    "training finished and its checkpoints are saved; test the best with the same options and "
    "`python train.py test ... --ckpt_path best`"
)


class TemplateCLI(LightningCLI):
    """`python train.py {fit,validate,test,predict,lr_find,export} --config configs/<task>.yaml [--key value ...]`."""

    def __init__(self, **kwargs: Any) -> None:
        self.test_results: list[dict[str, float]] = []  # what after_fit's test of the best checkpoint reported
        kwargs.setdefault("trainer_class", TemplateTrainer)
        kwargs.setdefault("save_config_callback", SaveRunConfig)
        kwargs.setdefault("auto_configure_optimizers", False)
        # A progress bar in a terminal; in logs and CI, one line per validation instead.
        kwargs.setdefault("trainer_defaults", {"enable_progress_bar": sys.stdout.isatty()})
        # Parse errors are raised, not printed, so train.py can reduce them to one line.
        # configs/base.yaml is read before any --config, for every subcommand.
        kwargs.setdefault(
            "parser_kwargs",
            {
                "parser_mode": "yaml",
                "exit_on_error": False,
                "epilog": "Also: python train.py sweep --config CONFIG --sweep.space SPACE.yaml [fit options] "
                "(an Optuna study; see sweep --help), and python train.py compare_schedules --config CONFIG "
                "[fit options] [--schedules constant step exponential cosine onecycle] (one run per LR schedule); "
                "python train.py serve --ckpt_path CKPT (the model over HTTP; see serve --help); python train.py "
                "optimize --data_dir IMAGES --output_dir CHUNKS (an image folder as LitData chunks).",
                **{name: {"default_config_files": [str(BASE_CONFIG)]} for name in self.subcommands()},
            },
        )
        if not kwargs.get("run", True):  # one parser without subcommands (scripts, benchmarks)
            kwargs["parser_kwargs"].setdefault("default_config_files", [str(BASE_CONFIG)])
        # predict/test/validate/export --ckpt_path FILE without --config: the checkpoint's own run config.
        given = kwargs.get("args")
        if isinstance(given, list):
            check_config_syntax(given)
            kwargs["args"] = with_checkpoint_config(given)
            self._config_from_checkpoint = kwargs["args"] is not given
        super().__init__(**kwargs)

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """Lightning's four, plus TemplateTrainer's `lr_find` and `export`."""
        return {**LightningCLI.subcommands(), "lr_find": {"model", "datamodule"}, "export": {"model", "datamodule"}}

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs: Any) -> LightningArgumentParser:
        """Adds `predict --input PATH [--output FILE]` to LightningCLI's subcommand parser."""
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        if subcommand == "predict":
            parser.add_argument(
                "--input",
                type=str,
                required=True,
                help="what to predict: a CSV file with the model's feature columns, or an image file or folder",
            )
            parser.add_argument(
                "--output",
                type=str,
                default="predictions.csv",
                help="where to write the predictions CSV (default: predictions.csv); an existing file is "
                "replaced only if predict wrote it, and never in a checkpoints folder",
            )
            # A flag alone or with a value (`--overwrite` or `--overwrite true`).
            parser.add_argument(
                "--overwrite",
                type=bool,
                nargs="?",
                const=True,
                default=False,
                help="let --output replace an existing file that predict did not write (never a checkpoint)",
            )
            parser.add_argument(
                "--skip_bad_images",
                type=bool,
                nargs="?",
                const=True,
                default=False,
                help="leave out image files that cannot be decoded (named in a printed line) instead of stopping",
            )
        return parser

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(RunCheckpoint, "checkpoint")
        parser.add_lightning_class_args(EarlyStoppingOnBest, "early_stopping")
        # input_shape (every data module has one) is linked first, through _restored_input_shape: with a
        # checkpoint alone, the data module takes its state before num_classes is read.
        parser.link_arguments(
            "data", "model.init_args.input_shape", compute_fn=self._restored_input_shape, apply_on="instantiate"
        )
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")

    # --- a trained model's data: the checkpoint's classes and standardisation, not the files' --
    _config_from_checkpoint = False  # the config is the checkpoint's own (no --config given)
    _restore_from: Path | None = None  # then, the checkpoint whose data state the data module takes first

    def _restored_input_shape(self, datamodule: Any) -> tuple[int, ...]:
        """The data module's input shape for the model. With a checkpoint alone, the data module first
        takes the checkpoint's data state (classes, input size, standardisation), so these are neither
        read from nor refitted on the files, which need not be there. With a --config, its data is read
        as given, and a checkpoint of other classes is refused (check_checkpoint_fits)."""
        if self._restore_from is not None:
            restore_data_state(datamodule, self._restore_from)
        return datamodule.input_shape

    # --- --ckpt_path last | best ------------------------------------------------------------
    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        super().parse_arguments(parser, args)
        self._check_loggers()
        self._resolve_ckpt_path()
        # How to run, not what was learned: kept as given when the model is rebuilt from a checkpoint.
        config = self.config.get(self.config.get("subcommand") or "", self.config)
        init_args = config.get("model", {}).get("init_args") or {}
        self._run_options = {name: init_args.get(name) for name in RUN_OPTIONS if name in init_args}

    # Lightning's own classes for these trackers keep runs elsewhere (mlruns/<id>/<run>, ./wandb) and
    # know no run folder to resume; src.loggers' take the same options by the shared names.
    _TRACKER_CLASSES = {"MLFlowLogger": "src.loggers.MLflow", "WandbLogger": "src.loggers.Wandb"}

    def _check_loggers(self) -> None:
        """Lightning's CSVLogger becomes src.loggers.CSV (the same, plus figures); Lightning's
        MLflow and W&B loggers are refused in one line naming ours."""
        subcommand = self.config.get("subcommand")
        config = self.config[subcommand] if subcommand else self.config
        trainer = config.get("trainer")
        if trainer is None:
            return
        for entry in logger_entries(trainer.get("logger")):
            class_path = str(entry.class_path)
            short = class_path.rpartition(".")[2]
            if class_path.startswith("lightning.") and short == "CSVLogger":
                entry.class_path = "src.loggers.CSV"
            elif class_path.startswith("lightning.") and short in self._TRACKER_CLASSES:
                ours = self._TRACKER_CLASSES[short]
                raise UserInputError(
                    f"trainer.logger {class_path}: use {ours} (configs/loggers/*.yaml), which keeps the run, its "
                    "checkpoints and its tracker run id in lightning_logs/<name>/version_N so --ckpt_path last "
                    f"continues the same run; e.g. --trainer.logger {ours}"
                )
        check_one_run_folder(logger_entries(trainer.get("logger")))

    def _resolve_ckpt_path(self) -> None:
        """Turn `last`/`best` into this experiment's file, and check any checkpoint before use (RunSafety).

        Runs before LightningCLI reads the checkpoint's hyperparameters, so a bad file gives
        a clear error rather than a crash.
        """
        subcommand = self.config.get("subcommand")
        config = self.config[subcommand] if subcommand else self.config
        self.run_safety = RunSafety(subcommand, config)
        path = self.run_safety.ckpt_path
        if path is None:
            return
        check_given_values(
            config.model, path, ignored={*LINKED_FROM_DATA, *RUN_OPTIONS}, fitting=self.run_safety.fitting
        )
        if self.run_safety.fitting:
            report_data_changes(config.data, path)
        if subcommand in FROM_CHECKPOINT and self._config_from_checkpoint:
            self._restore_from = path

    def before_instantiate_classes(self) -> None:
        """Trainer values that cannot work are refused before anything is built (a pretrained net would
        download its weights first); the checkpoint watches the model's own best metric unless the
        config names another, and early stopping watches what the checkpoint does unless told otherwise."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        if self.subcommand in (None, "fit", "lr_find"):  # the commands that train
            check_trainer_options(config.get("trainer") or {})
        if self.subcommand in ("validate", "test") and not config.get("ckpt_path"):
            raise UserInputError(
                f"{self.subcommand} needs a trained model: add --ckpt_path best, last or a checkpoint file "
                "(without one it would score untrained weights)"
            )
        model_class = class_from_path(config.model.class_path)
        watched = (f"val/{model_class.best_metric}", None)  # early stopping follows the checkpoint's choice
        for key in ("checkpoint", "early_stopping"):
            group = config.get(key)
            if group is None:
                continue
            if group.get("monitor") is None:
                # early stopping takes the checkpoint's metric and mode when given neither; given a mode
                # alone, it was written for the model's own metric
                given_mode = group.get("mode") is not None
                group.monitor = f"val/{model_class.best_metric}" if given_mode else watched[0]
                if not given_mode and watched[1] is not None:
                    group.mode = watched[1]
            if group.get("mode") is None:
                group.mode = monitored_mode(model_class, group.monitor, key)
            watched = (group.monitor, group.mode)
        if config.get("ckpt_path") and config.model.get("init_args") is not None:
            # LightningCLI put the checkpoint's hyperparameters in: its weights replace init_from's,
            # and compiling or not is this run's choice.
            for name, value in {**getattr(self, "_run_options", {}), "init_from": None}.items():
                config.model.init_args[name] = value

    def instantiate_classes(self) -> None:
        """With --ckpt_path the checkpoint brings the weights: pretrained nets read or download none, so
        resuming, testing and predicting work offline and without the original weights file."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        with weights_from_checkpoint() if config.get("ckpt_path") else nullcontext():
            super().instantiate_classes()

    def after_instantiate_classes(self) -> None:
        """The model is told the run's settings, which TensorBoard's HPARAMS tab compares runs by."""
        self.model.settings_to_compare = run_settings(self.config[self.subcommand] if self.subcommand else self.config)

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        """A checkpoint of other classes (or another input shape) is refused before Lightning loads it
        and before the fit claims a run folder. Every Trainer writes checkpoints atomically with sha256
        records and carries RNG states; it prints rich's model summary (without zero FLOPs) and, in a
        terminal, rich's progress bar; a fit validates its last epoch."""
        ckpt_path = self.config_init[self.subcommand].get("ckpt_path") if self.subcommand else None
        if ckpt_path:
            check_checkpoint_fits(self.model, self.datamodule, Path(ckpt_path))
        config = (self.config_init[self.subcommand] if self.subcommand else self.config_init).get("trainer") or {}
        kwargs.setdefault("plugins", self.run_safety.plugins(config.get("plugins")))
        callbacks = config.get("callbacks") or []
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
        extra = [EpochProgressBar()] if config.get("enable_progress_bar") and sys.stdout.isatty() else []
        if config.get("enable_model_summary", True) is not False and not any(
            isinstance(callback, ModelSummary) for callback in callbacks
        ):
            extra.append(ModelSummaryTable())
            config["enable_model_summary"] = False  # Lightning adds no summary of its own (nor says so)
        extra.append(LastEpochValidation())  # a run never ends on an unvalidated epoch
        config["callbacks"] = [*callbacks, *extra]
        trainer = super().instantiate_trainer(**kwargs)
        self.run_safety.equip(trainer)  # RNG states in checkpoints; a fit's loggers share one run folder
        if trainer.progress_bar_callback is None:
            trainer.callbacks.append(PlainTextProgress())
        return trainer

    # --- after fit: test the best checkpoint ----------------------------------------------
    def after_fit(self) -> None:
        callback = self.trainer.checkpoint_callback
        if isinstance(callback, RunCheckpoint) and callback.stop_signal is not None:
            raise callback.interruption(self.trainer)
        if self.trainer.interrupted:
            return
        if self.trainer.fast_dev_run:  # a smoke test: one test batch too, with the weights as they are
            if getattr(self.datamodule, "has_test_split", True):
                self.trainer.test(self.model, datamodule=self.datamodule, verbose=True)
            return
        stopper = self.trainer.early_stopping_callback
        if isinstance(stopper, EarlyStoppingOnBest) and stopper.stopped_epoch and self.trainer.is_global_zero:
            print(
                f"Early stopping: {stopper.monitor} did not improve for {stopper.wait_count} validations; "
                f"stopped after epoch {stopper.stopped_epoch + 1}."
            )
        callback = self.trainer.checkpoint_callback
        best = callback.best_model_path if callback is not None else ""
        if not getattr(self.datamodule, "has_test_split", True):
            print("This data set has no test split: skipping the test of the best checkpoint.")
        else:
            if not best and self.trainer.is_global_zero:
                fix = (
                    "validation is off (--trainer.limit_val_batches 0)"
                    if self.trainer.limit_val_batches == 0
                    else "validate at least once: lower --trainer.check_val_every_n_epoch or raise --trainer.max_epochs"
                )
                print(
                    "No best checkpoint: no validation ran (or it never logged the monitored metric), so the test "
                    f"evaluates the weights of the last step; {fix}"
                )
            with stop_on_signal("the test after training", TEST_AFTER_FIT_STOPPED):
                self.test_results = self.trainer.test(
                    self.model, datamodule=self.datamodule, ckpt_path=best or None, verbose=True
                )
        log_dir = self.trainer.log_dir  # a collective call under DDP: every rank asks
        if self.trainer.is_global_zero and log_dir is not None:
            for logger in self.trainer.loggers:
                print(describe_run(logger))
            if best:
                print(f"Best checkpoint: {best}")

    # --- validate, test: Ctrl-C or SIGTERM stops them in one line ------------------------
    def validate(self, **kwargs: Any) -> Any:
        """Trainer.validate, stopped at once by a signal (see src/checkpointing/signal_stops.py)."""
        with stop_on_signal("validate", EVALUATION_STOPPED):
            return self.trainer.validate(**kwargs)

    def test(self, **kwargs: Any) -> Any:
        """Trainer.test, stopped at once by a signal (see src/checkpointing/signal_stops.py)."""
        with stop_on_signal("test", EVALUATION_STOPPED):
            return self.trainer.test(**kwargs)

    # --- predict: a CSV of predictions for the user's file or folder -----------------------
    def predict(self, model: Any, datamodule: Any, ckpt_path: str | None = None, **_: Any) -> None:
        """Predict `--input` with a trained checkpoint and write `--output` (CSV)."""
        config = self.config_init[self.subcommand]
        if ckpt_path is None:
            raise UserInputError("predict needs a trained model: add --ckpt_path best, last or a checkpoint file")
        if self.trainer.world_size > 1:
            raise UserInputError("predict runs on one device: add --trainer.devices 1")
        output, source = Path(config.output), Path(config.input)
        checkpoint_dir = getattr(self.trainer.checkpoint_callback, "dirpath", None)  # when the config names one
        check_prediction_output(
            output, source, Path(ckpt_path), config.overwrite, Path(checkpoint_dir) if checkpoint_dir else None
        )
        with stop_on_signal("predict", f"nothing was written to {output}"):
            # The same Predictor a server or a notebook uses (src/tools/predictor.py); the data module gives the
            # checkpoint's data state, or fits it on the training data for a checkpoint without one.
            restore_data_state(datamodule, Path(ckpt_path))
            # float64 when asked; else the weights' own dtype (a precision-64 run's checkpoint alone stays float64)
            dtype = torch.float64 if str(self.trainer.precision).startswith("64") else None
            device = self.trainer.strategy.root_device
            predictor = load_predictor(ckpt_path, device, datamodule.prediction_state(), dtype)
            # The views to average are a run option, as in validate and test: the model's, as given.
            for name in ("tta_flip", "tta_translate"):
                if hasattr(model, name):
                    setattr(predictor, name, getattr(model, name))
            inputs, predictions = predictor.predict_file(source, config.skip_bad_images)
            check_same_predictions(output, list(predictions), config.overwrite)
            rows = write_prediction_csv(output, inputs, predictions)
        renamed = {old: new for old, new in input_column_names(list(inputs), list(predictions)).items() if old != new}
        if renamed:
            kept = ", ".join(f"{old} as {new}" for old, new in renamed.items())
            print(f"The input's columns named like the predictions are kept under other names: {kept}")
        print(f"Wrote {rows} predictions to {output}")
