"""What every trial of a study shares: the config values it does not sweep.

A study compares its trials, so a worker that joins it with other fixed values (fewer epochs,
another batch size, another seed) or another search space (other ranges or choices, which Optuna
refuses mid-study or mixes silently) would add trials that cannot be compared with the others and
steer the sampler with them. The first command of a study keeps its fixed values in the study;
a later one with other values is refused in one line naming them.
"""

import dataclasses
import json
import time
from typing import Any

import optuna

from src.errors import UserInputError
from src.sweeps.space import Param

# Config sections that do not change what a trial measures: which files were read, what is saved and where.
NOT_COMPARED_SECTIONS = ("config", "checkpoint", "ckpt_path", "weights_only", "__default_config__")
# The Trainer settings that change what a trial measures (the rest: devices, logging, progress bars).
COMPARED_TRAINER_KEYS = (
    "max_epochs",
    "min_epochs",
    "max_steps",
    "min_steps",
    "max_time",
    "limit_train_batches",
    "limit_val_batches",
    "overfit_batches",
    "fast_dev_run",
    "val_check_interval",
    "check_val_every_n_epoch",
    "accumulate_grad_batches",
    "gradient_clip_val",
    "gradient_clip_algorithm",
    "limit_test_batches",
    "precision",
    "deterministic",
    "callbacks",
    "plugins",
    "reload_dataloaders_every_n_epochs",
)
# Where a machine keeps its data and files and how it loads them (may differ between the machines of
# one study), the config file a section came from, and what is only printed.
NOT_COMPARED_KEYS = (
    "data_dir",
    "cache_dir",
    "csv_path",
    "weights_file",
    "download",
    "num_workers",
    "pin_memory",
    "persistent_workers",
    "compile",
    "__path__",
    "verbose",
    "log_rank_zero_only",
)
SPACE_PREFIX = "sweep.space."  # the settings that record the search space
# Compared since a later version: a study kept before holds none, which means the default then.
COMPARED_SINCE = {"trainer.fast_dev_run": json.dumps(False)}
WAIT_FOR_CREATOR_S = 10.0
STUDY_ATTR = "fixed_settings"


def fixed_settings(config: Any, swept: list[str]) -> dict[str, str]:
    """The config's values that every trial shares, as `full.key: JSON value`: everything but the
    swept keys (`model.init_args.optimizer.init_args.lr`, all below them too), the Trainer settings
    that do not change a result, and where this machine keeps its data."""
    values = config.as_dict()
    trainer = values.get("trainer") or {}
    values = {key: value for key, value in values.items() if key not in (*NOT_COMPARED_SECTIONS, "trainer")}
    values["trainer"] = {key: trainer.get(key) for key in COMPARED_TRAINER_KEYS}
    flat: dict[str, str] = {}
    _flatten("", values, flat)
    return {
        key: value
        for key, value in flat.items()
        if key.rsplit(".", 1)[-1] not in NOT_COMPARED_KEYS
        and not any(key == full or key.startswith(full + ".") for full in swept)
    }


def space_settings(params: list[Param]) -> dict[str, str]:
    """What the space tries for each swept key, as `sweep.space.<key>: JSON` (only the fields given)."""
    flat: dict[str, str] = {}
    for param in params:
        tried = {
            field.name: value
            for field in dataclasses.fields(param)
            if field.name != "key" and (value := getattr(param, field.name)) != field.default
        }
        _flatten(f"{SPACE_PREFIX}{param.key}.", tried, flat)
    return flat


def _flatten(prefix: str, value: Any, into: dict[str, str]) -> None:
    if isinstance(value, dict) and value:
        for key, inner in value.items():
            _flatten(f"{prefix}{key}.", inner, into)
    else:  # 1.0 in YAML and 1 on the command line are one value
        number = isinstance(value, float) and value.is_integer() and abs(value) < 2**53
        into[prefix.rstrip(".")] = json.dumps(int(value) if number else value, sort_keys=True, default=str)


def check_same_settings(study: optuna.Study, settings: dict[str, str], created: bool) -> None:
    """Keep the fixed values of the study this command `created`; refuse to add trials to one whose
    values differ. A study just created by another command gets its values within seconds; one from
    before these records (or whose creator died) takes this command's."""
    kept = None if created else study.user_attrs.get(STUDY_ATTR)
    deadline = time.monotonic() + WAIT_FOR_CREATOR_S
    while kept is None and not created and not study.trials and time.monotonic() < deadline:
        time.sleep(0.5)
        kept = study.user_attrs.get(STUDY_ATTR)
    if kept is None:
        study.set_user_attr(STUDY_ATTR, settings)
        return
    kept = {**{key: value for key, value in COMPARED_SINCE.items() if key in settings}, **kept}
    if not any(key.startswith(SPACE_PREFIX) for key in kept):  # kept before the space was: it takes this one's
        kept = {**kept, **{key: value for key, value in settings.items() if key.startswith(SPACE_PREFIX)}}
        study.set_user_attr(STUDY_ATTR, kept)
    differ = sorted(key for key in kept.keys() | settings.keys() if kept.get(key) != settings.get(key))
    if differ:
        shown = "; ".join(f"{key} {kept.get(key, '(none)')}, here {settings.get(key, '(none)')}" for key in differ[:3])
        more = f" (and {len(differ) - 3} more)" if len(differ) > 3 else ""
        raise UserInputError(
            f"study {study.study_name} runs its trials with other fixed values than this command: {shown}{more}; "
            "give the values of the study to add trials to it, or another --sweep.study_name to start a new one"
        )
