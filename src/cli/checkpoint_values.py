"""Config values that differ from the checkpoint's: LightningCLI would silently use the checkpoint's.

With `--ckpt_path`, LightningCLI rebuilds the model from the hyperparameters stored in the
checkpoint, so a value the user gave (`--model.net.init_args.hidden_sizes '[8]'`, a new
learning rate) would be dropped without a word. Here a different net fails (its weights could
not load anyway) and every other difference is reported in one line before the run starts. A
resumed fit uses the data settings it is given; where they differ from its run's, that is printed too.
"""

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jsonargparse import Namespace

from src.checkpointing.checkpoint_io import load_structure
from src.checkpointing.stored_run import stored_config
from src.class_paths import class_from_path
from src.errors import UserInputError
from src.modules.nets.pretrained import rebuild_init_args


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    """{'net.init_args.hidden_sizes': [512, 512], ...} from nested dicts and Namespaces."""
    if isinstance(value, Namespace):
        value = value.as_dict()
    if isinstance(value, Mapping):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flat(item, f"{prefix}{key}."))
        return flat
    if isinstance(value, tuple):
        value = list(value)
    return {prefix.rstrip("."): value}


def _model_hparams(checkpoint: Path) -> dict[str, Any]:
    state = load_structure(checkpoint)
    hparams = dict(state.get("hyper_parameters") or {})
    hparams.pop("_instantiator", None)
    class_path = hparams.pop("_class_path", None)
    return {"class_path": class_path, "init_args": hparams} if class_path else {"init_args": hparams}


def _net_as_restored(model: dict[str, Any]) -> dict[str, Any]:
    """The model's values with its net's init_args as a checkpoint rebuilds it: where the starting
    weights come from (a torchvision name or a local file, timm's pretrained) and freezing are
    left out, as the checkpoint brings the weights; the preprocessing they imply is kept."""
    init_args = model.get("init_args") or {}
    net = init_args.get("net")
    if not isinstance(net, Mapping) or not isinstance(net.get("class_path"), str):
        return model
    try:
        rebuilt = rebuild_init_args(class_from_path(net["class_path"]), net.get("init_args") or {})
    except Exception:  # a net this check cannot rebuild: compare the values as given
        return model
    return {**model, "init_args": {**init_args, "net": {**net, "init_args": rebuilt}}}


def check_given_values(model_config: Namespace, checkpoint: Path, ignored: set[str], fitting: bool = False) -> None:
    """Fail if the given model differs from the checkpoint's in class or net; report other differences.

    `ignored` names arguments not to compare: those linked from the data module (the config
    holds only their defaults) and run options the checkpoint does not override (`compile`). Unless
    `fitting`, where the net's starting weights came from is not compared (the checkpoint brings them).
    """
    # Evaluating, the checkpoint's weights are all that is used; a resumed fit also trains on with the
    # given freezing, so it compares the net's values as given.
    as_used = (lambda model: model) if fitting else _net_as_restored
    saved = _flat(as_used(_model_hparams(checkpoint)))
    given = _flat(as_used(model_config.as_dict()))
    if saved.get("class_path") and given.get("class_path") and saved["class_path"] != given["class_path"]:
        raise UserInputError(
            f"{checkpoint} holds a {saved['class_path']} but the config gives model {given['class_path']}: "
            "use the config the checkpoint was trained with"
        )
    differences = [
        (key.removeprefix("init_args."), given[key], saved[key])
        for key in sorted(given.keys() & saved.keys())
        if key != "class_path" and key.removeprefix("init_args.") not in ignored and given[key] != saved[key]
    ]
    shape = [item for item in differences if item[0].startswith("net.")]
    if shape:
        key, mine, theirs = shape[0]
        raise UserInputError(
            f"model.{key} is {mine!r} here but {theirs!r} in {checkpoint}: a different net cannot load its weights. "
            "Give the config the checkpoint was trained with, or --ckpt_path alone (its own config is stored in it), "
            "or drop a --model flag that changed the net"
        )
    if differences:
        listed = "; ".join(f"model.{key} {theirs!r} (given {mine!r})" for key, mine, theirs in differences)
        print(f"Using the checkpoint's values, not the given ones: {listed}")


def report_data_changes(data_config: Namespace, checkpoint: Path) -> None:
    """A resumed fit trains on the data it is given now: print where that differs from the data
    settings of the checkpoint's run (`--data.dataset moons` on a circles run), so it is never silent."""
    try:
        saved = _flat(stored_config(load_structure(checkpoint), checkpoint)["data"])
    except UserInputError:  # a checkpoint without a readable record of its run's config: nothing to compare
        return
    given = _flat(data_config)
    # A path is a Path when parsed and text when stored: compare what they say.
    changed = [key for key in sorted(given.keys() & saved.keys()) if _as_stored(given[key]) != _as_stored(saved[key])]
    if changed:
        listed = "; ".join(
            f"data.{key.removeprefix('init_args.')} {_as_stored(given[key])!r} (the run had {saved[key]!r})"
            for key in changed
        )
        print(f"Resuming on other data settings than the checkpoint's run: {listed}")


def _as_stored(value: Any) -> Any:
    """A parsed value as a run's stored config writes it (paths as text)."""
    return os.fspath(value) if isinstance(value, os.PathLike) else value
