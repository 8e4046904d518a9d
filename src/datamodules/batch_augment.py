"""Normalisation and augmentation of whole uint8 image batches, on whatever device they are."""

from typing import Literal

import torch

# Horizontal flips of training images: none, random per image, or airbench's alternating ones.
FlipMode = bool | Literal["alternate"]

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def normalize(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 N x C x H x W -> float32, scaled to [0, 1] and standardised per channel."""
    shift = torch.tensor([255 * m for m in mean], device=images.device).view(1, -1, 1, 1)
    scale = torch.tensor([1 / (255 * s) for s in std], device=images.device).view(1, -1, 1, 1)
    return images.float().sub_(shift).mul_(scale)


def random_flip(images: torch.Tensor) -> torch.Tensor:
    """Mirror a random half of the images left to right."""
    flip = torch.rand(images.shape[0], device=images.device) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), images.flip(3), images)


# Offsets the seed of the mirrored half from the shuffling's (seed + epoch), whose epoch-0 order
# would otherwise be the same permutation: epoch 0's first batches all mirrored, the rest not.
MIRROR_SEED_OFFSET = 1_000_003


def mirror_random_half(images: torch.Tensor, seed: int) -> torch.Tensor:
    """Mirrors a seeded random half of `images` left to right, in place (no second copy of a
    training split on the device), and returns them: the starting orientations of alternating
    flips (`alternate_flip`)."""
    generator = torch.Generator().manual_seed(seed + MIRROR_SEED_OFFSET)
    chosen = torch.randperm(len(images), generator=generator)[: len(images) // 2].to(images.device)
    images[chosen] = images[chosen].flip(3)
    return images


def alternate_flip(images: torch.Tensor, epoch: int) -> torch.Tensor:
    """airbench's derandomized flip: every image mirrored on odd epochs, so each one (stored with a
    random half mirrored by `mirror_random_half`) is seen in both orientations every two epochs
    rather than by chance. Depends only on the epoch, so a resumed run flips as the first did."""
    return images.flip(3) if epoch % 2 else images


def random_translate(images: torch.Tensor, pixels: int) -> torch.Tensor:
    """Shift each image by up to `pixels` in x and y, filling with reflected borders
    (a random crop of the reflect-padded image). One slice copy per possible shift, which
    is several times cheaper than a per-pixel gather on both CPUs and GPUs."""
    if pixels <= 0:
        return images
    n, _, height, width = images.shape
    padded = torch.nn.functional.pad(images, (pixels,) * 4, mode="reflect")
    shifts = torch.randint(0, 2 * pixels + 1, (2, n), device=images.device)
    shifted = torch.empty_like(images)
    for dy in range(2 * pixels + 1):
        for dx in range(2 * pixels + 1):
            chosen = ((shifts[0] == dy) & (shifts[1] == dx)).nonzero().flatten()
            shifted[chosen] = padded[chosen, :, dy : dy + height, dx : dx + width]
    return shifted


def random_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """A random `size` x `size` crop of each image (the same scale, a smaller view): the cheaper
    early epochs of progressive resizing. One slice copy per possible position, as in
    `random_translate`."""
    n, channels, height, width = images.shape
    if size >= min(height, width):
        return images
    rows, columns = height - size + 1, width - size + 1
    positions = torch.randint(0, rows * columns, (n,), device=images.device)
    cropped = images.new_empty((n, channels, size, size))
    for position in positions.unique().tolist():
        chosen = (positions == position).nonzero().flatten()
        top, left = divmod(position, columns)
        cropped[chosen] = images[chosen, :, top : top + size, left : left + size]
    return cropped
