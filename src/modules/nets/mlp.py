"""A multi-layer perceptron; with no hidden layers it is plain linear (or logistic) regression."""

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

Activation = Literal["relu", "tanh", "gelu", "silu", "leaky_relu", "sigmoid"]

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "leaky_relu": nn.LeakyReLU,
    "sigmoid": nn.Sigmoid,
}


class MLP(nn.Module):
    """Linear layers with an activation between them, and optional BatchNorm and dropout.

    Inputs of any shape are flattened: an image of shape (C, H, W) is C * H * W features.

    Args:
        input_shape: shape of one input (given by the data module), e.g. (2,) or (1, 8, 8);
            an int is a vector of that many features.
        out_features: number of outputs (given by the data module and the task).
        hidden_sizes: width of each hidden layer; empty for a single linear layer.
        activation: non-linearity after each hidden layer.
        batch_norm: BatchNorm1d before each activation.
        dropout: dropout probability after each activation (0 disables it).
    """

    def __init__(
        self,
        input_shape: int | Sequence[int],
        out_features: int,
        hidden_sizes: list[int] = [32, 32],  # noqa: B006 - read only; jsonargparse needs a literal default
        activation: Activation = "relu",
        batch_norm: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if any(size < 1 for size in hidden_sizes):
            raise ValueError(f"hidden_sizes must all be >= 1, got {hidden_sizes}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        layers: list[nn.Module] = []
        shape = (input_shape,) if isinstance(input_shape, int) else tuple(input_shape)
        if not shape or min(shape) < 1:
            raise ValueError(f"input_shape must be positive sizes, got {shape}")
        width = math.prod(shape)
        for size in hidden_sizes:
            layers.append(nn.Linear(width, size))
            if batch_norm:
                layers.append(nn.BatchNorm1d(size))
            layers.append(_ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = size
        layers.append(nn.Linear(width, out_features))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x.flatten(1))
