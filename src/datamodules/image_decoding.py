"""Listing the images of a source and decoding them into uint8 tensors, from the sources users have.

- an image-folder tree `train/<class>/**` (required), `val/<class>/**` and `test/<class>/**`
  (optional; images at any depth below a class folder), or a zip of such a tree, at the zip's
  top or one folder down;
- torchvision's `cifar-10-batches-py/` (CIFAR-10 only; downloaded by torchvision when asked).

Every file is decoded by PIL (PNG, JPEG, BMP, WebP, GIF (first frame); any mode: RGB,
grayscale, RGBA and LA (alpha dropped), palette, CMYK, 16-bit), turned upright as its EXIF
orientation says, converted to RGB or to
grayscale, and brought to one size by `fit_to_size`: resized (antialiased) so that the image
covers the target size with its aspect ratio kept, then center-cropped. A 32 x 32 image meant
for 32 x 32 is left untouched. The readers return {"train": (images N x C x H x W uint8,
labels int64), "val": ..., "test": ...} with the splits the source has.
"""

import errno
import hashlib
import io
import os
import sys
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.datasets import CIFAR10
from torchvision.datasets.utils import check_integrity
from torchvision.transforms.v2.functional import center_crop, resize, rgb_to_grayscale

from src.errors import UserInputError, first_line

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".jfif", ".bmp", ".webp", ".gif")
# Images of other formats: left out of a data set, and said so (a user converts them to use them).
OTHER_IMAGE_SUFFIXES = (".tif", ".tiff", ".heic", ".heif", ".avif", ".jp2", ".dng", ".cr2", ".nef", ".ppm", ".pgm")
# Pillow's names for the formats of those files (its JPEG reader also opens a camera's MPO files).
PIL_FORMATS = ("PNG", "JPEG", "BMP", "WEBP", "GIF")
FORMAT_NAMES = "PNG, JPEG, BMP, WebP or GIF"
SPLITS = ("train", "val", "test")
# Names other tools give the split folders (Roboflow's valid/, Kaggle's validation/, Train/): read as
# nothing, so refused with the name to use.
SPLIT_ALIASES = {"training": "train", "valid": "val", "validation": "val", "dev": "val", "testing": "test"}


# Folders that file systems and tools add beside the user's images: Synology's thumbnails, macOS's
# resource forks, NAS recycle bins. Their images are copies, not data (a thumbnail of a training photo
# in the validation split would leak it).
SYSTEM_FOLDERS = frozenset({"@eaDir", "__MACOSX", "#recycle", "#snapshot", "$RECYCLE.BIN"})


def is_skipped_folder(name: str) -> bool:
    """Hidden folders (.ipynb_checkpoints) and SYSTEM_FOLDERS: never a class, never read."""
    return name.startswith(".") or name in SYSTEM_FOLDERS


def check_split_names(names: list[str], where: str, root: Path | None = None) -> None:
    """Refuse a folder at the top of the tree `root` (or of a zip) that names a split otherwise than
    train/, val/ or test/ (another case, or another tool's name): its images would be left out without
    a word. On a case-insensitive file system Train/ is read as train/, and passes."""
    for name in sorted(names):
        meant = SPLIT_ALIASES.get(name.lower(), name.lower() if name.lower() in SPLITS else None)
        if root is not None and meant is not None and (root / meant).is_dir() and (root / meant).samefile(root / name):
            continue
        if meant is not None and name != meant and meant not in names:
            raise UserInputError(
                f"{where} has a folder {name}/, which this template does not read: the split folders are "
                f"train/, val/ and test/ (lower case); rename it to {meant}/"
            )


# How a fit goes on past undecodable files (`optimize`, which has no such option, drops it).
SKIP_HINT = ", or set --data.skip_bad_images true to skip undecodable files"
EXIF_ORIENTATION = 0x0112  # the EXIF tag saying how the stored pixels are turned

Size = tuple[int, int]  # (height, width)
Splits = dict[str, tuple[torch.Tensor, torch.Tensor]]
# split -> class folder -> the image names in it (relative to the tree's root, or zip members), sorted
Listing = dict[str, dict[str, list[str]]]


# --- one image ------------------------------------------------------------------------------
def decode(data: bytes, name: str, channels: int) -> torch.Tensor:
    """An image file's bytes as uint8 C x H x W, RGB (C = 3) or grayscale (C = 1), whatever its mode.
    Raises UserInputError naming `name` when PIL cannot read it."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image_tensor(image, channels)
    except UnidentifiedImageError:
        raise UserInputError(f"cannot decode image {name}: not an image format PIL reads, or not an image") from None
    except Image.DecompressionBombError:
        limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        raise UserInputError(
            f"cannot decode image {name}: it has more than {limit:,} pixels, the most PIL opens (a guard "
            f"against decompression bombs); shrink it first (e.g. `mogrify -resize '8000x8000>' FILE`)"
        ) from None
    except (OSError, SyntaxError, ValueError) as error:
        reason = first_line(error)
        raise UserInputError(f"cannot decode image {name}: {reason}") from None


def image_tensor(image: Image.Image, channels: int) -> torch.Tensor:
    """A PIL image as uint8 C x H x W, RGB (C = 3) or grayscale (C = 1), whatever its mode, upright:
    turned as its EXIF orientation says (a phone stores a portrait photo sideways and says so there)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PIL's notes on palette transparency and large images
        if image.getexif().get(EXIF_ORIENTATION, 1) != 1:
            image = ImageOps.exif_transpose(image)
        if image.mode == "P" and "transparency" in image.info:
            image = image.convert("RGBA")  # PIL's way for palettes with a transparent colour
        if image.mode.startswith("I;16") or image.mode == "I":  # 16-bit: its full range to 8 bits, as
            array = np.asarray(image, dtype=np.float64)  # torchvision does, the same for every image of a set
            image = Image.fromarray(np.clip(np.round(array * 255.0 / 65535.0), 0, 255).astype(np.uint8))
        elif image.mode == "F":  # floating point: 0-1 or 0-255, as the image's own values say
            array = np.asarray(image, dtype=np.float64)
            peak = 1.0 if array.max() <= 1.0 else 255.0
            image = Image.fromarray(np.clip(np.round(array * 255.0 / peak), 0, 255).astype(np.uint8))
        array = np.asarray(image.convert("RGB" if channels == 3 else "L"))
    tensor = torch.from_numpy(array.copy())
    return tensor.unsqueeze(0) if channels == 1 else tensor.permute(2, 0, 1).contiguous()


def fit_to_size(images: torch.Tensor, size: Size) -> torch.Tensor:
    """uint8 (N x) C x H x W brought to `size` (height, width): resized so the image just covers
    it, aspect ratio kept (the shorter side, for a square size, becomes the size), then
    center-cropped. Images already of that size are returned as they are."""
    height, width = images.shape[-2:]
    if (height, width) == tuple(size):
        return images
    scale = max(size[0] / height, size[1] / width)
    covering = [max(size[0], round(height * scale)), max(size[1], round(width * scale))]
    return center_crop(resize(images, covering, antialias=True), list(size))


# What `fit_to_size` does, in words a user of an exported model can follow with PIL alone.
RESIZE_METHOD = (
    "bilinear resize, antialiased (PIL's Image.resize(..., Image.BILINEAR) gives the same within 1 level of 255), "
    "to the smallest size that covers image_size with the aspect ratio kept (each side rounded); then a center "
    "crop to image_size (its offsets rounded half to even)"
)


def preprocessing_record(channels: int, size: Size) -> dict[str, object]:
    """How a user's image becomes the model's input, as exported model.json records it."""
    return {
        "image_size": list(size),
        "channels": channels,
        "orientation": "turned upright as the file's EXIF orientation says (PIL's ImageOps.exif_transpose)",
        "resize": RESIZE_METHOD,
        "color": "RGB" if channels == 3 else "grayscale (ITU-R 601-2 luma, PIL's 'L')",
    }


def to_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 RGB (N x) 3 x H x W as `channels` (3: unchanged; 1: luma, as PIL's "L" mode)."""
    return images if channels == images.shape[-3] else rgb_to_grayscale(images)


def is_image(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return base.lower().endswith(IMAGE_SUFFIXES) and not base.startswith(".")  # not macOS's ._ files


def is_other_image(name: str) -> bool:
    """An image in a format this template does not read (TIFF, HEIC, raw, ...)."""
    base = name.rsplit("/", 1)[-1]
    return base.lower().endswith(OTHER_IMAGE_SUFFIXES) and not base.startswith(".")


# --- reading files ----------------------------------------------------------------------------
def unreadable(path: Path, error: OSError) -> UserInputError:
    """A file or folder that cannot be read, named; for permissions, with the fix."""
    reason = error.strerror or str(error)
    if error.errno not in (errno.EACCES, errno.EPERM):
        return UserInputError(f"cannot read {path}: {reason}")
    fix = f"chmod -R a+rX {path}" if path.is_dir() else f"chmod a+r {path}"
    return UserInputError(
        f"cannot read {path}: {reason}; give this user read access ({fix}) or move it out of the data"
    )


def unwritable_cache(path: Path, error: OSError) -> UserInputError:
    """A cache file that cannot be written (a read-only checkout, a full disk): the images are only
    read, so the fix is another cache folder."""
    return UserInputError(
        f"cannot write the cache {path}: {error.strerror or error}; free space there or point --data.cache_dir "
        "at a writable folder"
    )


def read_file(path: Path) -> bytes:
    """A file's bytes; one this user may not read is refused in one line."""
    try:
        return path.read_bytes()
    except OSError as error:
        raise unreadable(path, error) from None


def read_zip_member(archive: zipfile.ZipFile, name: str) -> bytes:
    """A member's bytes; a damaged (bad CRC, truncated), encrypted or unreadably compressed member
    is refused in one line naming the zip and the member."""
    where = archive.filename
    try:
        return archive.read(name)
    except NotImplementedError as error:  # Deflate64 (Windows' Explorer, large zips), PPMd, zstd (7-Zip)
        raise UserInputError(
            f"{where}: member {name} is compressed in a way Python's zipfile cannot read ({error}); zip it again "
            "with plain deflate (`zip -r`, or 7-Zip's Deflate method), or unzip it and give the folder"
        ) from None
    except RuntimeError as error:  # NotImplementedError is one too: caught above
        if "encrypted" not in str(error):
            raise
        raise UserInputError(
            f"{where} is password-protected (member {name} is encrypted), which cannot be read here: unzip it "
            "yourself and give the folder as --data.data_dir, or zip it again without a password"
        ) from None
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise UserInputError(
            f"{where} is damaged: member {name} cannot be read back ({error}); zip or download it again "
            f"(`unzip -t {where}` lists the damaged members)"
        ) from None


# --- listing a source ----------------------------------------------------------------------
def _images_under(folder: Path, root: Path, others: list[str]) -> list[str]:
    """Every image in `folder` and its subfolders (hidden folders such as .ipynb_checkpoints
    left out), as names relative to `root`, sorted; a folder that cannot be read is refused.
    Images of other formats are added to `others`."""

    def refuse(error: OSError) -> None:
        raise unreadable(Path(error.filename or folder), error)

    names = []
    for directory, subfolders, files in os.walk(folder, onerror=refuse, followlinks=True):
        subfolders[:] = [name for name in subfolders if not is_skipped_folder(name)]
        check_no_loop(Path(directory), subfolders, root)
        names += [
            (Path(directory) / name).relative_to(root).as_posix()
            for name in files
            if is_image(name) and (Path(directory) / name).is_file()
        ]
        others += [(Path(directory) / name).relative_to(root).as_posix() for name in files if is_other_image(name)]
    return sorted(names)


def check_no_loop(directory: Path, subfolders: list[str], root: Path) -> None:
    """Refuse a linked subfolder that leads back to `directory` or a folder above it: followed, it
    would list the same images again at every depth, under the wrong class."""
    here = os.path.realpath(directory)
    for name in subfolders:
        target = os.path.realpath(directory / name)
        if here == target or here.startswith(target.rstrip(os.sep) + os.sep):
            link = (directory / name).relative_to(root).as_posix()
            raise UserInputError(
                f"{link} in {root} links to a folder that holds it, a loop that would list its images again and "
                "again: remove the link (or replace it with the images themselves)"
            )


def _class_folders(folder: Path) -> list[Path]:
    """The class folders of a split; one whose name is not UTF-8 text (unzipped from another
    system's zip) is refused: its name is the class name in checkpoints, CSVs and figures."""
    try:
        found = sorted(path for path in folder.iterdir() if path.is_dir() and not is_skipped_folder(path.name))
    except OSError as error:
        raise unreadable(folder, error) from None
    for path in found:
        try:
            path.name.encode()
        except UnicodeEncodeError:
            shown = os.fsencode(path.name).decode("utf-8", "backslashreplace")
            raise UserInputError(
                f"the class folder '{shown}' in {folder} has a name that is not UTF-8 text (unzipped from a zip "
                "of another system?): rename it, or give the zip itself as --data.data_dir"
            ) from None
    return found


def list_tree(root: Path, others: list[str] | None = None) -> Listing:
    """The class folders of `root/train`, `root/val`, `root/test` and the images in each, at
    any depth below it (`train/cat/indoor/1.png` is a cat). A split folder without class folders
    is no split (an empty val/ holds out part of train/, as a missing one does), as in a zip.
    Images of formats not read are added to `others`."""
    others = [] if others is None else others
    if root.is_dir():
        check_split_names([path.name for path in root.iterdir() if path.is_dir()], str(root), root)
    listing = {
        split: {classdir.name: _images_under(classdir, root, others) for classdir in _class_folders(root / split)}
        for split in SPLITS
        if (root / split).is_dir()
    }
    return {split: folders for split, folders in listing.items() if folders}


def open_zip(path: Path) -> zipfile.ZipFile:
    """The zip at `path`. Member names stored without the zip's UTF-8 flag are read as UTF-8 when
    they all are (macOS's Finder and most Linux tools write them so), else as cp437, the zip
    standard's default (Windows' own zip): either way the class names are the ones zipped."""
    try:
        if sys.version_info >= (3, 11):
            try:
                return zipfile.ZipFile(path, metadata_encoding="utf-8")
            except UnicodeDecodeError:
                pass
        return zipfile.ZipFile(path)
    except PermissionError as error:
        raise unreadable(path, error) from None
    except (zipfile.BadZipFile, OSError) as error:
        raise UserInputError(f"{path} is not a readable zip file ({error})") from None


def _zip_root_depth(names: list[str]) -> int:
    """0 when the zip holds `train/` at its top, 1 when it holds one folder that holds `train/`
    (as zipping a folder does)."""
    parts = [name.split("/") for name in names if not name.startswith("__MACOSX")]
    tops = {part[0] for part in parts if len(part) > 1}
    holds_train = any(len(part) > 3 and part[1] == "train" for part in parts)
    return 1 if len(tops) == 1 and holds_train else 0


def list_zip(path: Path, others: list[str] | None = None) -> Listing:
    """As `list_tree`, for a zip holding `train/<class>/**` (etc.) at its top or one folder down."""
    others = [] if others is None else others
    with open_zip(path) as archive:
        names = archive.namelist()
    depth = _zip_root_depth(names)
    folders = [name.split("/") for name in names if not name.startswith("__MACOSX") and name.count("/")]
    tops = {parts[0] for parts in folders}
    # zipped as one folder (not a split folder): its split folders are one level down
    split_like = {*SPLITS, *SPLIT_ALIASES}
    level = 1 if depth == 1 or (len(tops) == 1 and not {top.lower() for top in tops} & split_like) else 0
    check_split_names(list({parts[level] for parts in folders if len(parts) > level + 1}), str(path))
    listing: Listing = {}
    for name in names:
        if name.startswith("__MACOSX"):
            continue
        parts = name.split("/")[depth:]
        if len(parts) < 3 or parts[0] not in SPLITS or not parts[1] or is_skipped_folder(parts[1]):
            continue
        images = listing.setdefault(parts[0], {}).setdefault(parts[1], [])
        hidden = any(is_skipped_folder(part) for part in parts[2:-1])
        if is_image(parts[-1]) and not hidden:  # a folder entry ("train/cat/") only names the class
            images.append(name)
        elif is_other_image(parts[-1]) and not hidden:
            others.append(name)
    return {
        split: {label: sorted(members) for label, members in sorted(classes.items())}
        for split, classes in listing.items()
    }


def find_zip(data_dir: Path) -> Path | None:
    """`data_dir` itself when it is a zip, else the single zip inside it, else None."""
    if data_dir.is_file() and data_dir.suffix.lower() == ".zip":
        return data_dir
    zips = sorted(data_dir.glob("*.zip")) if data_dir.is_dir() else []
    return zips[0] if len(zips) == 1 else None


def source_fingerprint(paths: Iterable[Path], settings: str = "") -> str:
    """Changes whenever a source file is added, removed, resized or modified, or `settings` change."""
    digest = hashlib.sha256(settings.encode("utf-8", "surrogateescape"))  # names as the file system gives them
    for path in sorted(paths):
        stat = path.stat()
        digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:16]


# --- decoding a whole source ------------------------------------------------------------------
def read_listing(
    listing: Listing,
    read: Callable[[str], bytes],
    classes: Sequence[str],
    size: Size,
    channels: int,
    skip_bad: bool,
    where: str,
) -> tuple[Splits, list[str]]:
    """Decode every listed image into one preallocated uint8 tensor per split.

    Returns the splits and the names of the files skipped as undecodable (with `skip_bad`;
    without it the first such file raises UserInputError naming it and `where` it is)."""
    splits: Splits = {}
    skipped: list[str] = []
    for split, folders in listing.items():
        count = sum(len(names) for names in folders.values())
        images = torch.empty(count, channels, *size, dtype=torch.uint8)
        labels = torch.empty(count, dtype=torch.long)
        kept = 0
        for label, names in folders.items():
            for name in names:
                data = read(name)  # a file that cannot be read is no bad image to skip: it ends the run
                try:
                    image = decode(data, name, channels)
                except UserInputError as error:
                    if not skip_bad:
                        raise UserInputError(f"{error} (in {where}; fix or delete it{SKIP_HINT})") from None
                    skipped.append(name)
                    continue
                images[kept] = fit_to_size(image, size)
                labels[kept] = classes.index(label)
                kept += 1
        if kept:
            splits[split] = (images[:kept].clone() if kept < count else images, labels[:kept])
    return splits, skipped


def read_image_tree(
    root: Path, listing: Listing, classes: Sequence[str], size: Size, channels: int, skip_bad: bool
) -> tuple[Splits, list[str]]:
    """The images of an image-folder tree `root` (listed by `list_tree`)."""
    return read_listing(listing, lambda name: read_file(root / name), classes, size, channels, skip_bad, str(root))


def read_image_zip(
    path: Path, listing: Listing, classes: Sequence[str], size: Size, channels: int, skip_bad: bool
) -> tuple[Splits, list[str]]:
    """The images of a zipped image-folder tree (listed by `list_zip`)."""
    with open_zip(path) as archive:
        read = partial(read_zip_member, archive)
        return read_listing(listing, read, classes, size, channels, skip_bad, str(path))


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


def image_files(path: Path) -> list[Path]:
    """One image file, or every image in a folder and its subfolders (sorted)."""
    if path.is_dir():
        # Hidden and system folders (.ipynb_checkpoints, @eaDir) hold no images to predict, as training skips them.
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file()
            and is_image(p.name)
            and not any(is_skipped_folder(part) for part in p.relative_to(path).parts[:-1])
        )
        if not files:
            raise UserInputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {path} or its subfolders")
        return files
    if path.is_file():
        return [path]
    raise UserInputError(f"input not found: {path} (give an image file or a folder of images with --input)")


def read_images_to_predict(
    path: Path, size: Size = (32, 32), channels: int = 3, skip_bad: bool = False
) -> tuple[torch.Tensor, list[str]]:
    """One image file, or every image in a folder and its subfolders (sorted), as uint8
    N x C x H x W, brought to `size` as the training images were (any size, any mode);
    returns the images and their paths. A file that cannot be decoded stops it, or with
    `skip_bad` is left out and named in a printed line."""
    if Path(path).is_file() and Path(path).suffix.lower() in (".csv", ".tsv", ".txt"):
        raise UserInputError(
            f"--input {path} is a table, but this model classifies images: give an image file or a folder of "
            "images (a CSV is for a model trained on a CSV)"
        )
    files = image_files(path)
    images, kept, skipped = torch.empty(len(files), channels, *size, dtype=torch.uint8), [], []
    reasons: list[str] = []
    for file in files:
        try:
            images[len(kept)] = fit_to_size(decode(read_file(file), str(file), channels), size)
        except UserInputError as error:
            if not skip_bad:
                raise UserInputError(
                    f"{error}; nothing was predicted: fix or remove that file and run again, or add "
                    "--skip_bad_images to predict the others"
                ) from None
            skipped.append(str(file))
            reasons.append(str(error))
            continue
        kept.append(str(file))
    if skipped:
        shown = ", ".join(skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        print(
            f"Skipped {len(skipped)} image(s) that could not be read or decoded (--skip_bad_images): {shown} "
            f"(the first: {reasons[0]})",
            flush=True,
        )
    if not kept:
        raise UserInputError(f"none of the {len(files)} image file(s) in {path} could be decoded: nothing to predict")
    return images[: len(kept)], kept


__all__ = [
    "CLASSES",
    "IMAGE_SUFFIXES",
    "PIL_FORMATS",
    "FORMAT_NAMES",
    "decode",
    "find_zip",
    "fit_to_size",
    "image_tensor",
    "list_tree",
    "list_zip",
    "read_image_tree",
    "read_image_zip",
    "read_images_to_predict",
    "read_file",
    "read_torchvision_batches",
    "read_zip_member",
    "source_fingerprint",
    "to_channels",
]
