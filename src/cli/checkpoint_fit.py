"""A checkpoint whose weights do not fit the model built for this data: refused before loading.

The model is built from the data (its classes, its input shape) and then the checkpoint's
weights are loaded into it. A checkpoint of another task, such as the newest run that `best`
picks after a fine-tune on other classes, would fail inside Lightning with a size mismatch;
here it is one line that names both class lists and what to give instead.
"""

from pathlib import Path
from typing import Any

from lightning.pytorch import LightningDataModule, LightningModule

from src.checkpointing.checkpoint_io import load_structure
from src.datamodules.class_names import class_names
from src.errors import UserInputError

# The data module options that say where its data comes from, as the user gave them.
DATA_SOURCES = ("data_dir", "csv_path")


def _listed(names: list[str] | None) -> str:
    return f"[{', '.join(names)}]" if names is not None else "(classes not recorded)"


def _saved_classes(state: dict[str, Any], datamodule: LightningDataModule | None) -> list[str] | None:
    """The checkpoint's classes: the names its data module kept, else its model's class count."""
    if datamodule is not None:
        saved = state.get(type(datamodule).__qualname__)
        if isinstance(saved, dict) and saved.get("class_names"):
            return [str(name) for name in saved["class_names"]]
    count = (state.get("hyper_parameters") or {}).get("num_classes")
    return [str(index) for index in range(count)] if isinstance(count, int) else None


def _data_classes(model: LightningModule, datamodule: LightningDataModule | None) -> list[str] | None:
    count = getattr(model, "num_classes", None)
    return class_names(datamodule, count) if isinstance(count, int) else None


def _data_source(datamodule: LightningDataModule | None) -> tuple[str, str]:
    """('--data.data_dir my_photos', '--data.data_dir'): where the data came from, and the flag to change it."""
    for option in DATA_SOURCES:
        value = getattr(datamodule, option, None)
        if value is not None:
            return f"--data.{option} {value}", f"--data.{option}"
    return "this data", "the data options"


def _first_misfit(own: dict[str, Any], saved: dict[str, Any]) -> str | None:
    """The first tensor that the checkpoint lacks, adds or shapes otherwise, described; None if all fit."""
    for key in sorted({*own, *saved}):
        mine, theirs = own.get(key), saved.get(key)
        if mine is None or theirs is None or tuple(mine.shape) != tuple(theirs.shape):
            shapes = [list(t.shape) if t is not None else "absent" for t in (theirs, mine)]
            return f"{key} is {shapes[0]} in the checkpoint, {shapes[1]} here"
    return None


def check_checkpoint_fits(model: LightningModule, datamodule: LightningDataModule | None, path: Path) -> None:
    """Fail in one line when `path` was trained on other classes than the data's, or when its
    weights do not fit the model built for this data (another input shape)."""
    state = load_structure(path)
    if not isinstance(state, dict):
        return
    saved, here = _saved_classes(state, datamodule), _data_classes(model, datamodule)
    other_classes = saved is not None and here is not None and saved != here
    misfit = _first_misfit(model.state_dict(), state.get("state_dict") or {})
    if not other_classes and misfit is None:
        return
    saved_data = state.get(type(datamodule).__qualname__) if datamodule is not None else None
    channels = saved_data.get("channels") if isinstance(saved_data, dict) else None
    if misfit is not None and channels is not None and channels != getattr(datamodule, "channels", channels):
        raise UserInputError(
            f"{path} was trained on {channels}-channel images, and --data.channels is {datamodule.channels} here "  # type: ignore[union-attr]
            f"({misfit}): give --data.channels {channels}, or --ckpt_path alone (its own config is stored in it)"
        )
    source, flag = _data_source(datamodule)
    problem = (
        f"{path} was trained on the classes {_listed(saved)}, but {source} has {_listed(here)}"
        if other_classes
        else f"{path} does not fit the model built for {source} ({misfit}; checkpoint's classes {_listed(saved)}, "
        f"the data's {_listed(here)})"
    )
    raise UserInputError(
        f"{problem}: give --ckpt_path a checkpoint trained on this data (best and last take the newest run of the "
        f"config's experiment; give each task its own with --trainer.logger.init_args.name), or give {flag} "
        "the data that checkpoint was trained on"
    )
