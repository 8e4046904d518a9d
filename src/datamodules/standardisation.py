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


class PixelMoments:
    """Running per-channel sums of the pixels in [0, 1] of uint8 image batches (N x C x H x W),
    in float64 one batch at a time (no float copy of the set); parts summed apart (one per
    worker) merge into the whole set's moments."""

    def __init__(self) -> None:
        self.total: torch.Tensor | None = None
        self.squares: torch.Tensor | None = None
        self.low: torch.Tensor | None = None
        self.high: torch.Tensor | None = None
        self.count = 0

    def add(self, batch: torch.Tensor) -> None:
        """Count a uint8 batch's pixels in."""
        pixels = batch.to(torch.float64).transpose(0, 1).flatten(1) / 255
        self._merge(pixels.sum(1), pixels.square().sum(1), pixels.amin(1), pixels.amax(1), pixels.shape[1])

    def merge(self, other: "PixelMoments") -> None:
        """Count another part's sums in (an empty part changes nothing)."""
        if other.total is not None:
            self._merge(other.total, other.squares, other.low, other.high, other.count)  # type: ignore[arg-type]

    def _merge(
        self, total: torch.Tensor, squares: torch.Tensor, low: torch.Tensor, high: torch.Tensor, count: int
    ) -> None:
        if self.total is None or self.squares is None or self.low is None or self.high is None:
            self.total, self.squares, self.low, self.high = total, squares, low, high
        else:
            self.total, self.squares = self.total + total, self.squares + squares
            self.low, self.high = torch.minimum(self.low, low), torch.maximum(self.high, high)
        self.count += count

    def state(self) -> dict[str, object]:
        """The sums as a dict of tensors and an int, for `torch.save` (loadable with weights_only)."""
        return {"total": self.total, "squares": self.squares, "low": self.low, "high": self.high, "count": self.count}

    @classmethod
    def from_state(cls, state: dict[str, object]) -> "PixelMoments":
        """The moments that `state()` saved (a writer worker's, read back by `optimize`)."""
        moments = cls()
        if state["total"] is not None:
            moments._merge(state["total"], state["squares"], state["low"], state["high"], state["count"])  # type: ignore[arg-type]
        return moments

    def mean_std(self, source: str) -> tuple[list[float], list[float]]:
        """Per-channel mean and std, with the constant rule: a channel constant on the images
        (a blank one) keeps std 1."""
        if self.total is None or self.squares is None or self.low is None or self.high is None:
            raise UserInputError(f"no training image of {source} could be decoded")
        mean = self.total / self.count
        std = (self.squares / self.count - mean.square()).clamp_min(0).sqrt()
        return mean.tolist(), constant_safe_std(std, self.low == self.high).tolist()


def fit_pixel_standardisation(batches: Iterable[torch.Tensor], source: str) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the pixels in [0, 1] of uint8 image batches (N x C x H x W)
    (`PixelMoments`), with the constant rule."""
    moments = PixelMoments()
    for batch in batches:
        moments.add(batch)
    return moments.mean_std(source)
