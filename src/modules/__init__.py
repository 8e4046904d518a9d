"""LightningModules: what is learned and measured, around a plain `nn.Module` net."""

from src.modules.classification import ClassificationModule
from src.modules.regression import RegressionModule

__all__ = ["ClassificationModule", "RegressionModule"]
