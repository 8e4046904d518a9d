"""What a checkpoint keeps of its run besides weights: the resolved config and the data module's state.

Training stores the run's resolved config (YAML text, the same as the run folder's config.yaml)
under RUN_CONFIG_KEY and the run folder under RUN_FOLDER_KEY; Lightning stores the data module's
`state_dict()` (classes, image size, standardisation, ...) under the data module's class name. Together with the model's
hyperparameters they are all that predicting, testing or exporting needs.
"""

from pathlib import Path
from typing import Any

import yaml

from src.errors import UserInputError

RUN_CONFIG_KEY = "run_config"
RUN_FOLDER_KEY = "run_folder"  # the run folder of the fit that saved it (absolute path)


def missing_record(path: Path, what: str) -> UserInputError:
    """The one error for a checkpoint that lacks `what` (saved by plain Lightning, not by train.py)."""
    return UserInputError(
        f"{path} holds no {what} (train.py did not save it): train.py predict, validate, test and export take it with "
        "the --config it was trained with (and its training data); serve and load_predictor take only a "
        "checkpoint that needs nothing else: retrain with train.py fit to get one"
    )


def stored_config(checkpoint: dict[str, Any], path: Path) -> dict[str, Any]:
    """The model and data sections of the run config stored in `checkpoint` (loaded from `path`)."""
    text = checkpoint.get(RUN_CONFIG_KEY)
    if not isinstance(text, str):
        raise missing_record(path, "record of its run's config")
    try:
        config = yaml.safe_load(text) or {}
    except yaml.YAMLError:  # edited or damaged by hand: as good as absent
        raise missing_record(path, "readable record of its run's config") from None
    sections = config if isinstance(config, dict) else {}
    if not isinstance(sections.get("model"), dict) or not isinstance(sections.get("data"), dict):
        raise missing_record(path, "model and data config")
    return {"model": config["model"], "data": config["data"]}


def data_class_name(config: dict[str, Any]) -> str:
    """The key under which Lightning keeps the data module's state: its class name."""
    return str(config["data"]["class_path"]).rpartition(".")[2]


def stored_data_state(checkpoint: dict[str, Any], path: Path) -> dict[str, Any]:
    """The data module's state saved in `checkpoint`: what turns raw inputs into the model's inputs."""
    state = checkpoint.get(data_class_name(stored_config(checkpoint, path)))
    if not isinstance(state, dict):
        raise missing_record(path, "data state (classes, input size, standardisation)")
    return state
