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
    """The value of `--name VALUE` or `--name=VALUE` in args, else None."""
    for index, arg in enumerate(args):
        if arg == name and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
    return None


def with_checkpoint_config(args: list[str]) -> list[str]:
    """`args` with the checkpoint's model and data config inserted as `--config`, when a subcommand
    that uses a checkpoint gets `--ckpt_path FILE` and no `--config`; otherwise `args` unchanged."""
    has_config = any(arg in ("-c", "--config") or arg.startswith("--config=") for arg in args)
    if not args or args[0] not in FROM_CHECKPOINT or has_config:
        return args
    ckpt_path = _option(args, "--ckpt_path")
    if ckpt_path is None:
        return args  # the parser says what is missing
    if ckpt_path in ("best", "last"):
        raise UserInputError(
            f"--ckpt_path {ckpt_path} needs the --config of its run (to find its experiment folder); "
            "without a config give the checkpoint file itself"
        )
    path = Path(ckpt_path)
    check_checkpoint(path)
    config = stored_config(load_structure(path), path)
    return [args[0], "--config", yaml.safe_dump(config, sort_keys=False), *args[1:]]
