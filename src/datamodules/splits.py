"""Seeded train/validation/test index splits shared by every data module: plain, or
stratified by class (each part keeps the class proportions)."""

import hashlib
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import torch

from src.errors import UserInputError


class SplitIndices(NamedTuple):
    """Disjoint index tensors into one data set."""

    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor


def name_rank(seed: int, name: str) -> bytes:
    """A file's place in a seeded order that the other files do not change: the sha256 of the seed and
    its name below the first `train/` in it (the same for a folder and its zip, the zip's one top
    folder left out, unless that folder is itself named train)."""
    parts = name.split("/")
    below = next(("/".join(parts[i + 1 :]) for i in range(len(parts) - 2) if parts[i] == "train"), name)
    return hashlib.sha256(f"{seed}|{below}".encode("utf-8", "surrogateescape")).digest()


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    """Reject split fractions that leave no training data or are out of range."""
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise UserInputError(f"data.{name} must be in [0, 1), got {value}")
    if val_fraction + test_fraction >= 1.0:
        raise UserInputError(
            f"data.val_fraction + data.test_fraction must be < 1 to leave training data, "
            f"got {val_fraction} + {test_fraction}"
        )


def split_indices(
    num_items: int, val_fraction: float, test_fraction: float, seed: int, shuffle: bool = True
) -> SplitIndices:
    """Split `range(num_items)` into train, val and test parts.

    Shuffled, the test part is the one scikit-learn's `train_test_split(test_size=
    test_fraction, random_state=seed)` holds out (the classic course's split), and the
    validation part is cut from the rest, so changing `val_fraction` never changes the test
    set. Unshuffled, the order is train, val, test (test on the last samples).
    """
    check_fractions(val_fraction, test_fraction)
    num_test = int(np.ceil(num_items * test_fraction))  # rounded up, as scikit-learn does
    num_val = round(num_items * val_fraction)
    num_train = num_items - num_test - num_val
    if num_train < 1:
        raise UserInputError(f"{num_items} samples leave no training data after the val/test splits")
    if shuffle:
        order = torch.from_numpy(np.random.RandomState(seed).permutation(num_items))
        test, val, train = order[:num_test], order[num_test : num_test + num_val], order[num_test + num_val :]
    else:
        order = torch.arange(num_items)
        train, val, test = order[:num_train], order[num_train : num_train + num_val], order[num_train + num_val :]
    return SplitIndices(train=train, val=val, test=test)


def stratified_split(
    labels: torch.Tensor,
    sizes: Sequence[int],
    class_names: Sequence[str],
    shuffle: Callable[[torch.Tensor], torch.Tensor],
    items: str,
    fix: str,
) -> list[torch.Tensor]:
    """Sorted indices of held-out parts of `sizes` items, then of the rest (the training part).

    Each part takes from every class its share in proportion to what that class has left
    (largest remainders first, ties in class order), so small classes keep their proportion.
    Each class's members are taken in the order `shuffle` (seeded by the caller) gives them,
    part by part. A class left with nothing to train on is refused in one line naming it, its
    `items` ("row(s)") and the `fix`."""
    counts = torch.bincount(labels, minlength=len(class_names))
    shares = []
    left = counts.clone()
    for size in sizes:
        share = _apportion(left, size)
        shares.append(share)
        left -= share
    parts: list[list[torch.Tensor]] = [[] for _ in range(len(sizes) + 1)]
    for label, name in enumerate(class_names):
        members = shuffle(torch.nonzero(labels == label).flatten())
        if len(members) and left[label] < 1:
            held = int(counts[label] - left[label])
            raise UserInputError(
                f"class {name!r} has only {len(members)} {items}: holding out {held} leaves none to train on; {fix}"
            )
        start = 0
        for part, share in zip(parts, shares, strict=False):
            part.append(members[start : start + int(share[label])])
            start += int(share[label])
        parts[-1].append(members[start:])
    return [torch.cat(chunks).sort().values for chunks in parts]


def _apportion(counts: torch.Tensor, total: int) -> torch.Tensor:
    """Integers proportional to `counts` that sum to `total` (largest remainder method)."""
    quotas = counts.double() * total / max(int(counts.sum()), 1)
    shares = quotas.floor().long()
    by_remainder = torch.argsort(quotas - shares, descending=True, stable=True)
    shares[by_remainder[: total - int(shares.sum())]] += 1
    return torch.minimum(shares, counts)
