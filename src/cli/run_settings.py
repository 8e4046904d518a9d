"""The settings a person compares runs by, flat, for TensorBoard's HPARAMS tab: the model's and the
data's arguments as the config gave them and the few Trainer options that change results, without
Lightning's bookkeeping keys (`_class_path`, `_instantiator`), optimizer implementation switches
(`fused`, `foreach`, ...) or arguments left at None."""

from typing import Any

from jsonargparse import Namespace

from src.modules.optimization import SCHEDULE_FIELDS

# Optimizer arguments that choose an implementation, not what is learnt.
IMPLEMENTATION_SWITCHES = frozenset({"foreach", "fused", "capturable", "differentiable", "maximize"})
TRAINER_SETTINGS = ("max_epochs", "max_steps", "precision", "accumulate_grad_batches", "gradient_clip_val")

Setting = bool | int | float | str


def run_settings(config: Namespace) -> dict[str, Setting]:
    """`model.optimizer: SGD`, `model.optimizer.lr: 0.1`, `data.batch_size: 64`, `trainer.max_epochs: 100`, ..."""
    given = config.as_dict()
    flat: dict[str, Setting] = {}
    for section in ("model", "data"):
        _flatten(section, given.get(section), flat)
    trainer = given.get("trainer") or {}
    for key in TRAINER_SETTINGS:
        if trainer.get(key) is not None:
            flat[f"trainer.{key}"] = _scalar(trainer[key])
    if given.get("seed_everything") is not None:
        flat["seed"] = _scalar(given["seed_everything"])
    return flat


def _flatten(prefix: str, value: Any, flat: dict[str, Setting]) -> None:
    if value is None:
        return
    if isinstance(value, dict):
        if "class_path" in value:  # a class chosen in the config: its name, then its arguments
            flat[prefix] = str(value["class_path"]).rsplit(".", 1)[-1]
            value = value.get("init_args") or {}
        if prefix == "model.scheduler" and value.get("name") in SCHEDULE_FIELDS:  # only what the schedule reads
            value = {key: value.get(key) for key in ("name", *SCHEDULE_FIELDS[value["name"]])}
        for key, item in value.items():
            if not key.startswith("_") and key not in IMPLEMENTATION_SWITCHES:
                _flatten(f"{prefix}.{key}", item, flat)
        return
    flat[prefix] = _scalar(value)


def _scalar(value: Any) -> Setting:
    return value if isinstance(value, (bool, int, float, str)) else str(value)
