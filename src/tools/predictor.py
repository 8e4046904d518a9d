"""A trained checkpoint as a plain-PyTorch predictor: the one path `train.py predict` takes, and
the one a server or a notebook uses.

    from src.tools.predictor import load_predictor

    predictor = load_predictor("model.ckpt")            # or device="cuda"
    predictor.classes                                   # ['pizza', 'steak', 'sushi']; None for a regressor
    predictor.predict(["a.jpg", PIL.Image.open("b.png")])    # images: file paths, PIL images or uint8 tensors
    # -> [{'class': 'sushi', 'probability': 0.93, 'probabilities': {'pizza': 0.02, ...}}, ...]
    predictor.predict([{"x1": 0.1, "x2": -0.7}])        # features: one dict per row, or {"x1": [...], ...},
    # -> [{'class': '1', ...}]                            # a pandas DataFrame, or an N x F array in feature order
    predictor.predict({"x": [0.5, 12.5]})               # a regressor: [{'prediction': 0.93}, ...]
    predictor.outputs(inputs)                           # the same as a tensor: probabilities N x classes,
                                                        # or predictions N x 1
    predictor.predict_file("new.csv")                   # what `train.py predict --input` writes: the input
                                                        # columns to echo and the prediction columns (text)

Everything comes from the checkpoint (no config, no training data, no Trainer): the net from the
model's hyperparameters, its weights (the weight average when the model kept one), and from the
data module's state how raw inputs become the model's inputs, exactly as training saw them:
images decoded by PIL, converted to RGB or grayscale, resized so they cover the training size and
center-cropped, then standardised by the training set's mean/std; features read by name,
missing cells filled with the training means (when training did) and standardised. Raw inputs
are never of the wrong shape silently: a missing feature, an unreadable image end in a
UserInputError naming it. Inputs run in batches of BATCH_SIZE, on `device`, in the weights' dtype
(or `dtype=`). No Lightning object is built, though importing src.datamodules imports Lightning.
"""

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from src.checkpointing.runs import check_checkpoint
from src.checkpointing.stored_run import missing_record, stored_data_state
from src.class_paths import class_from_path
from src.datamodules.batch_augment import normalize
from src.datamodules.csv_table import FLOAT32_MAX, read_feature_rows
from src.datamodules.image_decoding import decode, fit_to_size, image_tensor, read_file, read_images_to_predict
from src.datamodules.standardisation import standardise
from src.errors import UserInputError, first_line
from src.modules.nets.pretrained import weights_from_checkpoint
from src.modules.test_time_augmentation import augmented_logits
from src.tools.prediction_table import prediction_columns

BATCH_SIZE = 256  # inputs per forward pass


@dataclass(frozen=True)
class ImageInputs:
    """Images as training saw them: `channels` x `image_size`, standardised by `mean`/`std` (per channel)."""

    image_size: tuple[int, int]
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def raw(self, images: Any) -> torch.Tensor:
        """uint8 N x C x H x W from one image or a sequence of them (file paths or PIL images), or from
        uint8 images already decoded ((N x) C x H x W, any size: brought to the training size)."""
        if isinstance(images, torch.Tensor):
            if images.dtype != torch.uint8 or images.dim() not in (3, 4) or images.shape[-3] != self.channels:
                raise UserInputError(
                    f"images as a tensor must be uint8 (N x) {self.channels} x H x W with values 0-255, as decoded "
                    f"files are; got {images.dtype} of shape {tuple(images.shape)} (floats in [0, 1]: "
                    "(images * 255).round().to(torch.uint8)), or pass file paths or PIL images"
                )
            return fit_to_size(images if images.dim() == 4 else images.unsqueeze(0), self.image_size)
        items = [images] if isinstance(images, (str, Path, Image.Image)) else list(images)
        tensors = []
        for item in items:
            if isinstance(item, Image.Image):
                image = image_tensor(item, self.channels)
            else:
                image = decode(read_file(Path(item)), str(item), self.channels)
            tensors.append(fit_to_size(image, self.image_size))
        return torch.stack(tensors) if tensors else torch.empty(0, self.channels, *self.image_size, dtype=torch.uint8)

    def read_inputs(self, path: Path, skip_bad_images: bool = False) -> tuple[torch.Tensor, dict[str, list[str]]]:
        """An image file or every image under a folder (sorted), and their paths to echo; files that
        cannot be decoded are left out (and named) with `skip_bad_images`, else they stop it."""
        images, files = read_images_to_predict(path, self.image_size, self.channels, skip_bad_images)
        return images, {"file": files}

    def model_inputs(self, raw: torch.Tensor) -> torch.Tensor:
        return normalize(raw, self.mean, self.std)


@dataclass(frozen=True)
class FeatureInputs:
    """Feature rows as training saw them: columns by name, missing cells filled (or refused), standardised."""

    feature_names: list[str]
    mean: torch.Tensor | None
    std: torch.Tensor | None
    fill_values: torch.Tensor | None  # None: a missing cell is an error
    id_columns: list[str] | None  # the input columns echoed beside predictions; None: all

    def raw(self, rows: Any) -> torch.Tensor:
        """float32 N x F in the data's units, from a dict (one row, or columns of values), a sequence of
        dicts, a pandas DataFrame, or an N x F array in the order of `feature_names`."""
        if isinstance(rows, (str, Path)):
            raise UserInputError(
                f"predict takes feature rows (dicts, a DataFrame or an N x F array), not the path {str(rows)[:80]!r}: "
                "for a CSV file use predict_file"
            )
        if hasattr(rows, "columns") and hasattr(rows, "to_dict"):  # a pandas DataFrame
            rows = rows.to_dict("records")
        if isinstance(rows, Mapping):
            is_columns = bool(rows) and all(isinstance(v, Iterable) and not isinstance(v, str) for v in rows.values())
            if is_columns:
                columns = {name: list(column) for name, column in rows.items()}
                if len({len(column) for column in columns.values()}) > 1:
                    lengths = {name: len(column) for name, column in columns.items()}
                    raise UserInputError(f"columns of values must be equally long, got {lengths}")
                rows = [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)]
            else:
                rows = [rows]
        if isinstance(rows, Sequence) and rows and isinstance(rows[0], Mapping):
            cells = [[self._cell(row, name, index) for name in self.feature_names] for index, row in enumerate(rows)]
            x = torch.tensor(cells)
        else:
            x = torch.as_tensor(rows, dtype=torch.float32)
            width = len(self.feature_names)
            if x.numel() == 0:
                x = x.reshape(0, width)  # no rows
            elif x.dim() == 1 and width == 1:
                x = x.unsqueeze(1)  # one value per row
            elif x.dim() == 1 and len(x) == width:
                x = x.unsqueeze(0)  # one row
            if x.dim() != 2 or x.shape[1] != width:
                raise UserInputError(
                    f"an array of features must be N x {width}, its columns in the order {self.feature_names}; "
                    f"got shape {tuple(x.shape)} (or pass rows as dicts by feature name)"
                )
        return self._filled(x.float())

    def _cell(self, row: Mapping[str, Any], name: str, index: int) -> float:
        if name not in row:
            raise UserInputError(f"input row {index} has no feature {name!r}; the model needs {self.feature_names}")
        value = row[name]
        if value is None or (isinstance(value, str) and value == "") or type(value).__name__ == "NAType":
            return math.nan  # missing (pandas' NA too): filled as in training, or refused
        if isinstance(value, bool):  # JSON's true is no measurement, though Python's float() takes it as 1.0
            raise UserInputError(f"input row {index}: {name!r} is {str(value).lower()}, not a number")
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            raise UserInputError(f"input row {index}: {name!r} is {str(value)[:40]!r}, not a number") from None
        if isinstance(value, str) and math.isnan(number):  # "NaN" is text for a number, not a missing cell
            raise UserInputError(f"input row {index}: {name!r} is {value[:40]!r}, not a number (a missing value: null)")
        if abs(number) > FLOAT32_MAX:  # infinity too
            raise UserInputError(f"input row {index}: {name!r} is {str(value)[:40]!r}, too large for the model")
        return number

    def _filled(self, x: torch.Tensor) -> torch.Tensor:
        missing = torch.isnan(x)
        if not missing.any():
            return x
        if self.fill_values is None:
            row, column = (int(i) for i in missing.nonzero()[0])
            raise UserInputError(
                f"input row {row} has no value for {self.feature_names[column]!r}, and this model was trained to "
                "refuse missing values (data.fill_missing refuse)"
            )
        return torch.where(missing, self.fill_values.to(x.dtype).expand_as(x), x)

    def read_inputs(self, path: Path, skip_bad_images: bool = False) -> tuple[torch.Tensor, dict[str, list[str]]]:
        """The feature columns of a CSV file, and its columns to echo (`id_columns`, or all)."""
        if skip_bad_images:
            raise UserInputError("--skip_bad_images is for image inputs; this model predicts from the rows of a CSV")
        inputs, columns = read_feature_rows(path, self.feature_names, fill=self.fill_values)
        if self.id_columns is not None:
            absent = [name for name in self.id_columns if name not in columns]
            if absent:
                raise UserInputError(
                    f"{path} has no id column(s) {absent} (data.id_columns) to copy into the predictions; "
                    "add them, or set --data.id_columns '[]'"
                )
            columns = {name: columns[name] for name in self.id_columns}
        return inputs, columns

    def model_inputs(self, raw: torch.Tensor) -> torch.Tensor:
        if self.mean is None or self.std is None:
            return raw
        return standardise(raw, self.mean.to(raw.device), self.std.to(raw.device))


Inputs = ImageInputs | FeatureInputs


def input_preparation(state: Mapping[str, Any], path: Path) -> Inputs:
    """How raw inputs become the model's inputs, from a data module's `state_dict()`."""
    if "image_size" in state and state.get("mean") is not None:
        size = tuple(int(n) for n in state["image_size"])
        return ImageInputs((size[0], size[1]), int(state["channels"]), tuple(state["mean"]), tuple(state["std"]))
    if "feature_names" in state and "fill_values" in state:
        return FeatureInputs(
            list(state["feature_names"]),
            state.get("feature_mean"),
            state.get("feature_std"),
            state.get("fill_values"),
            state.get("id_columns"),
        )
    raise missing_record(path, "data state that says how to prepare inputs (its data module saved less then)")


def build_net(hparams: Mapping[str, Any], outputs: int) -> nn.Module:
    """The plain net of a model's hyperparameters, as the model built it: class(input_shape, outputs, **init_args)."""
    net = hparams.get("net")
    if not isinstance(net, Mapping) or "class_path" not in net:
        raise UserInputError("the checkpoint's hyperparameters name no net class (model.net): retrain with train.py")
    net_class = class_from_path(str(net["class_path"]))
    input_shape = tuple(int(n) for n in hparams["input_shape"])
    with weights_from_checkpoint():  # a pretrained net reads no weights file and downloads nothing
        return net_class(input_shape, outputs, **dict(net.get("init_args") or {}))


class Predictor:
    """A trained net with its input preparation and output names; see the module docstring."""

    def __init__(
        self,
        net: nn.Module,
        inputs: Inputs,
        classes: list[str] | None,
        target_name: str = "target",
        tta_flip: bool = False,
        tta_translate: int = 0,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        target_scale: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        self.device = torch.device(device)
        self.target_mean, self.target_std = target_scale  # a regressor's net predicts (target - mean) / std
        self.dtype = dtype
        self.net = net.to(self.device, dtype).eval()
        self.inputs = inputs
        self.classes = classes
        self.target_name = target_name
        self.tta_flip = tta_flip
        self.tta_translate = tta_translate

    @torch.no_grad()
    def _forward(self, model_inputs: torch.Tensor) -> torch.Tensor:
        x = model_inputs.to(self.device, self.dtype)
        # images: the views the model was evaluated with
        views = x.dim() == 4
        logits = augmented_logits(self.net, x, self.tta_flip, self.tta_translate) if views else self.net(x)
        if self.classes is None:
            # in float32 at least (a bf16 net's 1.23e6 would come back as 1236992), float64 for a float64 net
            wide = torch.float64 if logits.dtype == torch.float64 else torch.float32
            return logits.to(wide) * self.target_std + self.target_mean
        if len(self.classes) == 2 and logits.shape[1] == 1:  # one logit for two classes
            p = torch.sigmoid(logits.float())
            return torch.cat([1 - p, p], dim=1)
        return torch.softmax(logits.float(), dim=1)

    def run(self, raw: torch.Tensor) -> torch.Tensor:
        """Outputs for raw inputs already read (uint8 images or feature rows in the data's units)."""
        batches = [
            self._forward(self.inputs.model_inputs(raw[start : start + BATCH_SIZE].to(self.device)))
            for start in range(0, len(raw), BATCH_SIZE)
        ]
        width = len(self.classes) if self.classes is not None else 1
        return torch.cat(batches).cpu() if batches else torch.empty(0, width)

    def outputs(self, inputs: Any) -> torch.Tensor:
        """Probabilities (N x classes) of a classifier, or predictions (N x 1) of a regressor."""
        return self.run(self.inputs.raw(inputs))

    def predict(self, inputs: Any) -> list[dict[str, Any]]:
        """One dict per input, as `answers` says."""
        return self.answers(self.outputs(inputs))

    def answers(self, outputs: torch.Tensor) -> list[dict[str, Any]]:
        """One dict per row of outputs: a classifier's `class`, its `probability` and every class's
        `probabilities`; a regressor's `prediction`. The server answers with these too."""
        if self.classes is None:
            return [{"prediction": value} for value in outputs[:, 0].tolist()]
        results = []
        for row in outputs.tolist():
            best = max(range(len(row)), key=row.__getitem__)
            probabilities = dict(zip(self.classes, row, strict=True))
            results.append({"class": self.classes[best], "probability": row[best], "probabilities": probabilities})
        return results

    def predict_file(
        self, path: str | Path, skip_bad_images: bool = False
    ) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        """For a CSV file or an image file/folder: the input columns to echo (file names, or the CSV's
        columns) and the prediction columns (`class`, `probability`, `p_<class>`; or `predicted_<target>`).
        `skip_bad_images` leaves out (and names) image files that cannot be decoded."""
        raw, columns = self.inputs.read_inputs(Path(path), skip_bad_images)
        if len(raw) == 0:
            raise UserInputError(f"{path} holds no inputs to predict")
        return columns, prediction_columns(self.run(raw), self.classes, self.target_name)


def load_predictor(
    ckpt_path: str | Path,
    device: str | torch.device = "cpu",
    data_state: Mapping[str, Any] | None = None,
    dtype: torch.dtype | None = None,
) -> Predictor:
    """A Predictor of checkpoint `ckpt_path` (verified first), run on `device` in `dtype` (default: the
    dtype of its weights, float64 for a `--trainer.precision 64` run). `data_state` replaces the
    checkpoint's data state, for checkpoints that hold none, saved by plain Lightning (train.py passes
    its data module's)."""
    path = Path(ckpt_path)
    if not path.is_file():  # `last` and `best` are found through a run's config, which this has not
        raise UserInputError(f"checkpoint not found: {path} (give the .ckpt file of a run)")
    check_checkpoint(path)
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    hparams = checkpoint.get("hyper_parameters") or {}
    state = data_state if data_state is not None else stored_data_state(checkpoint, path)
    num_classes = hparams.get("num_classes")
    net = build_net(hparams, 1 if num_classes in (None, 2) else int(num_classes))
    prefix = "ema.module." if hparams.get("ema_decay") is not None else "net."
    weights = {key[len(prefix) :]: value for key, value in checkpoint["state_dict"].items() if key.startswith(prefix)}
    try:
        net.load_state_dict(weights)
    except RuntimeError as error:
        raise UserInputError(f"{path}: its weights do not fit its net ({first_line(error)})") from None
    classes = None
    if num_classes is not None:
        classes = [str(name) for name in state.get("class_names") or range(int(num_classes))]
        if len(classes) != num_classes:
            raise UserInputError(f"{path}: the model has {num_classes} classes but its data names {len(classes)}")
    if dtype is None:
        dtype = next((value.dtype for value in weights.values() if value.is_floating_point()), torch.float32)
    scale = {name: checkpoint["state_dict"].get(name) for name in ("target_mean", "target_std")}  # a regressor's
    target_scale = (0.0, 1.0) if None in scale.values() else (float(scale["target_mean"]), float(scale["target_std"]))
    return Predictor(
        net,
        input_preparation(state, path),
        classes,
        target_name=str(state.get("target_name") or "target"),
        tta_flip=bool(hparams.get("tta_flip", False)),
        tta_translate=int(hparams.get("tta_translate", 0)),
        device=device,
        dtype=dtype,
        target_scale=target_scale,
    )
