"""A multi-layer perceptron; with no hidden layers it is plain linear (or logistic) regression."""

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

    Args:
        in_features: size of each input vector (given by the data module).
        out_features: number of outputs (given by the data module and the task).
        hidden_sizes: width of each hidden layer; empty for a single linear layer.
        activation: non-linearity after each hidden layer.
        batch_norm: BatchNorm1d before each activation.
        dropout: dropout probability after each activation (0 disables it).
    """

    def __init__(
        self,
        in_features: int,
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
        width = in_features
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
