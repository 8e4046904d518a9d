"""What every pretrained-backbone net shares: its head found and replaced, the backbone frozen,
and an InputAdapter that turns the data module's images into what the weights expect.

Pretrained nets (TorchvisionNet, TimmNet) put the adapter in front of their model, so checkpoints,
`predict`, serving and the exports all apply the weights' preprocessing with nothing to configure.
"""

import inspect
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

ImageSize = int | Literal["weights", "data"]
# `weights` values that mean random initialisation: YAML's null, and what jsonargparse passes for
# `--model.net.init_args.weights null` (a net nested in the model receives the string 'None').
NO_WEIGHTS = ("none", "null")


def given_weights(value: Any) -> Any:
    """`value`, or None where it means no weights (None, or a NO_WEIGHTS string in any case)."""
    return None if isinstance(value, str) and value.strip().lower() in NO_WEIGHTS else value


def head_name(net: nn.Module) -> str:
    """The qualified name of a net's output layer: the net's own `head_name` if it says, else
    its last `nn.Linear` (the classifier of every torchvision classification model but
    SqueezeNet, and of this project's nets), else its last `nn.Conv2d`."""
    named = getattr(net, "head_name", None)
    if isinstance(named, str):
        return named
    linear = [name for name, module in net.named_modules() if isinstance(module, nn.Linear)]
    conv = [name for name, module in net.named_modules() if isinstance(module, nn.Conv2d)]
    if not linear and not conv:
        raise ValueError(f"{type(net).__name__} has no Linear or Conv2d layer to use as its head")
    return (linear or conv)[-1]


def in_head(parameter_name: str, head: str) -> bool:
    return parameter_name == head or parameter_name.startswith(head + ".")


def replace_head(model: nn.Module, name: str, num_outputs: int) -> None:
    """Put a new, randomly initialised layer with `num_outputs` outputs where `name` is."""
    old = model.get_submodule(name)
    if isinstance(old, nn.Linear):
        new: nn.Module = nn.Linear(old.in_features, num_outputs, bias=old.bias is not None)
    elif isinstance(old, nn.Conv2d):
        new = nn.Conv2d(old.in_channels, num_outputs, old.kernel_size, old.stride, old.padding)
    else:
        raise ValueError(f"cannot replace a {type(old).__name__} head")
    parent, _, attribute = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attribute, new)


def freeze_all_but_head(net: nn.Module, head: str) -> None:
    """requires_grad False for every parameter of `net` outside its head `head`."""
    for parameter_name, parameter in net.named_parameters():
        if not in_head(parameter_name, head):
            parameter.requires_grad_(False)


class InputAdapter(nn.Module):
    """Images as the data module gives them -> images as the weights expect: 3 channels, resized,
    re-standardised (from `data_mean`/`data_std` to `mean`/`std`, when both are known)."""

    def __init__(
        self,
        channels: int,
        size: int | None,
        data_mean: Sequence[float] | None,
        data_std: Sequence[float] | None,
        mean: Sequence[float] | None,
        std: Sequence[float] | None,
    ) -> None:
        super().__init__()
        self.repeat = channels == 1
        self.size = size
        self.restandardise = None not in (data_mean, data_std, mean, std)
        if self.restandardise:  # x' = (x * data_std + data_mean - mean) / std = x * scale + shift

            def column(values: Sequence[float]) -> torch.Tensor:
                return torch.tensor([float(v) for v in values]).view(-1, 1, 1)

            scale = column(data_std) / column(std)  # type: ignore[arg-type]
            shift = (column(data_mean) - column(mean)) / column(std)  # type: ignore[arg-type]
            # Not persistent: computed from the net's arguments, so the state_dict holds only the model.
            self.register_buffer("scale", scale, persistent=False)
            self.register_buffer("shift", shift, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.restandardise:
            x = x * self.scale + self.shift
        if self.repeat:
            x = x.expand(-1, 3, -1, -1)
        if self.size is not None and tuple(x.shape[-2:]) != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        return x


def with_defaults(net_class: type, init_args: Mapping[str, Any]) -> dict[str, Any]:
    """`init_args` with every argument of `net_class` the config left out at its default."""
    bound = inspect.signature(net_class).bind_partial(**init_args)
    bound.apply_defaults()
    return dict(bound.arguments)


def pinned_init_args(
    init_args: Mapping[str, Any], size: int | None, mean: Any, std: Any, **no_weights: Any
) -> dict[str, Any]:
    """`init_args` that read no weights (`no_weights`, e.g. weights=None), train everything, and keep
    the preprocessing the weights brought: the image size and mean/std now written out."""
    return {
        **init_args,
        **no_weights,
        "freeze_backbone": False,
        "image_size": "data" if size is None else size,
        "mean": mean,
        "std": std,
    }


_CHECKPOINT_BRINGS_WEIGHTS: ContextVar[bool] = ContextVar("checkpoint_brings_weights", default=False)


@contextmanager
def weights_from_checkpoint() -> Iterator[None]:
    """Within it, pretrained nets read and download no weights (a checkpoint about to be loaded has
    them) but keep their weights' preprocessing: resuming, testing, predicting and serving a
    checkpoint then need neither the network nor the original weights file."""
    token = _CHECKPOINT_BRINGS_WEIGHTS.set(True)
    try:
        yield
    finally:
        _CHECKPOINT_BRINGS_WEIGHTS.reset(token)


def checkpoint_brings_weights() -> bool:
    """Whether a net being built now will get its weights from a checkpoint (see weights_from_checkpoint)."""
    return _CHECKPOINT_BRINGS_WEIGHTS.get()


def rebuild_init_args(net_class: type, init_args: Mapping[str, Any]) -> dict[str, Any]:
    """A net's init_args with anything that reads or downloads pretrained weights turned off and the
    weights' preprocessing pinned (nets with `offline_init_args`): the checkpoint brings the weights."""
    rebuild = getattr(net_class, "offline_init_args", None)
    return rebuild(init_args) if rebuild is not None else dict(init_args)
