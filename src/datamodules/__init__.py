"""LightningDataModules: where the data comes from and how it is batched."""

from src.datamodules.circles import CirclesDataModule
from src.datamodules.regression import RegressionDataModule

__all__ = ["CirclesDataModule", "RegressionDataModule"]
