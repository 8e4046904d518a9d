"""Turn a trained checkpoint into files that need no Lightning: a plain state_dict,
a torch.export program, TorchScript and ONNX, each checked against the PyTorch model before it is kept.

- `net_state_dict.pt`: the bare net's weights, for `net.load_state_dict(torch.load(...))`
  with the net class named in `model.json`, as the PyTorch tutorials save models.
- `model.pt2`, `model.torchscript.pt` and `model.onnx`: the net with the input standardisation in front,
  so they take raw inputs (features in the data's units; images as float32 RGB or grayscale in
  [0, 1], at the size training used: `model.json` names it and how photos were resized)
  and return the net's outputs (logits for classifiers, the prediction for regression, in the
  target's units: a regressor that learnt its target standardised has the scale-back behind its
  net), for any batch size. `model.pt2` is a torch.export `ExportedProgram` (TorchScript's successor):
  `torch.export.load("model.pt2").module()(inputs)`. ONNX is written by the torch.export-based
  exporter (`torch.onnx.export(..., dynamo=True)`), as model.json records.
"""

import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch import LightningDataModule
from torch import nn

from src.checkpointing.atomic_files import TEMP_MARK, write_atomically
from src.checkpointing.checkpoint_io import EXPORT_STAGING_PREFIX, remove_stale_temp_files, sha256_of
from src.checkpointing.signal_stops import signals_held
from src.class_paths import class_from_path
from src.datamodules.class_names import class_names
from src.errors import UserInputError, first_line
from src.modules.nets.pretrained import rebuild_init_args
from src.modules.task import TaskModule
from src.tools.prediction_output import in_checkpoint_folder

ExportFormat = Literal["state_dict", "pt2", "torchscript", "onnx"]
ALL_FORMATS: tuple[ExportFormat, ...] = ("state_dict", "pt2", "torchscript", "onnx")
# The file each format writes into --output_dir, and the description beside them.
FILE_NAMES = {
    "state_dict": "net_state_dict.pt",
    "pt2": "model.pt2",
    "torchscript": "model.torchscript.pt",
    "onnx": "model.onnx",
}
DESCRIPTION = "model.json"


def _earlier_record(folder: Path) -> dict[str, Any] | None:
    """The model.json an earlier export wrote in `folder`; None when it holds none."""
    try:
        record = json.loads((folder / DESCRIPTION).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and "exporters" in record and "checkpoint" in record else None


def _exported_from(folder: Path) -> Path | None:
    """The checkpoint an earlier export in `folder` was made from (its model.json), resolved; None
    when the folder holds no description written by export."""
    record = _earlier_record(folder)
    try:
        return (folder / record["checkpoint"]).resolve() if record is not None else None
    except TypeError:
        return None


def settle_earlier_export(folder: Path, earlier: dict[str, Any] | None, record: dict[str, Any]) -> list[str]:
    """The files of an earlier export in `folder` in formats not written now: kept, and added to `record`,
    when made from the same checkpoint bytes (one format at a time adds up); removed otherwise, as they
    hold other weights than model.json now describes. Returns the names removed."""
    if earlier is None or "checkpoint_sha256" not in earlier:  # none, or written before exports recorded it
        return []
    same_weights = earlier.get("checkpoint_sha256") == record["checkpoint_sha256"]
    removed = []
    for kind, name in dict(earlier.get("files") or {}).items():
        if kind in record["files"] or kind not in FILE_NAMES or name != FILE_NAMES[kind]:
            continue
        if not (folder / name).is_file():
            continue
        difference = (earlier.get("max_abs_difference") or {}).get(kind)
        if same_weights and isinstance(difference, (int, float)):
            record["files"][kind] = name
            record["max_abs_difference"][kind] = difference
            if kind in EXPORTERS:
                record["exporters"][kind] = EXPORTERS[kind]
        else:
            (folder / name).unlink()
            removed.append(name)
    return removed


def check_export_folder(
    folder: Path, checkpoint: Path, formats: tuple[str, ...], overwrite: bool, checkpoint_dir: Path | None = None
) -> None:
    """Refuse, before anything is exported, a `--output_dir` that would lose something: a file, a
    checkpoints folder (even with --overwrite), or files of the same names that an export of this
    checkpoint did not write (unless --overwrite): the user's own, or another checkpoint's export."""
    if folder.exists() and not folder.is_dir():
        raise UserInputError(f"--output_dir {folder} is a file: give a folder (it is made if missing)")
    if in_checkpoint_folder(folder.resolve() / DESCRIPTION, checkpoint, checkpoint_dir):
        raise UserInputError(
            f"--output_dir {folder} is a checkpoints folder, which export never writes to; choose another folder"
        )
    names = [*(FILE_NAMES[kind] for kind in formats), DESCRIPTION]
    existing = [name for name in names if (folder / name).exists()]
    if existing and not overwrite and _exported_from(folder) != checkpoint.resolve():
        raise UserInputError(
            f"--output_dir {folder} already holds {', '.join(existing)}, not written by an export of {checkpoint}: "
            "give another --output_dir, or add --overwrite true to replace them"
        )


# How each program file is made, written into model.json.
EXPORTERS = {
    "pt2": "torch.export.export, saved with torch.export.save (batch dimension dynamic)",
    "torchscript": "torch.jit.trace, saved with torch.jit.save",
    "onnx": "torch.onnx.export(dynamo=True): the torch.export-based exporter (batch dimension dynamic)",
}
# Exported outputs must match PyTorch's within this (float32 rounding in other kernels).
TOLERANCE = {"atol": 1e-4, "rtol": 1e-4}
CHECK_SAMPLES = 64


class Standardize(nn.Module):
    """(x - mean) / std, with mean and std as buffers that travel with the exported model."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean.float().clone())
        self.register_buffer("std", std.float().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Unstandardize(Standardize):
    """y * std + mean: a regressor's standardised output back in the target's units (buffers, as above)."""

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.std + self.mean


Normalization = tuple[torch.Tensor, torch.Tensor] | None


def input_normalization(datamodule: LightningDataModule) -> Normalization:
    """The data module's (mean, std) for raw inputs, if it standardises them."""
    return getattr(datamodule, "input_normalization", lambda: None)()


def raw_input_model(net: nn.Module, normalization: Normalization, target_scale: Normalization = None) -> nn.Module:
    """The net behind the input standardisation and before the target's scale (where there are any), in eval mode."""
    layers = [
        *([Standardize(*normalization)] if normalization is not None else []),
        net,
        *([Unstandardize(*target_scale)] if target_scale is not None else []),
    ]
    return (layers[0] if len(layers) == 1 else nn.Sequential(*layers)).eval()


def target_scale_of(module: TaskModule) -> Normalization:
    """A regressor's (mean, std) of its training target when it learnt the target standardised, else None."""
    mean, std = getattr(module, "target_mean", None), getattr(module, "target_std", None)
    if mean is None or std is None or (float(mean) == 0.0 and float(std) == 1.0):
        return None
    return mean.detach().cpu(), std.detach().cpu()


def example_inputs(input_shape: tuple[int, ...], normalization: Normalization, count: int) -> torch.Tensor:
    """Inputs in the raw units the exported model takes, to trace it and check it."""
    generator = torch.Generator().manual_seed(0)
    if len(input_shape) == 3:  # images as float RGB in [0, 1]
        return torch.rand(count, *input_shape, generator=generator)
    inputs = torch.randn(count, *input_shape, generator=generator)
    return inputs if normalization is None else inputs * normalization[1] + normalization[0]


def image_units(input_shape: tuple[int, ...]) -> str:
    return f"float32 {'RGB' if input_shape[0] == 3 else 'grayscale' if input_shape[0] == 1 else 'channels'} in [0, 1]"


def load_trained_weights(module: TaskModule, datamodule: LightningDataModule, ckpt_path: Path) -> None:
    """Load a checkpoint's weights into the module and its data state (standardisation)."""
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    try:
        module.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as error:
        raise UserInputError(
            f"{ckpt_path} does not fit this config's model ({first_line(error)}); "
            "export with the config the checkpoint was trained with"
        ) from None
    state = checkpoint.get(type(datamodule).__qualname__)
    if state is not None:
        datamodule.load_state_dict(state)


def net_description(module: TaskModule) -> dict[str, Any]:
    """How to rebuild the bare net with plain PyTorch: class path, positional and keyword args."""
    net = module.hparams.get("net", {})
    class_path = net.get("class_path") if isinstance(net, dict) else None
    if class_path is None:
        class_path = f"{type(module.net).__module__}.{type(module.net).__qualname__}"
    input_shape, num_outputs = module.net_sizes
    # A 1-D shape is written as its length (MLP(2, 1), as the tutorials write it; every net takes
    # an int there); an image shape as [C, H, W].
    shape: int | list[int] = input_shape[0] if len(input_shape) == 1 else list(input_shape)
    # A pretrained net rebuilds without fetching weights, its preprocessing pinned (offline_init_args);
    # the weights come from net_state_dict.pt.
    init_args = rebuild_init_args(type(module.net), net.get("init_args", {}))
    return {"class_path": class_path, "args": [shape, num_outputs], "init_args": init_args}


def build_net(description: dict[str, Any]) -> nn.Module:
    """The bare net from `net_description`'s record, as a user would build it."""
    net_class = class_from_path(description["class_path"])
    return net_class(*description["args"], **description["init_args"])


def checked_difference(expected: torch.Tensor, actual: torch.Tensor, path: Path, what: str) -> float:
    """Largest absolute difference between the exported file's outputs and PyTorch's. Beyond
    TOLERANCE the file is deleted and the command fails, so a wrong export is never left behind."""
    actual = torch.as_tensor(actual, dtype=expected.dtype)
    difference = (expected - actual).abs().max().item()
    if not torch.allclose(expected, actual, **TOLERANCE):
        path.unlink(missing_ok=True)
        raise UserInputError(
            f"the {what} export differs from PyTorch by {difference:.3g} (allowed: atol {TOLERANCE['atol']}, "
            f"rtol {TOLERANCE['rtol']}), so {path.name} was not kept; leave {what.lower()} out of --formats"
        )
    return difference


def batch_dimension() -> dict[int, Any]:
    """The inputs' first dimension, dynamic: any batch size from 1."""
    return {0: torch.export.Dim("batch", min=1)}


def export_program(model: nn.Module, inputs: torch.Tensor, path: Path) -> None:
    """A torch.export ExportedProgram with a dynamic batch dimension, saved as .pt2."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(model, (inputs,), dynamic_shapes=(batch_dimension(),))
    with warnings.catch_warnings():
        # torch's archive writer notes that the weights of a CPU program form no "complete tensor" group
        warnings.filterwarnings("ignore", message="No complete tensor found in the group")
        torch.export.save(program, str(path))


def run_program(path: Path, inputs: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.export.load(str(path)).module()(inputs)


def export_onnx(model: nn.Module, inputs: torch.Tensor, path: Path) -> None:
    """ONNX with a dynamic batch dimension, by the torch.export-based exporter (dynamo=True, said
    explicitly: it is the default only since torch 2.9)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            (inputs,),
            dynamo=True,
            input_names=["input"],
            output_names=["output"],
            dynamic_shapes=(batch_dimension(),),
            verbose=False,
        )
    program.save(str(path))


def run_onnx(path: Path, inputs: torch.Tensor) -> torch.Tensor:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"input": inputs.numpy()})[0])


def export_checkpoint(
    module: TaskModule,
    datamodule: LightningDataModule,
    ckpt_path: Path,
    output_dir: Path,
    formats: tuple[ExportFormat, ...] = ALL_FORMATS,
) -> dict[str, Any]:
    """Write the chosen formats and `model.json` to `output_dir`; returns the record written."""
    load_trained_weights(module, datamodule, ckpt_path)
    earlier = _earlier_record(output_dir)
    module = module.cpu().eval()
    net = module.evaluation_net()
    normalization = input_normalization(datamodule)  # after loading: the checkpoint's standardisation
    target_scale = target_scale_of(module)
    model = raw_input_model(net, normalization, target_scale)
    input_shape = tuple(module.hparams.get("input_shape", ()))
    inputs = example_inputs(input_shape, normalization, CHECK_SAMPLES)
    with torch.no_grad():
        expected = model(inputs)
    made = not output_dir.exists()
    output_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(output_dir)  # what an export killed outside Python's reach (kill -9) left
    staging = output_dir / f"{EXPORT_STAGING_PREFIX}{TEMP_MARK}{os.getpid()}"  # checked here, then moved in together
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        record = _write_formats(module, datamodule, ckpt_path, output_dir, staging, formats, net, inputs, expected)
        # The files and their description are replaced together: a signal now waits for the end, then stops.
        with signals_held(f"the export to {output_dir} was completed first"):
            for staged in sorted(staging.iterdir()):
                os.replace(staged, output_dir / staged.name)
            removed = settle_earlier_export(output_dir, earlier, record)
            write_atomically(output_dir / DESCRIPTION, (json.dumps(record, indent=2) + "\n").encode())
            if removed:
                print(f"Removed {', '.join(removed)} from {output_dir}: exported earlier from other weights")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if made and not any(output_dir.iterdir()):  # a failed or stopped export into a folder of its own
            output_dir.rmdir()
    return record


def _write_formats(
    module: TaskModule,
    datamodule: LightningDataModule,
    ckpt_path: Path,
    output_dir: Path,
    staging: Path,
    formats: tuple[ExportFormat, ...],
    net: nn.Module,
    inputs: torch.Tensor,
    expected: torch.Tensor,
) -> dict[str, Any]:
    """Each format written into `staging` and checked against PyTorch's `expected` (of `net` on `inputs`,
    with the data's standardisation); returns the record model.json will hold."""
    normalization = input_normalization(datamodule)
    target_scale = target_scale_of(module)
    model = raw_input_model(net, normalization, target_scale)
    input_shape = tuple(module.hparams.get("input_shape", ()))
    description = net_description(module)
    record: dict[str, Any] = {
        # From the export folder (as it was: it travels without the checkpoint), so an export of the same
        # checkpoint named from another folder knows its own files, and no home folder is written down.
        "checkpoint": os.path.relpath(ckpt_path.resolve(), output_dir.resolve()),
        "checkpoint_sha256": sha256_of(ckpt_path),  # which weights: a checkpoint file can be rewritten
        "net": description,
        "input": {
            "shape": ["batch", *input_shape],
            "units": image_units(input_shape) if len(input_shape) == 3 else "float32 features, in the data's units",
            # Images: the size, colour mode and resizing that training used (how to bring a photo to "shape").
            "preprocessing": getattr(datamodule, "preprocessing", lambda: None)(),
            "standardization": None
            if normalization is None
            else {
                "mean": normalization[0].flatten().tolist(),
                "std": normalization[1].flatten().tolist(),
                "note": "net_state_dict.pt expects standardised inputs; pt2, TorchScript and ONNX apply it themselves",
            },
        },
        "output": "logits" if hasattr(module, "probabilities") else "prediction",
        "target_standardization": None
        if target_scale is None
        else {
            "mean": float(target_scale[0]),
            "std": float(target_scale[1]),
            "note": "net_state_dict.pt predicts (target - mean) / std; pt2, TorchScript and ONNX give the target "
            "itself",
        },
        "classes": class_names(datamodule, module.num_classes) if hasattr(module, "probabilities") else None,
        "tolerance": TOLERANCE,
        "exporters": {kind: how for kind, how in EXPORTERS.items() if kind in formats},
        "files": {},
        "max_abs_difference": {},
    }
    if "state_dict" in formats:
        path = staging / FILE_NAMES["state_dict"]
        torch.save(net.state_dict(), path)
        rebuilt = build_net(description)
        rebuilt.load_state_dict(torch.load(path, weights_only=True))
        with torch.no_grad():
            actual = raw_input_model(rebuilt, normalization, target_scale)(inputs)
        record["files"]["state_dict"] = path.name
        record["max_abs_difference"]["state_dict"] = checked_difference(expected, actual, path, "state_dict")
    if "pt2" in formats:
        path = staging / FILE_NAMES["pt2"]
        export_program(model, inputs[:2], path)
        record["files"]["pt2"] = path.name
        record["max_abs_difference"]["pt2"] = checked_difference(expected, run_program(path, inputs), path, "pt2")
    if "torchscript" in formats:
        path = staging / FILE_NAMES["torchscript"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit's deprecation notice; the file format stays loadable
            torch.jit.save(torch.jit.trace(model, inputs[:2]), str(path))
            loaded = torch.jit.load(str(path))
        with torch.no_grad():
            actual = loaded(inputs)
        record["files"]["torchscript"] = path.name
        record["max_abs_difference"]["torchscript"] = checked_difference(expected, actual, path, "TorchScript")
    if "onnx" in formats:
        path = staging / FILE_NAMES["onnx"]
        export_onnx(model, inputs[:2], path)
        record["files"]["onnx"] = path.name
        record["max_abs_difference"]["onnx"] = checked_difference(expected, run_onnx(path, inputs), path, "ONNX")
    return record
