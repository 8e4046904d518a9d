"""Any torchvision classification model by name, pretrained or not, with its head fitted to the task.

    net:
      class_path: src.modules.nets.TorchvisionNet
      init_args:
        name: resnet18            # any name of torchvision.models.list_models(torchvision.models)
        weights: DEFAULT          # null (random init), a torchvision name, or a local state_dict file
        freeze_backbone: false    # true: train only the new head

Weights. `null` starts from random weights. A torchvision name (`DEFAULT`, `IMAGENET1K_V1`, ...)
is downloaded by torchvision and cached under $TORCH_HOME (~/.cache/torch/hub/checkpoints), as
torchvision always does; offline, that download fails with one line naming the alternative: a
local state_dict file (`.pth`/`.pt`, read with `torch.load(weights_only=True)`), saved on a
machine that is online with
`torch.save(torchvision.models.get_model("resnet18", weights="DEFAULT").state_dict(), "resnet18.pth")`.

Head. The model's last `nn.Linear` (its classifier: `fc` in ResNets, `classifier.1` in
EfficientNets, `heads.head` in ViTs, ...) is replaced by a new one with `num_outputs` outputs,
randomly initialised; SqueezeNet, which has none, has its last 1x1 convolution replaced.

Preprocessing. Pretrained weights expect images of their own size and standardisation (for
ImageNet weights: 224 x 224, mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225)). The net
reads them from the weights' `transforms()` (for a local file: from the architecture's DEFAULT
weights) and applies them itself, in an `InputAdapter` in front of the model: the data module
keeps feeding the images it always feeds (any size, standardised by its own statistics) and
the net resizes them (bilinear, antialiased) to the weights' crop size. Because the adapter is
inside the net, checkpoints, `predict` and the TorchScript/ONNX exports all apply the same
preprocessing with nothing else to configure. To standardise exactly as the weights were
trained, give `data_mean`/`data_std`, the statistics the data module standardises with
(CIFAR10DataModule: (0.4914, 0.4822, 0.4465) / (0.2470, 0.2435, 0.2616)); the adapter then maps
the data module's standardisation onto the weights'. Without them the data module's
standardisation is kept (both give inputs of about zero mean and unit variance per channel).
`image_size`, `mean` and `std` override the weights' values; `image_size: data` keeps the data
module's size (faster for small images such as CIFAR-10's, at some cost in accuracy).

A grayscale input (1 channel) is repeated to the 3 channels torchvision models take.
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn
from torchvision.models import get_model_weights

from src.errors import UserInputError, first_line
from src.modules.nets.cnn import Shape, image_shape
from src.modules.nets.pretrained import (
    ImageSize,
    InputAdapter,
    checkpoint_brings_weights,
    freeze_all_but_head,
    given_weights,
    head_name,
    in_head,
    pinned_init_args,
    replace_head,
    with_defaults,
)


def weights_entry(name: str, weights: str) -> Any:
    """The `WeightsEnum` member that `weights` (`DEFAULT`, `IMAGENET1K_V1`, ...) names for model `name`."""
    try:
        enum = get_model_weights(name)
    except (ValueError, KeyError):
        raise UserInputError(f"torchvision has no weights for {name}; use weights: null or a local file") from None
    try:
        return enum[weights]
    except KeyError:
        names = ", ".join(["DEFAULT", *(m for m in enum.__members__ if m != "DEFAULT")])
        raise UserInputError(
            f"model.net.init_args.weights {weights!r} is neither a file nor a torchvision weights name of {name} "
            f"({names}); give one of those or the path of a local state_dict file (.pth/.pt)"
        ) from None


def download_state_dict(name: str, entry: Any) -> dict[str, torch.Tensor]:
    """torchvision's own download (cached under $TORCH_HOME), with an offline failure as one line."""
    try:
        return entry.get_state_dict(progress=False, check_hash=True)
    except (OSError, RuntimeError) as error:  # URLError, HTTPError, socket errors, a bad hash
        reason = first_line(getattr(error, "reason", None) or error, 120)
        saved = f"{name}.pth"
        raise UserInputError(
            f"could not download torchvision's {entry} weights for {name} ({reason}). Offline? Use a local file: "
            f'on a machine with internet run `python -c "import torch, torchvision; torch.save(torchvision.models.'
            f"get_model('{name}', weights='{entry.name}').state_dict(), '{saved}')\"`, copy {saved} here and "
            f"give --model.net.init_args.weights {saved}"
        ) from None


def read_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise UserInputError(f"model.net.init_args.weights {path}: no such file (give a state_dict .pth/.pt file)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a damaged or foreign file
        detail = first_line(error, 100)
        raise UserInputError(f"model.net.init_args.weights {path} is not a readable state_dict ({detail})") from None
    if isinstance(state, dict) and "state_dict" in state:
        raise UserInputError(
            f"{path} is a Lightning checkpoint, not a bare state_dict: start from it with model.init_from instead"
        )
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserInputError(f"model.net.init_args.weights {path} does not hold a state_dict (a dict of tensors)")
    return state


def load_backbone(model: nn.Module, state: dict[str, torch.Tensor], head: str, where: str) -> None:
    """Load every tensor of `state` into `model`; the head's may differ in shape (other classes)."""
    own = model.state_dict()
    if not any(key in own for key in state):  # saved from a wrapper (this net's own state_dict: "model.")
        for prefix in ("model.", "module."):
            if all(key.startswith(prefix) for key in state):
                state = {key[len(prefix) :]: value for key, value in state.items()}
    state = {k: v for k, v in state.items() if not (in_head(k, head) and k in own and own[k].shape != v.shape)}
    wrong = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    missing = [k for k in own if k not in state and not in_head(k, head)]
    unexpected = [k for k in state if k not in own]
    if wrong or missing or unexpected:
        first = (wrong or missing or unexpected)[0]
        raise UserInputError(
            f"{where} does not fit this model: {len(missing)} tensors missing, {len(unexpected)} unexpected, "
            f"{len(wrong)} of another shape (first: {first}); was it saved from the same architecture?"
        )
    model.load_state_dict(state, strict=False)


def without_modules(state: dict[str, torch.Tensor], names: list[str]) -> dict[str, torch.Tensor]:
    """`state` without the tensors of the top-level modules `names` (heads this net drops), wherever
    its keys carry a wrapper's prefix (`model.`, `module.`)."""
    return {key: value for key, value in state.items() if not any(f".{name}." in f".{key}" for name in names)}


def is_weights_file(weights: str) -> bool:
    """Whether `weights` names a local state_dict file rather than a torchvision weights name."""
    path = Path(weights)
    return path.suffix.lower() in (".pth", ".pt") or path.exists() or "/" in weights


def preprocessing(
    name: str, weights: str | None, image_size: ImageSize, mean: list[float] | None, std: list[float] | None
) -> tuple[int | None, list[float] | None, list[float] | None]:
    """The side images are resized to (None: the data's) and the mean/std the model expects (None:
    the data module's), from the weights' `transforms()`; a local file takes the architecture's DEFAULT's."""
    entry = None
    if weights is not None:
        entry = default_entry(name) if is_weights_file(weights) else weights_entry(name, weights)
    preset = entry.transforms() if entry is not None else None
    if image_size == "weights":
        size = int(preset.crop_size[0]) if preset is not None else None
    else:
        size = None if image_size == "data" else int(image_size)
    expected_mean = list(preset.mean) if preset is not None else None
    expected_std = list(preset.std) if preset is not None else None
    if preset is not None and name in TRANSFORM_INPUT:  # what torchvision's transform_input feeds those weights
        expected_mean, expected_std = [0.5] * 3, [0.5] * 3
    mean = mean if mean is not None else expected_mean
    std = std if std is not None else expected_std
    return size, mean, std


# Architectures whose pretrained weights take pixels standardised by 0.5 and 0.5 (Google's own): torchvision
# builds them with `transform_input`, which maps its ImageNet-standardised input onto that.
TRANSFORM_INPUT = ("googlenet", "inception_v3")


def default_entry(name: str) -> Any:
    """The architecture's DEFAULT torchvision weights (their preprocessing), or None when it has none."""
    try:
        return get_model_weights(name).DEFAULT
    except (ValueError, KeyError, AttributeError):
        return None


class TorchvisionNet(nn.Module):
    """A torchvision classification model with a new head of `num_outputs` outputs.

    Args:
        input_shape: (channels, height, width) of the images (given by the data module).
        num_outputs: outputs of the new head (given by the module).
        name: torchvision model name (`resnet18`, `efficientnet_b0`, `mobilenet_v3_small`,
            `convnext_tiny`, ...).
        weights: None (random init), a torchvision weights name of that model (`DEFAULT`,
            `IMAGENET1K_V1`, ...; downloaded and cached by torchvision), or the path of a local
            state_dict file.
        freeze_backbone: train only the head (every other parameter gets requires_grad False).
        image_size: side the images are resized to in the net: `weights` (the weights' crop
            size when pretrained, else the data's size), `data` (never resize) or a number.
        mean, std: the standardisation the model expects (None: the weights').
        data_mean, data_std: the standardisation the data module applied; given, the net maps
            it onto `mean`/`std` exactly; None, the data module's is kept.
    """

    def __init__(
        self,
        input_shape: Shape,
        num_outputs: int,
        name: str = "resnet18",
        weights: str | None = None,
        freeze_backbone: bool = False,
        image_size: ImageSize = "weights",
        mean: list[float] | None = None,
        std: list[float] | None = None,
        data_mean: list[float] | None = None,
        data_std: list[float] | None = None,
    ) -> None:
        super().__init__()
        weights = given_weights(weights)
        channels, _, _ = image_shape(input_shape)
        if channels not in (1, 3):
            raise ValueError(f"torchvision models take 3-channel (or grayscale) images, got {channels} channels")
        if name not in torchvision.models.list_models(torchvision.models):
            raise UserInputError(
                f"model.net.init_args.name {name!r} is not a torchvision classification model; "
                "see torchvision.models.list_models(torchvision.models)"
            )
        self.name = name
        self.weights = weights
        self.freeze_backbone = freeze_backbone
        model = torchvision.models.get_model(name, weights=None)
        auxiliary = [aux for aux in ("AuxLogits", "aux1", "aux2") if getattr(model, aux, None) is not None]
        for aux in auxiliary:  # Inception/GoogLeNet: train on the main output only
            setattr(model, aux, None)
        if hasattr(model, "aux_logits"):
            model.aux_logits = False
        head = head_name(model)

        if weights is not None and not checkpoint_brings_weights():
            if is_weights_file(weights):
                path = Path(weights)
                state = without_modules(read_state_dict_file(path), auxiliary)
                load_backbone(model, state, head, f"model.net.init_args.weights {path}")
            else:
                entry = weights_entry(name, weights)
                state = without_modules(download_state_dict(name, entry), auxiliary)
                load_backbone(model, state, head, f"torchvision's {entry}")
        replace_head(model, head, num_outputs)
        self.model = model
        self.head_name = f"model.{head}"
        self.image_size, self.mean, self.std = preprocessing(name, weights, image_size, mean, std)
        for what, values in (("data_mean", data_mean), ("data_std", data_std), ("mean", self.mean), ("std", self.std)):
            if values is not None and len(values) not in (1, channels, 3):
                raise ValueError(f"{what} needs one value per channel, got {values}")
        self.adapter = InputAdapter(channels, self.image_size, data_mean, data_std, self.mean, self.std)
        if freeze_backbone:
            freeze_all_but_head(self, self.head_name)

    @classmethod
    def offline_init_args(cls, init_args: Mapping[str, Any]) -> dict[str, Any]:
        """init_args that rebuild this net with the same preprocessing without reading or fetching
        weights (a checkpoint or an export brings them): for predict, serve and export on any machine."""
        args = with_defaults(cls, init_args)
        weights = given_weights(args["weights"])
        size, mean, std = preprocessing(args["name"], weights, args["image_size"], args["mean"], args["std"])
        return pinned_init_args(init_args, size, mean, std, weights=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.adapter(x))
