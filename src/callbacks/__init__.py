"""What is drawn and printed during a run: figures, plain-text progress, the model summary, the whitened stem;
when a frozen backbone starts training (UnfreezeBackbone); Lookahead's weight averaging; and the
validation of a fit's last epoch (LastEpochValidation)."""

from src.callbacks.backbone_unfreeze import UnfreezeBackbone
from src.callbacks.classification_figures import ClassificationFigures
from src.callbacks.decision_boundary import DecisionBoundaryFigure
from src.callbacks.early_stopping import EarlyStoppingOnBest
from src.callbacks.epoch_progress_bar import EpochProgressBar
from src.callbacks.last_epoch_validation import LastEpochValidation
from src.callbacks.lookahead import Lookahead
from src.callbacks.model_summary import ModelSummaryTable
from src.callbacks.patch_whitening import PatchWhitening
from src.callbacks.plain_text_progress import PlainTextProgress
from src.callbacks.regression_figures import RegressionFigures

__all__ = [
    "ClassificationFigures",
    "DecisionBoundaryFigure",
    "EarlyStoppingOnBest",
    "EpochProgressBar",
    "LastEpochValidation",
    "Lookahead",
    "ModelSummaryTable",
    "PlainTextProgress",
    "PatchWhitening",
    "RegressionFigures",
    "UnfreezeBackbone",
]
