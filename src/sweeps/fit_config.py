"""What a sweep reads from the `fit` config before any trial runs: the config itself, the
model's metric, the logger that gives each trial its folder; and what a sweep refuses."""

import inspect
from typing import Any

from src.class_paths import class_from_path
from src.cli.args_from_python import args_from_python
from src.cli.template_cli import TemplateCLI
from src.errors import UserInputError


class _Parsed(Exception):
    def __init__(self, config: Any) -> None:
        self.config = config


def read_config(fit_args: list[str], cli_class: type[TemplateCLI] = TemplateCLI) -> Any:
    """The fully resolved `fit` config of these arguments (base.yaml, --config files, flags),
    parsed and validated as `fit` would, but with nothing instantiated or run."""

    class ParseOnly(cli_class):  # type: ignore[misc,valid-type]
        def before_instantiate_classes(self) -> None:
            super().before_instantiate_classes()
            raise _Parsed(self.config[self.subcommand])

    try:
        with args_from_python():
            ParseOnly(args=["fit", *fit_args])
    except _Parsed as parsed:
        return parsed.config
    raise AssertionError("the config was not parsed")  # pragma: no cover


def model_metric(config: Any) -> tuple[str, str]:
    """The model class's own best metric and its mode: ('acc', 'max'), ('mse', 'min')."""
    model_class = class_from_path(config.model.class_path)
    return model_class.best_metric, model_class.best_mode


def logger_settings(config: Any, command: str) -> dict[str, Any]:
    """The configured logger's save_dir and name; a sweep moves each run by these and `version`."""
    logger = config.trainer.logger
    class_path = getattr(logger, "class_path", None)
    if not class_path:
        raise UserInputError(
            f"{command} needs one trainer.logger (as in configs/base.yaml) to give each trial a folder"
        )
    logger_class = class_from_path(class_path)
    if not {"save_dir", "name", "version"} <= set(inspect.signature(logger_class).parameters):
        raise UserInputError(
            f"{command} gives each trial its own folder through the logger's save_dir, name and version, "
            f"which {logger_class.__name__} does not take: use TensorBoardLogger or CSVLogger"
        )
    save_dir = str(logger.init_args.save_dir)
    if "://" in save_dir:
        raise UserInputError(
            f"{command} keeps its study, tables and trials in a local folder; --trainer.logger.init_args.save_dir "
            f"{save_dir} is remote: give a local folder"
        )
    return {"save_dir": logger.init_args.save_dir, "name": logger.init_args.name or "", "version": None}


def check_one_device(config: Any, command: str) -> None:
    """Each trial runs on one device in this process (DDP would start this whole command again in each
    of its processes); a study uses more devices through more workers."""
    if (config.trainer.get("num_nodes") or 1) > 1 or config.trainer.get("devices") not in ("auto", 1, "1", None):
        more = "start several sweep workers with the same --sweep.study_name" if command == "sweep" else "run it alone"
        raise UserInputError(
            f"{command} runs each of its fits in this one process on one device: drop --trainer.devices/"
            f"--trainer.num_nodes ({more} instead)"
        )


def refuse_checkpoint(fit_args: list[str], command: str) -> None:
    """Every run of a sweep trains from scratch: a --ckpt_path is a mistake, named in one line."""
    if any(arg == "--ckpt_path" or arg.startswith("--ckpt_path=") for arg in fit_args):
        raise UserInputError(f"{command} trains every trial from scratch: drop --ckpt_path")
