"""`predict`, `test`, `validate` and `export` from a checkpoint alone: its run's config becomes the --config.

`python train.py predict --ckpt_path model.ckpt --input photos/` names no model or data class,
which LightningCLI needs. The checkpoint holds its run's resolved config (see
src.checkpointing.stored_run), so its model and data sections are given as the first
`--config`: flags after it still override them (`--data.data_dir new_photos/` for a test),
and TemplateCLI restores the data module's state from the checkpoint before anything reads
data, so the training data need not be there.
"""

from pathlib import Path

import yaml

from src.checkpointing.checkpoint_io import load_structure
from src.checkpointing.runs import check_checkpoint
from src.checkpointing.stored_run import stored_config
from src.errors import UserInputError

FROM_CHECKPOINT = ("validate", "test", "predict", "export")


def _option(args: list[str], name: str) -> str | None:
    """The value of the last `--name VALUE` or `--name=VALUE` in args (the one the parser keeps), else None."""
    value = None
    for index, arg in enumerate(args):
        if arg == name and index + 1 < len(args):
            value = args[index + 1]
        elif arg.startswith(f"{name}="):
            value = arg.split("=", 1)[1]
    return value


def _configs(args: list[str]) -> list[str]:
    """The values of every `--config`/`-c` in args."""
    values = []
    for index, arg in enumerate(args):
        if arg in ("-c", "--config") and index + 1 < len(args):
            values.append(args[index + 1])
        elif arg.startswith("--config="):
            values.append(arg.split("=", 1)[1])
    return values


def _names_a_model(config: str) -> bool:
    """Whether a `--config` value (a YAML file, or YAML itself) has a model section; one that
    cannot be read here is taken to have one (the parser then says what is wrong with it)."""
    try:
        is_file = Path(config).is_file()
    except OSError:  # inline YAML longer than a file name may be
        is_file = False
    try:
        loaded = yaml.safe_load(Path(config).read_text() if is_file else config)
    except (OSError, ValueError, yaml.YAMLError):
        return True
    return not isinstance(loaded, dict) or "model" in loaded


def with_checkpoint_config(args: list[str]) -> list[str]:
    """`args` with the checkpoint's model and data config inserted as the first `--config`, when a
    subcommand that uses a checkpoint gets `--ckpt_path FILE` and no `--config` with a model
    section (none, or only partial ones such as configs/debug/*.yaml, which then apply on top);
    otherwise `args` unchanged."""
    if not args or args[0] not in FROM_CHECKPOINT or any(_names_a_model(value) for value in _configs(args)):
        return args
    ckpt_path = _option(args, "--ckpt_path")
    if ckpt_path is None:
        return args  # the parser says what is missing
    if ckpt_path in ("best", "last"):
        raise UserInputError(
            f"--ckpt_path {ckpt_path} needs the --config of its run, with its model section (to find its "
            "experiment folder); without one give the checkpoint file itself"
        )
    path = Path(ckpt_path)
    check_checkpoint(path)
    config = stored_config(load_structure(path), path)
    return [args[0], "--config", yaml.safe_dump(config, sort_keys=False), *args[1:]]
