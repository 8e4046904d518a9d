"""Callbacks the template adds to the Trainer."""

from src.callbacks.classification_figures import ClassificationFigures
from src.callbacks.decision_boundary import DecisionBoundaryFigure
from src.callbacks.epoch_lines import EpochLines
from src.callbacks.patch_whitening import PatchWhitening
from src.callbacks.regression_figures import RegressionFigures
from src.callbacks.rng_state import RngState
from src.callbacks.run_checkpoint import RunCheckpoint, TrainingInterrupted

__all__ = [
    "ClassificationFigures",
    "DecisionBoundaryFigure",
    "EpochLines",
    "PatchWhitening",
    "RegressionFigures",
    "RngState",
    "RunCheckpoint",
    "TrainingInterrupted",
]
