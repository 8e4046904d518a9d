"""LightningDataModules: where the data comes from and how it is batched."""

from src.datamodules.chunked_images import ChunkedImageDataModule
from src.datamodules.cifar10 import CIFAR10DataModule
from src.datamodules.image_folder import ImageFolderDataModule
from src.datamodules.regression import RegressionDataModule
from src.datamodules.tabular import TabularDataModule
from src.datamodules.torchvision_dataset import TorchvisionDataModule
from src.datamodules.toy_points import ToyPointsDataModule

__all__ = [
    "ChunkedImageDataModule",
    "CIFAR10DataModule",
    "ImageFolderDataModule",
    "ToyPointsDataModule",
    "RegressionDataModule",
    "TabularDataModule",
    "TorchvisionDataModule",
]
