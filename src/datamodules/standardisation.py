"""Standardisation fitted on a training split: zero mean and unit variance per column, a
constant column only centred, so no later value of it is divided by about zero."""

from collections.abc import Iterable

import torch

from src.errors import UserInputError


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


def fit_pixel_standardisation(batches: Iterable[torch.Tensor], source: str) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the pixels in [0, 1] of uint8 image batches (N x C x H x W),
    summed in float64 one batch at a time (no float copy of the set), with the constant rule:
    a channel constant on them (a blank one) keeps std 1."""
    total = squares = low = high = None
    count = 0
    for batch in batches:
        pixels = batch.to(torch.float64).transpose(0, 1).flatten(1) / 255
        total = pixels.sum(1) if total is None else total + pixels.sum(1)
        squares = pixels.square().sum(1) if squares is None else squares + pixels.square().sum(1)
        low = pixels.amin(1) if low is None else torch.minimum(low, pixels.amin(1))
        high = pixels.amax(1) if high is None else torch.maximum(high, pixels.amax(1))
        count += pixels.shape[1]
    if total is None or squares is None or low is None or high is None:
        raise UserInputError(f"no training image of {source} could be decoded")
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(0).sqrt()
    return mean.tolist(), constant_safe_std(std, low == high).tolist()
