"""Standardisation fitted on a training split: zero mean and unit variance per column, a
constant column only centred, so no later value of it is divided by about zero."""

import torch


def constant_safe_std(std: torch.Tensor, constant: torch.Tensor) -> torch.Tensor:
    """`std` with 1 where the column is constant on the training split (as scikit-learn's
    StandardScaler does), or where its std underflowed to 0: such a column is only centred."""
    return torch.where(constant | (std == 0), torch.ones_like(std), std)


def fit_standardisation(train_x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-column mean and std of the training rows (N x F), with the constant-column rule."""
    mean = train_x.mean(dim=0)
    std = train_x.std(dim=0) if len(train_x) > 1 else torch.ones_like(mean)
    return mean, constant_safe_std(std, train_x.amax(dim=0) == train_x.amin(dim=0))


def standardise(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Rows in the data's units to the model's inputs: (x - mean) / std."""
    return (x - mean) / std
