"""LightningDataModules: where the data comes from and how it is batched."""

from src.datamodules.cifar10 import CIFAR10DataModule
from src.datamodules.circles import CirclesDataModule
from src.datamodules.regression import RegressionDataModule

__all__ = ["CIFAR10DataModule", "CirclesDataModule", "RegressionDataModule"]
