"""One-target regression on synthetic data: a straight line or a noisy wave with a known true function.

A CSV file of your own is read by TabularDataModule (configs/tabular_regression.yaml).
"""

from typing import Literal

import torch

from src.datamodules.in_memory import InMemoryDataModule
from src.datamodules.splits import check_fractions, split_indices
from src.datamodules.standardisation import fit_standardisation, standardise
from src.errors import UserInputError


def wave_function(x: torch.Tensor) -> torch.Tensor:
    """The wave's true function: y = x + 2 sin(x)."""
    return x + 2 * torch.sin(x)


class RegressionDataModule(InMemoryDataModule):
    """One feature x and one target y from one of two sources.

    - `linear`: X = arange(0, 1, 0.02), y = weight * X + bias (0.7 and 0.3), no noise.
    - `wave`: `n_samples` x drawn uniformly in [0, 20], y = x + 2 sin(x) plus Gaussian noise
      whose standard deviation grows along x: noise * (1 + x / 10).

    Args:
        source: which of the two sources above.
        n_samples: number of wave points.
        noise: noise scale of the wave (its standard deviation at x = 0).
        weight: slope of the linear source.
        bias: intercept of the linear source.
        standardize: scale features to zero mean and unit variance, fitted on the training split.
        shuffle_split: draw the splits at random; False keeps the file/x order (the course's
            linear example trains on the first 80% and tests on the last 20%).
        val_fraction: share of the samples held out for validation.
        test_fraction: share of the samples held out for testing.
        batch_size: training batch size; None (default) trains on the whole split at once.
        eval_batch_size: validation/test batch size; None is the whole split.
        seed: seed of the wave's noise, the split and the shuffling.
    """

    def __init__(
        self,
        source: Literal["linear", "wave"] = "wave",
        n_samples: int = 1000,
        noise: float = 0.3,
        weight: float = 0.7,
        bias: float = 0.3,
        standardize: bool = True,
        shuffle_split: bool = True,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        batch_size: int | None = None,
        eval_batch_size: int | None = None,
        seed: int = 42,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, seed)
        check_fractions(val_fraction, test_fraction)
        if n_samples < 10 or noise < 0:
            raise UserInputError("data.n_samples must be >= 10 and data.noise >= 0")
        self.source = source
        self.n_samples = n_samples
        self.noise = noise
        self.weight = weight
        self.bias = bias
        self.standardize = standardize
        self.shuffle_split = shuffle_split
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.raw_inputs: dict[str, torch.Tensor] = {}
        self.feature_mean = torch.zeros(1)
        self.feature_std = torch.ones(1)
        self.feature_names = ["x"]
        self.target_name = "y"
        self.input_shape: tuple[int, ...] = (1,)

    def generate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All inputs (N x features) and targets (N x 1), float32, before standardisation."""
        if self.source == "linear":
            x = torch.arange(0, 1, 0.02).unsqueeze(1)
            return x, self.weight * x + self.bias
        generator = torch.Generator().manual_seed(self.seed)
        x = 20 * torch.rand(self.n_samples, 1, generator=generator)
        spread = self.noise * (1 + x / 10)
        return x, wave_function(x) + spread * torch.randn(x.shape, generator=generator)

    @property
    def has_test_split(self) -> bool:
        """False with `test_fraction` 0: the fit then ends without testing (nothing is held out)."""
        return self.test_fraction > 0

    has_true_function = True  # the targets come from a known function (the figures draw it)

    def true_function(self, x: torch.Tensor) -> torch.Tensor:
        """The noise-free target of raw (unstandardised) inputs x (linear and wave only)."""
        if self.source == "linear":
            return self.weight * x + self.bias
        return wave_function(x)

    def true_targets(self, split: str) -> torch.Tensor:
        """Noise-free targets of a split (linear and wave only), for the noise floor."""
        return self.true_function(self.raw_inputs[split])

    def noise_floor(self, split: str = "test") -> float:
        """MSE of the true function on a split: the best any model can expect there."""
        targets = self.splits[split][1]
        return torch.mean((self.true_targets(split) - targets) ** 2).item()

    def setup(self, stage: str | None = None) -> None:
        if self.splits or stage == "predict":  # prediction uses the checkpoint's standardisation
            return
        x, y = self.generate()
        parts = split_indices(len(x), self.val_fraction, self.test_fraction, self.seed, self.shuffle_split)
        self.raw_inputs = {name: x[index] for name, index in parts._asdict().items()}
        if self.standardize and not self.restored:  # a trained model keeps its standardisation
            self.feature_mean, self.feature_std = fit_standardisation(self.raw_inputs["train"])
        self.splits = {
            name: (self.transform(self.raw_inputs[name]), y[index]) for name, index in parts._asdict().items()
        }

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the training split's standardisation (identity when it is off)."""
        if not self.standardize:
            return x
        return standardise(x, self.feature_mean, self.feature_std)

    # --- the standardisation travels in checkpoints, so predicting needs no training data ---
    def state_dict(self) -> dict[str, object]:
        return {
            "feature_names": self.feature_names,
            "target_name": self.target_name,
            "class_names": [],
            "feature_mean": self.feature_mean,  # 0 and 1 when standardize is off
            "feature_std": self.feature_std,
            "fill_values": None,
            "id_columns": None,
        }

    def load_state_dict(self, state_dict: dict[str, object]) -> None:
        self.feature_mean, self.feature_std = state_dict["feature_mean"], state_dict["feature_std"]
        self.restored = True

    def input_normalization(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        return (self.feature_mean, self.feature_std) if self.standardize else None
