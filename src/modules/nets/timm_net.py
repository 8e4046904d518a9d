"""Any timm model by name (`pip install -e '.[timm]'`), pretrained or not, with a head for the task.

    net:
      class_path: src.modules.nets.TimmNet
      init_args:
        name: convnext_nano.in12k_ft_in1k  # any timm.list_models() name, with or without its tag
        pretrained: true                   # timm's weights, from the Hugging Face Hub
        # weights_file: convnext_nano.safetensors   # or the same weights from a local file

Weights. `pretrained: true` downloads the weights as timm always does (from the Hugging Face Hub,
cached under $HF_HOME; `HF_ENDPOINT` names a mirror). Offline, give `weights_file`: a
.safetensors/.pth/.bin file of the model's own state_dict, saved on a machine that is online with
`python -c "import timm, torch; torch.save(timm.create_model('NAME', pretrained=True).state_dict(), 'NAME.pth')"`
(or downloaded from the model's Hub page); timm reads it through `pretrained_cfg_overlay`.

Head. timm builds the model with `num_classes=num_outputs`: pretrained weights of another class
count leave the classifier randomly initialised; `head_name` names it for UnfreezeBackbone and
the head's learning rate.

Preprocessing. The weights' input size and mean/std (timm's `resolve_model_data_config`) are
applied inside the net by an InputAdapter, as in TorchvisionNet: the data module keeps feeding its
own images, and checkpoints, `predict`, serving and exports all preprocess the same way. Without
pretrained weights the data's size is kept, unless the architecture needs its own (ViTs).
Models are built with `exportable=True`, timm's switch for layers that ONNX and torch.export take.
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from src.errors import UserInputError, first_line
from src.modules.nets.cnn import Shape, image_shape
from src.modules.nets.pretrained import (
    ImageSize,
    InputAdapter,
    checkpoint_brings_weights,
    freeze_all_but_head,
    given_weights,
    pinned_init_args,
    with_defaults,
)

TIMM_MISSING = "TimmNet needs timm, an optional extra: pip install -e '.[timm]'"


def import_timm() -> Any:
    """timm, or one line saying how to install it."""
    try:
        import timm
    except ImportError:
        raise UserInputError(TIMM_MISSING) from None
    return timm


def module_name(model: nn.Module, module: nn.Module) -> str:
    """The qualified name of `module` inside `model`."""
    return next(name for name, candidate in model.named_modules() if candidate is module)


def create_model(
    timm: Any, name: str, num_outputs: int, weights_file: str | None, pretrained: bool, **kwargs: Any
) -> nn.Module:
    """timm.create_model, with a missing file, an offline download or foreign weights as one line."""
    overlay = None
    if checkpoint_brings_weights():
        weights_file, pretrained = None, False
    if weights_file is not None:
        path = Path(weights_file)
        if not path.is_file():
            raise UserInputError(f"model.net.init_args.weights_file {path}: no such file (a .safetensors/.pth file)")
        overlay = {"file": str(path)}
    loaded = pretrained or overlay is not None
    # Built with the weights' own class count, so every tensor must load (timm loads a head of
    # another size leniently, which would also let a foreign file through), then given the task's head.
    classes = int(timm.models.get_pretrained_cfg(name).num_classes) if loaded else num_outputs
    try:
        model = timm.create_model(
            name, pretrained=loaded, pretrained_cfg_overlay=overlay, num_classes=classes, exportable=True, **kwargs
        )
    except (OSError, RuntimeError) as error:  # hub errors are OSErrors; a foreign file is a RuntimeError
        reason = first_line(error, 160)
        if overlay is not None:
            raise UserInputError(
                f"model.net.init_args.weights_file {weights_file} does not load into timm's {name} ({reason}); "
                "give the state_dict of that same architecture"
            ) from None
        saved = f"{name.split('.')[0]}.pth"
        raise UserInputError(
            f"could not download timm's weights for {name} ({reason}). Offline? On a machine with internet run "
            f"`python -c \"import timm, torch; torch.save(timm.create_model('{name}', pretrained=True).state_dict(), "
            f"'{saved}')\"`, copy {saved} here and give --model.net.init_args.weights_file {saved}"
        ) from None
    if classes != num_outputs:
        model.reset_classifier(num_outputs)
    return model


def preprocessing(
    timm: Any,
    pretrained_cfg: Mapping[str, Any],
    loaded: bool,
    image_size: ImageSize,
    mean: list[float] | None,
    std: list[float] | None,
) -> tuple[int | None, list[float] | None, list[float] | None]:
    """The side images are resized to (None: the data's) and the mean/std the model expects (None:
    the data module's), from the weights' config: see the module docstring."""
    config = timm.data.resolve_data_config({}, pretrained_cfg=dict(pretrained_cfg))
    if image_size == "weights":
        fixed = loaded or bool(pretrained_cfg.get("fixed_input_size"))
        size = int(config["input_size"][-1]) if fixed else None
    else:
        size = None if image_size == "data" else int(image_size)
    mean = mean if mean is not None else (list(config["mean"]) if loaded else None)
    std = std if std is not None else (list(config["std"]) if loaded else None)
    return size, mean, std


class TimmNet(nn.Module):
    """A timm model with a new head of `num_outputs` outputs and its weights' preprocessing.

    Args:
        input_shape: (channels, height, width) of the images (given by the data module).
        num_outputs: outputs of the new head (given by the module).
        name: a timm model name, optionally with its weights' tag (`resnet50.a1_in1k`).
        pretrained: load timm's weights for `name` (downloaded from the Hugging Face Hub).
        weights_file: load the weights from this local file instead (implies pretrained).
        freeze_backbone: train only the head.
        image_size: side images are resized to in the net: `weights` (the weights' input size when
            pretrained or when the architecture needs a fixed size, else the data's), `data`, or a number.
        mean, std: the standardisation the model expects (None: the weights', when pretrained).
        data_mean, data_std: the standardisation the data module applied (see TorchvisionNet).
        model_kwargs: more keyword arguments for `timm.create_model` (`drop_path_rate`, ...).
    """

    def __init__(
        self,
        input_shape: Shape,
        num_outputs: int,
        name: str = "resnet18",
        pretrained: bool = False,
        weights_file: str | None = None,
        freeze_backbone: bool = False,
        image_size: ImageSize = "weights",
        mean: list[float] | None = None,
        std: list[float] | None = None,
        data_mean: list[float] | None = None,
        data_std: list[float] | None = None,
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        timm = import_timm()
        weights_file = given_weights(weights_file)
        channels, _, _ = image_shape(input_shape)
        if channels not in (1, 3):
            raise ValueError(f"timm models here take 3-channel (or grayscale) images, got {channels} channels")
        if not timm.is_model(name):
            raise UserInputError(f"model.net.init_args.name {name!r} is not a timm model; see timm.list_models()")
        try:
            timm.models.get_pretrained_cfg(name)
        except RuntimeError as error:  # an architecture with a tag it has no weights for
            family = name.split(".")[0]
            raise UserInputError(
                f"model.net.init_args.name {name!r}: {first_line(error)} See timm.list_pretrained('{family}*')"
            ) from None
        self.model = create_model(timm, name, num_outputs, weights_file, pretrained, **(model_kwargs or {}))
        self.image_size, self.mean, self.std = preprocessing(
            timm, self.model.pretrained_cfg, pretrained or weights_file is not None, image_size, mean, std
        )
        self.adapter = InputAdapter(channels, self.image_size, data_mean, data_std, self.mean, self.std)
        classifier = self.model.get_classifier()
        if isinstance(classifier, tuple):  # distilled models: two heads; the first is the class head
            classifier = classifier[0]
        self.head_name = f"model.{module_name(self.model, classifier)}"
        if freeze_backbone:
            freeze_all_but_head(self, self.head_name)

    @classmethod
    def offline_init_args(cls, init_args: Mapping[str, Any]) -> dict[str, Any]:
        """init_args that rebuild this net with the same preprocessing without reading any weights
        (a checkpoint or an export brings them): for predict, serve and export on any machine."""
        args = with_defaults(cls, init_args)
        loaded = bool(args["pretrained"]) or given_weights(args["weights_file"]) is not None
        timm = import_timm()
        cfg = timm.models.get_pretrained_cfg(args["name"], allow_unregistered=True)
        size, mean, std = preprocessing(timm, cfg.to_dict(), loaded, args["image_size"], args["mean"], args["std"])
        return pinned_init_args(init_args, size, mean, std, pretrained=False, weights_file=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.adapter(x))
