"""Test-time augmentation: an image classifier's logits averaged over a few views of each image.

The model's evaluation and the predictor of a checkpoint both call `augmented_logits`, so a
checkpoint predicts exactly as its validation figures were measured.
"""

import torch
import torch.nn.functional as F
from torch import nn


def augmented_logits(net: nn.Module, images: torch.Tensor, flip: bool, translate: int) -> torch.Tensor:
    """Mean logits of `net` over views of `images` (N x C x H x W).

    flip: each view also counts with its mirror image.
    translate: with t > 0, also the two windows of the reflect-padded images at offsets
        (0, 0) and (2t, 2t), i.e. the content shifted t pixels down-right and t pixels up-left;
        the shifted views weigh half, the unshifted half, as in airbench's multi-view
        evaluation (its "level 2" is flip with t = 1). t must be smaller than the images.
    """

    def view_logits(view: torch.Tensor) -> torch.Tensor:
        logits = net(view)
        return (logits + net(view.flip(3))) / 2 if flip else logits

    logits = view_logits(images)
    if translate <= 0:
        return logits
    height, width = images.shape[2:]
    padded = F.pad(images, (translate,) * 4, mode="reflect")
    first_window = padded[:, :, :height, :width]
    last_window = padded[:, :, 2 * translate :, 2 * translate :]
    shifted = (view_logits(first_window) + view_logits(last_window)) / 2
    return (logits + shifted) / 2
