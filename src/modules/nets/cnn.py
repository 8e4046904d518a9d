"""Image classifiers for images of any size and channel count, from the 60-minute blitz's CNN
to an airbench-style net.

Each takes the input shape (C, H, W) from the data module as its first argument (an int is
taken as C with CIFAR-10's 32 x 32, as older code wrote `BlitzCNN(3, 10)`) and the number of
outputs as its second. At 3 x 32 x 32 every net is exactly the CIFAR-10 net it always was
(same layers, same parameter count), so the CIFAR-10 figures still hold.
"""

from collections.abc import Sequence

import torch
from torch import nn

Shape = int | Sequence[int]


def image_shape(input_shape: Shape) -> tuple[int, int, int]:
    """(C, H, W) from a data module's input shape; an int is C channels of 32 x 32."""
    shape = (int(input_shape), 32, 32) if isinstance(input_shape, int) else tuple(int(n) for n in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"an image net needs an input shape (channels, height, width), got {tuple(shape)}")
    return shape  # type: ignore[return-value]


def flat_size(features: nn.Module, shape: tuple[int, int, int], name: str) -> int:
    """How many values `features` gives for one image of `shape`: traced once with a zero
    image, so the linear layer after it fits any image size."""
    try:
        with torch.no_grad():
            return features(torch.zeros(1, *shape)).numel()
    except RuntimeError:
        size = f"{shape[1]}x{shape[2]}"
        raise ValueError(f"{name} cannot take {size} images: they are too small for its layers") from None


class BlitzCNN(nn.Module):
    """The PyTorch 60-minute blitz's CIFAR-10 net: two 5x5 convs with pooling, three linear layers.

    The first linear layer's size follows from the image size (16 x 5 x 5 at 32 x 32). Images
    under 16 pixels a side would shrink to nothing through two unpadded 5x5 convs, so there
    the convs are padded by 2 (size-preserving); 16 pixels and up keep the blitz's layers.
    """

    def __init__(self, input_shape: Shape, num_classes: int) -> None:
        super().__init__()
        channels, height, width = image_shape(input_shape)
        padding = 2 if min(height, width) < 16 else 0
        self.features = nn.Sequential(
            nn.Conv2d(channels, 6, 5, padding=padding),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5, padding=padding),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(flat_size(self.features, (channels, height, width), "BlitzCNN"), 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class TinyVGG(nn.Module):
    """The CNN Explainer's TinyVGG: two blocks of conv-ReLU-conv-ReLU-maxpool, then a linear layer
    (of hidden_units x H/4 x W/4 inputs: 10 x 8 x 8 at 32 x 32; images need 4 pixels a side)."""

    def __init__(self, input_shape: Shape, num_classes: int, hidden_units: int = 10) -> None:
        super().__init__()
        shape = image_shape(input_shape)

        def block(channels_in: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(channels_in, hidden_units, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(hidden_units, hidden_units, 3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(2),
            )

        self.features = nn.Sequential(block(shape[0]), block(hidden_units))
        flat = flat_size(self.features, shape, "TinyVGG")
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(flat, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class ConvGroup(nn.Module):
    """conv 3x3 -> maxpool 2 -> BN -> GELU -> conv 3x3 -> BN -> GELU (airbench's block).

    `learn_bn_scale=False` freezes the BatchNorm scales at their values (1 when built);
    `dirac_conv1` makes the first conv's first filters pass the input channels through.
    """

    def __init__(
        self,
        channels_in: int,
        channels_out: int,
        bn_momentum: float,
        ceil_mode: bool = False,
        learn_bn_scale: bool = True,
        dirac_conv1: bool = False,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2, ceil_mode=ceil_mode)
        self.norm1 = nn.BatchNorm2d(channels_out, momentum=bn_momentum)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(channels_out, momentum=bn_momentum)
        self.activation = nn.GELU()
        # airbench keeps BatchNorm's scale at 1 and learns only its shift. Frozen here, at
        # construction, for the reason the stem's filters are (DDP fixes the trained set early).
        for norm in (self.norm1, self.norm2):
            norm.weight.requires_grad_(learn_bn_scale)
        # Identity-initialise the first input channels of the convs so each block starts close
        # to a pass-through, which speeds up early training (as airbench does).
        with torch.no_grad():
            nn.init.dirac_(self.conv2.weight)
            if dirac_conv1:
                nn.init.dirac_(self.conv1.weight[:channels_in])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activation(self.norm1(self.pool(self.conv1(x))))
        return self.activation(self.norm2(self.conv2(x)))


class AirbenchNet(nn.Module):
    """A fast CIFAR-10 net in the airbench / ResNet-9 family.

    A 2x2 stem convolution with fixed filters (set by `init_whitening`), three conv groups
    that halve the resolution, a global max pool and a linear head whose logits are scaled
    down (airbench's 1/9), which behaves like a temperature and trains faster with label
    smoothing. The global pool makes it fit any image size; images under 9 pixels a side
    (whose 2x2-stemmed map would pool down to nothing) pool with ceil mode, keeping every
    border pixel, so even 2 x 2 images work. Larger images keep airbench's floor pooling.

    Args:
        input_shape: (channels, height, width) of the images (given by the data module); an
            int is the channel count.
        num_classes: number of classes (given by the data module).
        widths: channels of the three conv groups (airbench94 uses 64/256/256).
        stem_width: channels of the stem convolution; None: 8 per image channel (24 for RGB,
            8 for grayscale), what the whitening of 2x2 patches needs.
        logit_scale: factor applied to the logits.
        bn_momentum: BatchNorm momentum.
        channels_last: run convolutions in channels-last memory order (faster on GPUs with
            tensor cores and on oneDNN CPUs).
        learn_bn_scale: learn BatchNorm's scale; False freezes it (at 1 in a new net: airbench's choice).
        dirac_conv1: identity-initialise each group's first conv too, not only its second.
    """

    def __init__(
        self,
        input_shape: Shape,
        num_classes: int,
        widths: list[int] = [64, 256, 256],  # noqa: B006 - read only
        stem_width: int | None = None,
        logit_scale: float = 1 / 9,
        bn_momentum: float = 0.4,
        channels_last: bool = True,
        learn_bn_scale: bool = True,
        dirac_conv1: bool = False,
    ) -> None:
        super().__init__()
        if len(widths) != 3 or min(widths) < 1:
            raise ValueError(f"widths must be three positive channel counts, got {widths}")
        channels, height, width = image_shape(input_shape)
        stem_width = 8 * channels if stem_width is None else stem_width
        self.stem = nn.Sequential(nn.Conv2d(channels, stem_width, 2, bias=True), nn.GELU())
        # The stem's filters are fixed, not learned (its bias is): `init_whitening` sets them
        # (the PatchWhitening callback does, at the start of a fresh fit). They are frozen here,
        # at construction, because DDP fixes the set of parameters that need a gradient when it
        # wraps the model: one frozen afterwards gets none and DDP stops with "parameters that
        # were not used in producing the loss".
        self.stem[0].weight.requires_grad_(False)
        ceil_mode = min(height, width) - 1 < 8  # floor pooling would take 8 -> 4 -> 2 -> 1 below that
        self.groups = nn.Sequential(
            *(
                ConvGroup(width_in, width_out, bn_momentum, ceil_mode, learn_bn_scale, dirac_conv1)
                for width_in, width_out in zip([stem_width, *widths[:2]], widths, strict=True)
            )
        )
        self.head = nn.Linear(widths[2], num_classes, bias=False)
        self.logit_scale = logit_scale
        self.channels_last = channels_last
        if channels_last:
            self.to(memory_format=torch.channels_last)

    @torch.no_grad()
    def init_whitening(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the stem's fixed 2x2 filters to whiten image patches (airbench's init).

        The filters are the eigenvectors of the patch covariance of `images` (normalised,
        N x C x H x W) scaled by 1 / sqrt(eigenvalue), each with both signs, so the first
        layer sees decorrelated inputs from the first step on.
        """
        conv = self.stem[0]
        patch_size = conv.in_channels * 4
        if conv.out_channels != 2 * patch_size:
            raise ValueError(f"whitening needs stem_width = {2 * patch_size}, got {conv.out_channels}")
        patches = images.float().unfold(2, 2, 1).unfold(3, 2, 1)  # N, C, H-1, W-1, 2, 2
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, patch_size)
        covariance = patches.T @ patches / len(patches)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
        filters = (eigenvectors.T / torch.sqrt(eigenvalues + eps).unsqueeze(1)).reshape(-1, conv.in_channels, 2, 2)
        conv.weight.copy_(torch.cat([filters, -filters]).to(conv.weight.dtype))

    def freeze_whitening_bias(self) -> None:
        """Stop training the stem's bias too (its filters are fixed): backward then stops at the
        first conv group, which no longer computes the gradient of its input."""
        self.stem[0].bias.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.groups(self.stem(x))
        x = torch.amax(x, dim=(2, 3))
        return self.head(x) * self.logit_scale
