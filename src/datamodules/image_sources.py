"""Reading CIFAR-10-style images into uint8 tensors, from the three sources users have.

- torchvision's `cifar-10-batches-py/` (downloaded by torchvision when asked);
- an image-folder tree `train/<class>/*.png|jpg` (and optionally `test/<class>/...`);
- a zip of such a tree.
Each reader returns {"train": (images N x 3 x 32 x 32 uint8, labels int64), "test": ...}.
"""

import hashlib
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torchvision.datasets import CIFAR10
from torchvision.datasets.utils import check_integrity
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.v2.functional import resize

from src.errors import UserInputError

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SIZE = 32

Splits = dict[str, tuple[torch.Tensor, torch.Tensor]]


def read_torchvision_batches(root: Path, download: bool) -> Splits:
    """The official train and test sets from `root/cifar-10-batches-py`, downloading if allowed."""
    folder = root / CIFAR10.base_folder
    if download and not folder.is_dir():
        CIFAR10(root=str(root), train=True, download=True)
    for name, md5 in [*CIFAR10.train_list, *CIFAR10.test_list]:
        path = folder / name
        if not path.is_file():
            raise UserInputError(f"{path} is missing: restore it, or delete {folder} and run with --data.download true")
        if not check_integrity(str(path), md5):
            raise UserInputError(
                f"{path} is corrupt (its md5 is not CIFAR-10's): delete {folder} and run with --data.download true"
            )
    splits = {}
    for split, train in (("train", True), ("test", False)):
        dataset = CIFAR10(root=str(root), train=train, download=False)
        images = torch.from_numpy(np.ascontiguousarray(dataset.data.transpose(0, 3, 1, 2)))
        splits[split] = (images, torch.tensor(dataset.targets, dtype=torch.long))
    return splits


def _decode_rgb(data: bytes, name: str) -> torch.Tensor:
    """A PNG or JPEG file's bytes as uint8 3 x H x W RGB."""
    try:
        return decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
    except RuntimeError as error:
        raise UserInputError(f"cannot decode image {name}: {str(error).splitlines()[0]}") from None


def _decode(data: bytes, name: str) -> torch.Tensor:
    """A training image: RGB and exactly 32 x 32."""
    image = _decode_rgb(data, name)
    if image.shape[1:] != (SIZE, SIZE):
        raise UserInputError(f"image {name} is {image.shape[2]}x{image.shape[1]}, CIFAR-10 images are {SIZE}x{SIZE}")
    return image


def _class_of(name: str, split_root: str) -> str:
    parts = name.split("/")
    return parts[parts.index(split_root) + 1]


def _stack(entries: Iterable[tuple[str, bytes]], split: str) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for name, data in entries:
        label = _class_of(name, split)
        if label not in CLASSES:
            raise UserInputError(
                f"unknown class folder {label!r} in {name}: CIFAR-10's classes are {', '.join(CLASSES)}"
            )
        images.append(_decode(data, name))
        labels.append(CLASSES.index(label))
    if not images:
        raise UserInputError(f"no images found under {split}/<class>/")
    return torch.stack(images), torch.tensor(labels, dtype=torch.long)


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def read_image_tree(root: Path) -> Splits:
    """`root/train/<class>/*` (required) and `root/test/<class>/*` (optional)."""
    splits = {}
    for split in ("train", "test"):
        folder = root / split
        if not folder.is_dir():
            continue
        files = sorted(p for p in folder.glob("*/*") if p.is_file() and _is_image(p.name))
        splits[split] = _stack(((p.relative_to(root).as_posix(), p.read_bytes()) for p in files), split)
    return splits


def read_image_zip(path: Path) -> Splits:
    """A zip holding `train/<class>/*` (and optionally `test/<class>/*`), at its top or one folder down."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise UserInputError(f"{path} is not a readable zip file ({error})") from None
    with archive:
        names = sorted(n for n in archive.namelist() if _is_image(n) and not n.startswith("__MACOSX"))
        splits = {}
        for split in ("train", "test"):
            members = [n for n in names if f"{split}/" in n and len(n.split("/")) >= 3]
            if members:
                splits[split] = _stack(((n, archive.read(n)) for n in members), split)
    if "train" not in splits:
        raise UserInputError(f"{path} holds no train/<class>/ images")
    return splits


def find_zip(data_dir: Path) -> Path | None:
    """`data_dir` itself when it is a zip, else the single zip inside it, else None."""
    if data_dir.is_file() and data_dir.suffix == ".zip":
        return data_dir
    zips = sorted(data_dir.glob("*.zip")) if data_dir.is_dir() else []
    return zips[0] if len(zips) == 1 else None


def source_fingerprint(paths: Iterable[Path]) -> str:
    """Changes whenever a source file is added, removed, resized or modified."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        stat = path.stat()
        digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def read_images_to_predict(path: Path) -> tuple[torch.Tensor, list[str]]:
    """One image file, or every image in a folder and its subfolders (sorted), as uint8
    N x 3 x 32 x 32 RGB. Images of another size are resized to 32 x 32, as a user's photos
    would need to be; returns the images and their paths."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and _is_image(p.name))
        if not files:
            raise UserInputError(f"no .png/.jpg images in {path} or its subfolders")
    elif path.is_file():
        files = [path]
    else:
        raise UserInputError(f"input not found: {path} (give an image file or a folder of images with --input)")
    images = []
    for file in files:
        image = _decode_rgb(file.read_bytes(), str(file))
        if image.shape[1:] != (SIZE, SIZE):
            image = resize(image, [SIZE, SIZE], antialias=True)
        images.append(image)
    return torch.stack(images), [str(file) for file in files]


__all__ = [
    "CLASSES",
    "find_zip",
    "read_image_tree",
    "read_image_zip",
    "read_images_to_predict",
    "read_torchvision_batches",
    "source_fingerprint",
]
