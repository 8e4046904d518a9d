"""Two-dimensional toy classification: scikit-learn's circles, moons and blobs."""

from typing import Literal

import torch
from sklearn.datasets import make_blobs, make_circles, make_moons

from src.datamodules.in_memory import InMemoryDataModule
from src.datamodules.splits import check_fractions, split_indices
from src.errors import UserInputError


class ToyPointsDataModule(InMemoryDataModule):
    """Points from `make_circles` (default), `make_moons` or `make_blobs`, split and seeded.

    Args:
        dataset: which scikit-learn generator draws the points.
        n_samples: number of points in all splits together.
        noise: standard deviation of Gaussian noise (circles and moons).
        factor: scale of the inner circle relative to the outer one (circles).
        centers: number of blobs, i.e. classes (blobs).
        cluster_std: spread of each blob (blobs).
        n_features: dimensions of each point (blobs; circles and moons are always 2-D).
        random_state: seed of the generator, as in scikit-learn.
        val_fraction: share of the points held out for validation.
        test_fraction: share of the points held out for testing.
        batch_size: training batch size; None (default) trains on the whole split at once.
        eval_batch_size: validation/test batch size; None is the whole split.
        seed: seed of the split and of the shuffling.
    """

    def __init__(
        self,
        dataset: Literal["circles", "moons", "blobs"] = "circles",
        n_samples: int = 1000,
        noise: float = 0.03,
        factor: float = 0.8,
        centers: int = 4,
        cluster_std: float = 1.5,
        n_features: int = 2,
        random_state: int = 42,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        batch_size: int | None = None,
        eval_batch_size: int | None = None,
        seed: int = 42,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, seed)
        if n_samples < 10:
            raise UserInputError(f"data.n_samples must be >= 10, got {n_samples}")
        if noise < 0 or cluster_std <= 0:
            raise UserInputError("data.noise must be >= 0 and data.cluster_std > 0")
        if dataset == "blobs" and centers < 2:
            raise UserInputError(f"data.centers must be >= 2 for blobs, got {centers}")
        check_fractions(val_fraction, test_fraction)
        self.dataset = dataset
        self.n_samples = n_samples
        self.noise = noise
        self.factor = factor
        self.centers = centers
        self.cluster_std = cluster_std
        self.n_features = n_features if dataset == "blobs" else 2
        self.random_state = random_state
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.input_shape = (self.n_features,)
        self.num_classes = centers if dataset == "blobs" else 2

    def generate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All points (float32, N x features) and their labels (int64, N)."""
        if self.dataset == "circles":
            x, y = make_circles(self.n_samples, noise=self.noise, factor=self.factor, random_state=self.random_state)
        elif self.dataset == "moons":
            x, y = make_moons(self.n_samples, noise=self.noise, random_state=self.random_state)
        else:
            x, y = make_blobs(
                self.n_samples,
                n_features=self.n_features,
                centers=self.centers,
                cluster_std=self.cluster_std,
                random_state=self.random_state,
            )
        return torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.long)

    @property
    def has_test_split(self) -> bool:
        """False with `test_fraction` 0: the fit then ends without testing (nothing is held out)."""
        return self.test_fraction > 0

    @property
    def feature_names(self) -> list[str]:
        """Column names of the features in a CSV given to `train.py predict`: x1, x2, ..."""
        return [f"x{index + 1}" for index in range(self.n_features)]

    def state_dict(self) -> dict[str, object]:
        """What prediction needs: the feature names; the points are used as they are, classes are numbered."""
        return {
            "feature_names": self.feature_names,
            "target_name": "class",
            "class_names": [],
            "feature_mean": None,
            "feature_std": None,
            "fill_values": None,
            "id_columns": None,
        }

    def load_state_dict(self, state_dict: dict[str, object]) -> None:
        if state_dict["feature_names"] != self.feature_names:
            raise UserInputError(
                f"the checkpoint was trained on the features {state_dict['feature_names']}, not {self.feature_names}: "
                "give the data settings it was trained with"
            )
        self.restored = True

    def setup(self, stage: str | None = None) -> None:
        if self.splits or stage == "predict":
            return
        x, y = self.generate()
        parts = split_indices(len(x), self.val_fraction, self.test_fraction, self.seed)
        self.splits = {name: (x[index], y[index]) for name, index in parts._asdict().items()}
