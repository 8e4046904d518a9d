"""Your own images: nets for any input shape, the image-folder data module, bad input,
prediction and export round trips."""

import csv
import io
import json
import math
import os
import shutil
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from src.datamodules import ImageFolderDataModule, image_decoding
from src.datamodules.batch_augment import random_translate
from src.datamodules.image_decoding import SPLITS
from src.datamodules.image_file_dataset import UNDECODABLE
from src.errors import UserInputError
from src.modules import ClassificationModule
from src.modules.nets import MLP, AirbenchNet, BlitzCNN, TinyVGG
from src.tools.prediction_table import write_prediction_csv
from tests.conftest import QUIET, config, run_cli, run_train_py

# --- nets for any shape --------------------------------------------------------------------
IMAGE_SHAPES = [(1, 8, 8), (3, 8, 8), (3, 32, 32), (1, 28, 28), (3, 64, 64), (3, 24, 40), (3, 4, 4)]


@pytest.mark.parametrize("shape", IMAGE_SHAPES)
@pytest.mark.parametrize(
    "make",
    [
        lambda shape: MLP(shape, 5, hidden_sizes=[16]),
        lambda shape: BlitzCNN(shape, 5),
        lambda shape: TinyVGG(shape, 5, hidden_units=4),
        lambda shape: AirbenchNet(shape, 5, widths=[8, 8, 8], channels_last=False),
    ],
    ids=["MLP", "BlitzCNN", "TinyVGG", "AirbenchNet"],
)
def test_every_net_runs_forward_and_backward_at_any_image_size(make, shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    net = make(shape)
    images = torch.randn(4, *shape, requires_grad=True)
    outputs = net(images)
    assert outputs.shape == (4, 5)
    outputs.square().mean().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    trained = [p for p in net.parameters() if p.requires_grad]
    assert all(p.grad is not None for p in trained)


def test_a_net_names_images_too_small_for_it() -> None:
    with pytest.raises(ValueError, match="TinyVGG cannot take 2x3 images"):
        TinyVGG((3, 2, 3), 5)


def test_the_cifar10_nets_keep_their_layers_and_parameter_counts() -> None:
    def count(net: torch.nn.Module) -> int:
        return sum(p.numel() for p in net.parameters())

    # The counts of the shipped configs before nets took shapes (configs/cifar10*.yaml).
    assert count(BlitzCNN((3, 32, 32), 10)) == count(BlitzCNN(3, 10)) == 62006
    assert count(TinyVGG((3, 32, 32), 10)) == 9420
    assert count(AirbenchNet((3, 32, 32), 10, widths=[32, 64, 128])) == 295096
    assert count(AirbenchNet((3, 32, 32), 10)) == 1972792
    assert not AirbenchNet((3, 32, 32), 10).groups[0].pool.ceil_mode
    assert MLP(2, 1, hidden_sizes=[8]).layers[0].in_features == 2  # an int is still a vector length
    assert MLP((1, 8, 8), 10).layers[0].in_features == math.prod((1, 8, 8))


def test_airbench_whitening_fits_grayscale_stems() -> None:
    net = AirbenchNet((1, 8, 8), 10, widths=[8, 8, 8])
    assert net.stem[0].out_channels == 8 and not net.stem[0].weight.requires_grad  # frozen at construction
    net.init_whitening(torch.randn(64, 1, 8, 8))
    patches = torch.randn(64, 1, 8, 8)
    assert torch.isfinite(net(patches)).all()


def test_airbench_can_keep_batchnorm_scales_at_one_and_start_every_conv_as_identity() -> None:
    net = AirbenchNet((3, 16, 16), 10, widths=[8, 16, 16], learn_bn_scale=False, dirac_conv1=True)
    norms = [module for module in net.modules() if isinstance(module, torch.nn.BatchNorm2d)]
    assert len(norms) == 6 and all(not n.weight.requires_grad and n.bias.requires_grad for n in norms)
    features = torch.randn(2, 8, 6, 6)
    conv1 = net.groups[1].conv1  # 8 -> 16: the first 8 filters pass their channel through, the rest stay random
    assert torch.allclose(conv1(features)[:, :8], features, atol=1e-6)
    assert conv1.weight[8:].abs().sum() > 0 and conv1.weight[8:].std() > 0.01
    plain = AirbenchNet((3, 16, 16), 10, widths=[8, 16, 16])  # the defaults learn scales, conv1 random
    assert all(m.weight.requires_grad for m in plain.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert not torch.allclose(plain.groups[1].conv1(features)[:, :8], features, atol=1e-3)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5, weight_decay=0.1)
    net(torch.randn(4, 3, 16, 16)).sum().backward()
    optimizer.step()
    assert all(torch.equal(n.weight, torch.ones_like(n.weight)) for n in norms)  # no gradient, no decay
    assert not all(torch.equal(n.bias, torch.zeros_like(n.bias)) for n in norms)  # the shifts train


# --- the image-folder data module ------------------------------------------------------------
FOODS = ("pizza", "steak", "sushi")
COLOURS = {"pizza": (220, 60, 40), "steak": (110, 60, 30), "sushi": (235, 235, 225)}
# (suffix, PIL mode, size): every format and mode a user's folder may hold, of any size.
VARIANTS = [
    (".png", "RGB", (40, 30)),
    (".jpg", "RGB", (64, 64)),
    (".jpeg", "L", (20, 36)),
    (".bmp", "RGB", (32, 32)),
    (".webp", "RGB", (50, 40)),
    (".gif", "P", (33, 21)),
    (".png", "RGBA", (24, 24)),
    (".png", "P", (28, 40)),
    (".jpg", "CMYK", (36, 36)),
    (".png", "LA", (30, 30)),
]


def food_image(label: str, index: int, suffix: str, mode: str, size: tuple[int, int]) -> Image.Image:
    """A noisy image of the class's colour (width x height = size), in the given mode."""
    rng = np.random.default_rng(index * 7 + FOODS.index(label))
    pixels = np.clip(np.array(COLOURS[label]) + rng.normal(0, 25, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    if mode == "P":
        return image.convert("P", palette=Image.Palette.ADAPTIVE)
    return image.convert(mode) if mode != "RGB" else image


def food_tree(root: Path, per_class: int = 10, splits: tuple[str, ...] = ("train", "test")) -> Path:
    for split in splits:
        for label in FOODS:
            folder = root / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(per_class):
                suffix, mode, size = VARIANTS[index % len(VARIANTS)]
                image = food_image(label, index + 1000 * len(split), suffix, mode, size)
                if suffix in (".jpg", ".jpeg") and mode not in ("RGB", "L", "CMYK"):
                    image = image.convert("RGB")
                image.save(folder / f"{label}_{index:03d}{suffix}")
    return root


def folder_module(data_dir: Path, tmp_path: Path, **kwargs: object) -> ImageFolderDataModule:
    options = {"cache_dir": tmp_path / "cache", "val_size": 0.2, **kwargs}
    return ImageFolderDataModule(data_dir=data_dir, **options)  # type: ignore[arg-type]


def held_out(tree: Path, tmp_path: Path, streaming: bool, seed: int = 42) -> set[object]:
    """The validation images of a fresh module on `tree`: file names (streaming) or pixel bytes (in memory)."""
    module = folder_module(tree, tmp_path, image_size=8, streaming=streaming, num_workers=0, seed=seed)
    module.setup("fit")
    if streaming:
        return {name for name, _ in module.images.streams["val"].items}  # type: ignore[union-attr]
    return {image.numpy().tobytes() for image in module.splits["val"][0]}


@pytest.mark.parametrize("streaming", [False, True], ids=["in_memory", "streaming"])
def test_adding_images_leaves_the_validation_split_where_it_was(tmp_path: Path, streaming: bool) -> None:
    """A resumed run on a folder with new images must not train on the images it validated on: each
    file is held out by a seeded hash of its name, not by a shuffle that deals every class out anew."""
    tree = food_tree(tmp_path / "food", per_class=20, splits=("train",))
    before = held_out(tree, tmp_path, streaming)
    assert len(before) == 12  # 20% of 60, 4 per class
    food_image("pizza", 99, ".png", "RGB", (16, 16)).save(tree / "train" / "pizza" / "zz_new.png")
    after = held_out(tree, tmp_path, streaming)
    # 20% of 61 is still 12; at most the one pizza the new file displaced moved to training
    assert len(after) == 12 and len(before - after) <= 1, len(before - after)
    assert len(before - held_out(tree, tmp_path, streaming, seed=7)) >= 6  # the seed still chooses the images


@pytest.mark.parametrize("streaming", [False, True], ids=["in_memory", "streaming"])
def test_a_link_back_up_the_tree_is_refused_and_a_link_across_is_followed(tmp_path: Path, streaming: bool) -> None:
    tree = food_tree(tmp_path / "food", per_class=4, splits=("train",))
    more = tmp_path / "more_pizza"  # a class's images kept elsewhere, linked in: read as that class
    more.mkdir()
    food_image("pizza", 50, ".png", "RGB", (16, 16)).save(more / "extra.png")
    (tree / "train" / "pizza" / "more").symlink_to(more, target_is_directory=True)
    linked = folder_module(tree, tmp_path, image_size=8, streaming=streaming, num_workers=0)
    linked.setup("fit")
    if streaming:
        counts = {split: len(linked.images.streams[split]) for split in ("train", "val")}  # type: ignore[union-attr]
    else:
        counts = {split: len(linked.splits[split][1]) for split in ("train", "val")}
    assert linked.num_classes == 3 and sum(counts.values()) == 13  # 4 per class, and the linked one
    (tree / "train" / "pizza" / "loop").symlink_to("..", target_is_directory=True)  # would repeat the whole split
    with pytest.raises(UserInputError, match="train/pizza/loop in .* links to a folder that holds it"):
        folder_module(tree, tmp_path, image_size=8, streaming=streaming, num_workers=0).setup("fit")


@pytest.mark.parametrize(
    ("folder", "meant"), [("valid", "val"), ("Validation", "val"), ("Test", "test"), ("Train", "train")]
)
def test_a_split_folder_named_otherwise_is_refused_not_ignored(tmp_path: Path, folder: str, meant: str) -> None:
    """Roboflow's valid/ or Kaggle's validation/ beside train/ would be read as nothing: the run would hold
    out 10% of train/ and never look at the user's validation images."""
    splits = ("train", "test") if meant == "train" else ("train",)
    tree = food_tree(tmp_path / "food", per_class=4, splits=splits)
    source = tree / ("test" if meant == "train" else "train")
    shutil.copytree(source, tree / folder)
    if meant == "train":
        shutil.rmtree(tree / "train")
    archive = tmp_path / "food.zip"
    with zipfile.ZipFile(archive, "w") as handle:  # zipped as a folder: one level down
        for path in sorted(tree.rglob("*.*")):
            handle.write(path, f"food/{path.relative_to(tree).as_posix()}")
    for data_dir in (tree, archive):
        with pytest.raises(UserInputError, match=f"has a folder {folder}/, .* rename it to {meant}/"):
            folder_module(data_dir, tmp_path, image_size=8).setup("fit")


@pytest.mark.parametrize("streaming", [False, True], ids=["in_memory", "streaming"])
def test_a_cache_folder_that_cannot_be_written_names_the_cache_option(tmp_path: Path, streaming: bool) -> None:
    tree = food_tree(tmp_path / "food", per_class=4, splits=("train",))
    (tmp_path / "a_file").write_text("not a folder")
    blocked = folder_module(tree, tmp_path, image_size=8, streaming=streaming, cache_dir=tmp_path / "a_file" / "cache")
    with pytest.raises(UserInputError, match="cannot write the cache .*a_file/cache.*point --data.cache_dir at a"):
        blocked.setup("fit")


def test_system_folders_beside_the_images_are_neither_classes_nor_images(tmp_path: Path) -> None:
    """A Synology NAS keeps thumbnails of every photo in @eaDir/ beside it, unzipping on macOS can leave
    __MACOSX/: read, they would be extra classes or copies of training photos in the validation split."""
    tree = food_tree(tmp_path / "food", per_class=4, splits=("train",))
    thumbnails = tree / "train" / "pizza" / "@eaDir" / "pizza_000.png"
    thumbnails.mkdir(parents=True)
    food_image("pizza", 0, ".png", "RGB", (8, 8)).save(thumbnails / "SYNOFILE_THUMB_S.png")
    (tree / "train" / "__MACOSX").mkdir()
    food_image("sushi", 0, ".png", "RGB", (8, 8)).save(tree / "train" / "__MACOSX" / "._sushi.png")
    food_image("sushi", 1, ".png", "RGB", (8, 8)).save(tree / "train" / "__MACOSX" / "sushi.png")
    module = folder_module(tree, tmp_path, image_size=8)
    module.setup("fit")
    assert module.class_names == sorted(FOODS) and len(module.splits["train"][1]) + len(module.splits["val"][1]) == 12


def test_an_image_too_large_for_pil_says_how_to_shrink_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = food_tree(tmp_path / "food", per_class=4, splits=("train",))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # a 200-megapixel photo at PIL's real limit, in small
    with pytest.raises(
        UserInputError, match=r"it has more than 200 pixels, .* shrink it first.*--data.skip_bad_images"
    ):
        folder_module(tree, tmp_path, image_size=8).setup("fit")


def test_a_folder_grown_by_a_class_leaves_no_outdated_cache_behind(tmp_path: Path) -> None:
    tree = food_tree(tmp_path / "food", per_class=4, splits=("train",))
    first = folder_module(tree, tmp_path, image_size=8, streaming=False)
    first.setup("fit")
    other_size = folder_module(tree, tmp_path, image_size=12, streaming=False)  # other settings: another cache, kept
    other_size.setup("fit")
    (tree / "train" / "tacos").mkdir()
    for index in range(4):
        food_image("pizza", 70 + index, ".png", "RGB", (16, 16)).save(tree / "train" / "tacos" / f"t{index}.png")
    grown = folder_module(tree, tmp_path, image_size=8, streaming=False)
    grown.setup("fit")
    caches = sorted(path.name for path in (tmp_path / "cache").glob("*.pt"))
    assert grown.num_classes == 4 and len(caches) == 2 and grown.cache_path().name in caches
    assert not first.cache_path().exists() and other_size.cache_path().exists()


def test_resuming_a_run_of_the_earlier_validation_split_says_its_images_changed(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    tree = food_tree(tmp_path / "food", per_class=4, splits=("train",))
    trained = folder_module(tree, tmp_path, image_size=8)
    trained.setup("fit")
    earlier = {key: value for key, value in trained.state_dict().items() if key != "validation_split"}
    resumed = folder_module(tree, tmp_path, image_size=8)
    resumed.setup("fit")  # Lightning sets the data up, then restores the checkpoint's state
    resumed.trainer = SimpleNamespace(state=SimpleNamespace(fn="fit"), is_global_zero=True)  # type: ignore[assignment]
    capsys.readouterr()
    resumed.load_state_dict(earlier)
    assert "validation split of an earlier version" in capsys.readouterr().out
    resumed.load_state_dict(trained.state_dict())
    assert capsys.readouterr().out == ""


def test_a_shift_as_large_as_the_image_is_refused_before_any_decoding(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="data.translate must be below the image side"):
        ImageFolderDataModule(data_dir=tmp_path / "none", image_size=[4, 6], translate=4)
    shifted = folder_module(food_tree(tmp_path / "food", per_class=4), tmp_path, image_size=4, translate=3)
    shifted.setup()
    assert random_translate(shifted.splits["train"][0], 3).shape == shifted.splits["train"][0].shape


def test_any_format_mode_and_size_becomes_one_uint8_tensor(tmp_path: Path) -> None:
    tree = food_tree(tmp_path / "food")
    dm = folder_module(tree, tmp_path, image_size=16)
    assert dm.class_names == list(FOODS) and dm.num_classes == 3 and dm.input_shape == (3, 16, 16)
    dm.setup()
    x, y = dm.splits["train"]
    assert x.dtype == torch.uint8 and x.shape == (24, 3, 16, 16)
    assert torch.bincount(y).tolist() == [8, 8, 8]  # stratified: 2 of each class held out
    assert torch.bincount(dm.splits["val"][1]).tolist() == [2, 2, 2]
    assert len(dm.splits["test"][0]) == 30 and dm.has_test_split
    # Each class keeps its colour through every format and mode (greyscale ones aside).
    red = x[:, 0].float().mean(dim=(1, 2))
    assert red[y == 0].median() > 150 and red[y == 1].median() < 150
    assert len(dm.mean) == 3 and all(s > 0 for s in dm.std)
    gray = folder_module(tree, tmp_path, image_size=[8, 12], channels=1)
    gray.setup()
    assert gray.splits["train"][0].shape == (24, 1, 8, 12) and gray.input_shape == (1, 8, 12)


def test_a_photo_stored_sideways_is_decoded_upright_as_its_exif_says() -> None:
    """Phones store a portrait photo as landscape pixels with EXIF orientation 6 (turn 90 degrees
    clockwise to view): trained as stored, portrait and landscape shots of a class would disagree."""
    stored = np.zeros((20, 40, 3), dtype=np.uint8)  # 20 high, 40 wide as stored
    stored[:, :20] = 255  # the left half white: the top half once turned clockwise
    exif = Image.Exif()
    exif[0x0112] = 6  # EXIF Orientation
    buffer = io.BytesIO()
    Image.fromarray(stored).save(buffer, "JPEG", exif=exif, quality=95)
    upright = image_decoding.decode(buffer.getvalue(), "portrait.jpg", channels=3)
    assert upright.shape == (3, 40, 20)
    assert upright[:, :18].float().mean() > 200 and upright[:, 22:].float().mean() < 50
    plain = io.BytesIO()
    Image.fromarray(stored).save(plain, "JPEG", quality=95)  # no orientation: as stored
    assert image_decoding.decode(plain.getvalue(), "landscape.jpg", channels=3).shape == (3, 20, 40)


def test_16_bit_images_share_one_scale() -> None:
    """A pixel of 200 in two 16-bit images is one value after decoding, whatever else the images hold
    (a scale chosen per image made it 200 in one and 0 in the other): 65535 -> 255, as torchvision does."""
    decoded = []
    for brightest in (250, 300, 65535):
        pixels = np.full((4, 4), 200, dtype=np.uint16)
        pixels[0, 0] = brightest
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "PNG")
        decoded.append(image_decoding.decode(buffer.getvalue(), "scan.png", channels=1))
    assert [image[0, 1, 1].item() for image in decoded] == [1, 1, 1]  # round(200 * 255 / 65535)
    assert decoded[2][0, 0, 0].item() == 255


def test_resize_covers_then_center_crops() -> None:
    wide = torch.zeros(3, 20, 40, dtype=torch.uint8)
    wide[:, :, 10:30] = 255  # a white centre square on black sides
    fitted = image_decoding.fit_to_size(wide, (10, 10))
    assert fitted.shape == (3, 10, 10) and (fitted > 200).all()  # the black sides were cropped away
    same = torch.randint(0, 255, (3, 8, 8), dtype=torch.uint8)
    assert image_decoding.fit_to_size(same, (8, 8)) is same


def test_a_zip_gives_the_same_data_and_a_val_folder_is_used_as_is(tmp_path: Path) -> None:
    tree = food_tree(tmp_path / "food", per_class=5, splits=("train", "val"))
    archive = tmp_path / "zipped" / "food.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as handle:
        for path in sorted(tree.rglob("*.*")):
            handle.write(path, "food/" + path.relative_to(tree).as_posix())  # one folder down
    from_tree, from_zip = folder_module(tree, tmp_path), folder_module(archive, tmp_path)
    for dm in (from_tree, from_zip):
        dm.setup()
        assert len(dm.splits["train"][0]) == 15 and len(dm.splits["val"][0]) == 15 and not dm.has_test_split
    for split in ("train", "val"):
        assert torch.equal(from_tree.splits[split][0], from_zip.splits[split][0])
    with pytest.raises(UserInputError, match="has no test images"):
        from_tree.test_dataloader()


@pytest.mark.parametrize(
    ("encoding", "flagged"),
    [("utf-8", False), ("cp437", False), ("utf-8", True)],
    ids=["utf-8-unflagged", "cp437", "utf-8-flagged"],
)
def test_a_zips_class_names_read_as_the_tool_that_made_it_wrote_them(
    tmp_path: Path, encoding: str, flagged: bool
) -> None:
    """macOS and most Linux tools store UTF-8 names without the zip's UTF-8 flag; Windows' own
    zip and old tools store cp437; Python's zipfile sets the flag. All give the true class names."""
    classes = ["crème", "naïve"]
    archive = tmp_path / "food.zip"
    if flagged:
        with zipfile.ZipFile(archive, "w") as handle:
            for label in classes:
                handle.writestr(f"train/{label}/1.png", label.encode())
    else:  # write ASCII stand-ins of the same byte length (no flag), then put the encoded names in
        stand_ins = {label: label[0] + "X" * (len(label.encode(encoding)) - 1) for label in classes}
        with zipfile.ZipFile(archive, "w") as handle:
            for label in classes:
                handle.writestr(f"train/{stand_ins[label]}/1.png", label.encode())
        data = archive.read_bytes()
        for label in classes:
            data = data.replace(f"/{stand_ins[label]}/".encode(), f"/{label}/".encode(encoding))
        archive.write_bytes(data)
    listing = image_decoding.list_zip(archive)
    assert list(listing["train"]) == classes
    with image_decoding.open_zip(archive) as handle:
        assert [image_decoding.read_zip_member(handle, listing["train"][label][0]) for label in classes] == [
            label.encode() for label in classes
        ]


def test_the_checkpoint_state_keeps_classes_size_and_standardisation(tmp_path: Path) -> None:
    tree = food_tree(tmp_path / "food", per_class=5)
    dm = folder_module(tree, tmp_path, image_size=12)
    dm.setup()
    state = dm.state_dict()
    assert state["class_names"] == list(FOODS) and state["image_size"] == [12, 12] and state["channels"] == 3
    fresh = folder_module(tree, tmp_path, image_size=12)
    fresh.load_state_dict(state)
    assert fresh.mean == dm.mean and not fresh.splits  # prediction needs no training split
    with pytest.raises(UserInputError, match="trained on 3 x 12 x 12 images"):
        folder_module(tree, tmp_path, image_size=16).load_state_dict(state)
    # Either path, on other images, evaluates with the standardisation the model was trained with.
    other = food_tree(tmp_path / "other", per_class=3)
    for streaming in (False, True):
        restored = folder_module(other, tmp_path, image_size=12, streaming=streaming, num_workers=0)
        restored.load_state_dict(state)
        restored.prepare_data()
        restored.setup("validate")
        assert (restored.mean, restored.std) == (dm.mean, dm.std), streaming


# --- the command line: fit, predict, export ------------------------------------------------
def food_run(tree: Path, tmp_path: Path, *extra: str) -> list[str]:
    return [
        "--config",
        config("image_folder"),
        "--data.data_dir",
        str(tree),
        "--data.cache_dir",
        str(tmp_path / "cache"),
        "--data.image_size",
        "[20, 24]",
        "--data.batch_size",
        "16",
        "--model.net.init_args.widths",
        "[8, 8, 8]",
        "--trainer.max_epochs",
        "3",
        *QUIET,
        *extra,
    ]


def test_testing_on_a_folder_of_some_classes_scores_only_those(in_tmp: Path, tmp_path: Path) -> None:
    """`test` of a checkpoint on new labelled images that hold only some of its classes: the classes
    without images get no per-class accuracy (0 of 0 is no score), the others theirs."""
    from src.cli import TemplateCLI

    tree = food_tree(tmp_path / "food", per_class=10)
    assert run_cli("fit", *food_run(tree, tmp_path, "--trainer.max_epochs", "1")) == 0
    new = tmp_path / "new"
    shutil.copytree(tree / "test" / "sushi", new / "test" / "sushi")
    last = in_tmp / "lightning_logs" / "image_folder" / "version_0" / "checkpoints" / "last.ckpt"
    cli = TemplateCLI(args=["test", "--ckpt_path", str(last), "--data.data_dir", str(new), *QUIET])
    scores = {name: float(value) for name, value in cli.trainer.callback_metrics.items()}
    assert {name for name in scores if name.startswith("test/acc_class_")} == {"test/acc_class_sushi"}
    assert scores["test/acc_class_sushi"] == pytest.approx(scores["test/acc"])  # its images are the whole split


def test_fit_predict_and_export_round_trip_with_the_folder_names(in_tmp: Path, tmp_path: Path) -> None:
    tree = food_tree(tmp_path / "food", per_class=10)
    args = food_run(tree, tmp_path)
    assert run_cli("fit", *args) == 0
    run = in_tmp / "lightning_logs" / "image_folder" / "version_0"
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    state = checkpoint["ImageFolderDataModule"]
    assert state["class_names"] == list(FOODS) and state["image_size"] == [20, 24] and len(state["mean"]) == 3
    # Predict photos of other sizes and modes, with class names.
    photos = tmp_path / "photos"
    photos.mkdir()
    food_image("sushi", 1, ".png", "RGBA", (90, 70)).save(photos / "a.png")
    food_image("pizza", 2, ".jpg", "L", (15, 15)).save(photos / "b.jpg")
    output = in_tmp / "food.csv"
    assert run_cli("predict", *args, "--ckpt_path", "last", "--input", str(photos), "--output", str(output)) == 0
    rows = list(csv.DictReader(output.open()))
    assert [Path(row["file"]).name for row in rows] == ["a.png", "b.jpg"]
    assert {row["class"] for row in rows} <= set(FOODS) and "p_sushi" in rows[0]
    # Export: model.json has the size and standardisation; TorchScript applies it to raw [0, 1] images.
    out = in_tmp / "shipped"
    assert run_cli("export", *args, "--ckpt_path", "last", "--output_dir", str(out)) == 0
    record = json.loads((out / "model.json").read_text())
    assert record["classes"] == list(FOODS) and record["input"]["shape"] == ["batch", 3, 20, 24]
    assert record["input"]["standardization"]["mean"] == pytest.approx(state["mean"])
    assert record["input"]["preprocessing"]["image_size"] == [20, 24]
    assert record["net"]["args"] == [[3, 20, 24], 3]
    net = AirbenchNet(*record["net"]["args"], **record["net"]["init_args"]).eval()
    net.load_state_dict(torch.load(out / "net_state_dict.pt", weights_only=True))
    pixels = torch.rand(2, 3, 20, 24)
    mean, std = (torch.tensor(state[key]).view(1, 3, 1, 1) for key in ("mean", "std"))
    with torch.no_grad():
        scripted = torch.jit.load(str(out / "model.torchscript.pt"))(pixels)
        assert torch.allclose(scripted, net((pixels - mean) / std), atol=1e-5)


# --- bad input: one line each, exit status 2 -------------------------------------------------
def small_food(tmp_path: Path, **kwargs: object) -> Path:
    return food_tree(tmp_path / "food", per_class=4, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("streaming", [False, True])
def test_a_name_that_is_not_utf8_is_read_or_refused_in_one_line(tmp_path: Path, streaming: bool) -> None:
    """Unzipped on Linux from a Windows zip, a name keeps its cp1252 bytes (caf\xe9.png): an image so
    named is read (its fingerprint crashed), a class folder so named is refused, as its name is the class."""
    tree = food_tree(tmp_path / "food", per_class=4)
    first = sorted((tree / "train" / "pizza").iterdir())[0]
    os.rename(bytes(first), os.fsencode(first.parent) + b"/caf\xe9.png")
    folder = folder_module(tree, tmp_path, image_size=8, streaming=streaming, num_workers=0)
    folder.prepare_data()
    folder.setup("fit")
    assert folder.class_names == sorted(FOODS)
    read = sum(len(labels) for loader in (folder.train_dataloader(), folder.val_dataloader()) for _, labels in loader)
    assert read == 4 * len(FOODS)  # the renamed image among them
    os.rename(os.fsencode(tree / "train" / "steak"), os.fsencode(tree / "train") + b"/p\xe2t\xe9")
    with pytest.raises(UserInputError, match=r"the class folder 'p\\xe2t\\xe9' in .* is not UTF-8 text"):
        folder_module(tree, tmp_path, image_size=8, streaming=streaming, num_workers=0).prepare_data()


@pytest.mark.parametrize("streaming", [False, True])
def test_empty_val_and_test_folders_are_no_splits_and_no_validation_is_refused(tmp_path: Path, streaming: bool) -> None:
    """An empty val/ holds out part of train/ as a missing one does (streaming validated on nothing),
    an empty test/ is no test split, and val_size 0 without a val/ is refused on either path."""
    tree = food_tree(tmp_path / "food", per_class=6, splits=("train",))
    (tree / "val").mkdir()
    (tree / "test").mkdir()
    folder = folder_module(tree, tmp_path, image_size=8, streaming=streaming, num_workers=0)
    folder.prepare_data()
    folder.setup("fit")
    assert sum(len(labels) for _, labels in folder.val_dataloader()) == 4  # 20% of 18, by class
    assert not folder.has_test_split
    unvalidated = folder_module(tree, tmp_path, image_size=8, streaming=streaming, num_workers=0, val_size=0)
    with pytest.raises(UserInputError, match="the val split is empty: change data.val_size"):
        unvalidated.setup("fit")
        unvalidated.val_dataloader()


@pytest.mark.parametrize("zipped", [False, True])
def test_images_in_formats_not_read_are_named_not_dropped_in_silence(
    tmp_path: Path, capsys: pytest.CaptureFixture, zipped: bool
) -> None:
    """A .jfif is a JPEG and is read; TIFFs (a scanner's, a microscope's) were left out without a word."""
    tree = food_tree(tmp_path / "food", per_class=4, splits=("train",))
    for index in range(2):
        food_image("pizza", 50 + index, ".tif", "RGB", (16, 16)).save(tree / "train" / "pizza" / f"scan_{index}.tif")
    food_image("steak", 60, ".jpg", "RGB", (16, 16)).save(tree / "train" / "steak" / "photo.jfif", format="JPEG")
    source = tree
    if zipped:
        source = tmp_path / "food.zip"
        with zipfile.ZipFile(source, "w") as archive:
            for path in sorted(tree.rglob("*.*")):
                archive.write(path, path.relative_to(tree).as_posix())
    folder = folder_module(source, tmp_path, image_size=8, val_size=1)
    folder.setup("fit")
    assert (
        sum(len(labels) for loader in (folder.train_dataloader(), folder.val_dataloader()) for _, labels in loader)
        == 13
    )
    out = capsys.readouterr().out
    assert "Left out 2 image(s) in formats not read here (train/pizza/scan_0.tif, train/pizza/scan_1.tif)" in out


def test_a_name_that_is_not_utf8_is_printed_escaped_under_a_utf8_locale(tmp_path: Path) -> None:
    """stdout is strict UTF-8 under en_US.UTF-8: the line naming a left-out caf\xe9.tif crashed the run."""
    tree = food_tree(tmp_path / "food", per_class=4, splits=("train",))
    food_image("pizza", 50, ".tif", "RGB", (16, 16)).save(tmp_path / "scan.tif")
    os.rename(tmp_path / "scan.tif", os.fsencode(tree / "train" / "pizza") + b"/caf\xe9.tif")
    args = food_run(tree, tmp_path, "--trainer.max_epochs", "1", "--data.val_size", "3", *QUIET)
    done = run_train_py("fit", *args, cwd=tmp_path, env={"PYTHONIOENCODING": "utf-8", "LC_ALL": "C.UTF-8"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Left out 1 image(s) in formats not read here (train/pizza/caf\\udce9.tif)" in done.stdout


def test_a_prediction_csv_writes_a_name_that_is_not_utf8_with_escapes(tmp_path: Path) -> None:
    """The CSV stays UTF-8 that pandas and spreadsheets read; the odd name shows its byte."""
    name = os.fsdecode(b"photos/caf\xe9.png")
    write_prediction_csv(tmp_path / "p.csv", {"file": [name, "photos/th\u00e9.png"]}, {"class": ["a", "b"]})
    assert (tmp_path / "p.csv").read_text(encoding="utf-8").splitlines()[1:] == [
        "photos/caf\\xe9.png,a",
        "photos/th\u00e9.png,b",
    ]


def fails_with(args: list[str], capsys: pytest.CaptureFixture, message: str, command: str = "fit") -> str:
    assert run_cli(command, *args) == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error, error
    return error


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (
            lambda root: (root / "train" / "steak" / "bad.png").write_bytes(b"not an image"),
            "cannot decode image train/steak/bad.png",
        ),
        (lambda root: (root / "train" / "soup").mkdir(), "class folder train/soup in"),
        (lambda root: [p.unlink() for p in (root / "train" / "steak").iterdir()], "class folder train/steak in"),
        (
            lambda root: [__import__("shutil").rmtree(root / "train" / name) for name in ("steak", "sushi")],
            "has a single class folder (pizza): a classifier needs at least two",
        ),
        (
            lambda root: (root / "test" / "pizza").rename(root / "test" / "pasta"),
            "unknown class folder 'pasta' (test/pasta/",
        ),
        (
            lambda root: (
                (root / "val" / "tacos").mkdir(parents=True)
                or (root / "train" / "pizza" / "pizza_000.png").rename(root / "val" / "tacos" / "t.png")
            ),
            "unknown class folder 'tacos' (val/tacos/",
        ),
        (lambda root: __import__("shutil").rmtree(root / "train"), "has no train/<class>/ images"),
    ],
    ids=[
        "undecodable",
        "empty-new-class",
        "emptied-class",
        "single-class",
        "test-class-not-in-train",
        "val-class-not-in-train",
        "no-train",
    ],
)
def test_bad_folders_give_one_clear_line(
    in_tmp: Path, tmp_path: Path, capsys: pytest.CaptureFixture, spoil, message: str
) -> None:
    tree = small_food(tmp_path)
    spoil(tree)
    fails_with(food_run(tree, tmp_path, "--trainer.max_epochs", "1"), capsys, message)


def test_skip_bad_images_skips_and_counts_them(in_tmp: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    tree = small_food(tmp_path)
    (tree / "train" / "steak" / "bad.png").write_bytes(b"not an image")
    (tree / "train" / "sushi" / "cut.jpg").write_bytes((tree / "train" / "sushi" / "sushi_001.jpg").read_bytes()[:40])
    args = food_run(tree, tmp_path, "--trainer.max_epochs", "1", "--data.skip_bad_images", "true")
    assert run_cli("fit", *args) == 0
    out = capsys.readouterr().out
    assert "Skipped 2 image(s) that could not be decoded" in out and "train/steak/bad.png" in out


def test_without_a_test_folder_test_says_so(in_tmp: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    tree = food_tree(tmp_path / "food", per_class=4, splits=("train",))
    args = food_run(tree, tmp_path, "--trainer.max_epochs", "1")
    assert run_cli("fit", *args) == 0
    out = capsys.readouterr().out
    assert "no test split" in out
    # Where the run went is said all the same.
    run = Path("lightning_logs") / "image_folder" / "version_0"
    assert f"TensorBoard logs: {run}" in out and f"Best checkpoint: {run / 'checkpoints'}" in out
    fails_with([*args, "--ckpt_path", "last"], capsys, "has no test images (no test/<class>/ folder)", "test")


def test_predicting_with_a_checkpoint_of_other_classes_is_refused(
    in_tmp: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    tree = small_food(tmp_path)
    args = food_run(tree, tmp_path, "--trainer.max_epochs", "1")
    assert run_cli("fit", *args) == 0
    (tree / "train" / "sushi").rename(tree / "train" / "ramen")
    (tree / "test" / "sushi").rename(tree / "test" / "ramen")
    fails_with(
        [*args, "--ckpt_path", "last", "--input", str(tree / "test")], capsys, "trained on the classes", "predict"
    )


def test_best_after_a_fine_tune_on_other_classes_is_refused_in_one_line(
    in_tmp: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """README's "Start a new task from your own checkpoint", then `best` on the first task: the newest
    run is the second task's (2 classes), which does not fit the first task's 3 classes."""
    first = food_tree(tmp_path / "food", per_class=4)
    second = food_tree(tmp_path / "two", per_class=4)
    for split in ("train", "test"):
        __import__("shutil").rmtree(second / split / "sushi")
    args = food_run(first, tmp_path, "--trainer.max_epochs", "1")
    assert run_cli("fit", *args) == 0
    start = str(in_tmp / "lightning_logs" / "image_folder" / "version_0" / "checkpoints" / "last.ckpt")
    tuned = food_run(second, tmp_path, "--trainer.max_epochs", "1", "--trainer.callbacks", "[]")
    assert run_cli("fit", *tuned, "--model.init_from", start) == 0
    capsys.readouterr()
    for command, extra in [
        ("predict", ["--input", str(first / "test")]),
        ("test", []),
        ("validate", []),
        ("export", []),
    ]:
        error = fails_with([*args, "--ckpt_path", "best", *extra], capsys, "", command)
        lines = [line for line in error.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), (command, error)
        assert "[pizza, steak], but --data.data_dir" in lines[0] and "has [pizza, steak, sushi]" in lines[0]
        assert "--trainer.logger.init_args.name" in lines[0]
    # The fix the line names: the second task under its own experiment name, so `best` finds each task's own run.
    named = ["--trainer.logger.init_args.name", "two"]
    assert run_cli("fit", *tuned, *named, "--model.init_from", start) == 0
    output = in_tmp / "two.csv"
    predict = ["--ckpt_path", "best", "--input", str(second / "test"), "--output", str(output)]
    assert run_cli("predict", *tuned, *named, *predict) == 0
    assert "p_steak" in output.read_text() and "p_sushi" not in output.read_text()


# --- the streaming path --------------------------------------------------------------------
def test_streaming_reads_the_same_images_and_says_which_path_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    tree = food_tree(tmp_path / "food", per_class=6)
    memory = folder_module(tree, tmp_path, image_size=12, streaming=False)
    memory.setup()
    assert "Data path: in memory (data.streaming false; 36 images x 3x12x12 uint8" in capsys.readouterr().out
    streaming = folder_module(tree, tmp_path, image_size=12, streaming=True, num_workers=0, batch_size=4)
    streaming.setup()
    out = capsys.readouterr().out
    assert "Data path: streaming from files (data.streaming true" in out
    assert "Mean/std of the 14 training images ready in" in out  # every training image: 18, less 4 held out
    assert not streaming.splits and set(streaming.images.streams) == {"train", "val", "test"}
    # the same normalisation as in memory, measured on the whole training split, then kept
    assert streaming.mean == pytest.approx(memory.mean, abs=1e-9) and streaming.std == pytest.approx(memory.std)
    again = folder_module(tree, tmp_path, image_size=12, streaming=True, num_workers=0)
    again.setup()
    assert "mean/std" not in capsys.readouterr().out.lower() and again.mean == streaming.mean
    for split in ("val", "test"):  # unaugmented splits: the same images as in memory, in the same order
        images = torch.stack(
            [streaming.images.streams[split][i][0] for i in range(len(streaming.images.streams[split]))]
        )
        assert torch.equal(images, memory.splits[split][0])
    images, labels = next(iter(streaming.train_dataloader()))
    assert images.shape == (4, 3, 12, 12) and images.dtype == torch.uint8 and labels.dtype == torch.long
    assert len(streaming.train_dataloader()) == 4  # 14 images in batches of 4: the last batch, of two, trains
    one_left = folder_module(tree, tmp_path, image_size=12, streaming=True, num_workers=0, batch_size=13)
    one_left.setup()
    assert len(one_left.train_dataloader()) == 1  # 13 + 1: a batch of one is skipped (BatchNorm cannot train on it)
    auto = folder_module(tree, tmp_path, image_size=12)
    auto.setup()
    assert "Data path: in memory (36 images x 3x12x12 uint8 = 0.0 MiB, less than half of the" in capsys.readouterr().out


def test_an_empty_validation_split_is_refused_before_training_on_either_path(
    in_tmp: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Without a val/ folder, `--data.val_size 0` leaves nothing to validate on: Lightning would skip
    validation silently and the run would end with no best checkpoint."""
    tree = small_food(tmp_path)
    for streaming in ("false", "true"):
        args = food_run(
            tree, tmp_path, "--data.val_size", "0", "--data.streaming", streaming, "--data.num_workers", "0"
        )
        fails_with(args, capsys, "the val split is empty: change data.val_size so that every split gets data")
    assert not (in_tmp / "lightning_logs" / "image_folder").exists() or not any(
        (in_tmp / "lightning_logs" / "image_folder").iterdir()
    )


def test_the_streaming_mean_std_is_measured_once_in_prepare_data_and_read_by_every_setup(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """prepare_data runs on one process per machine: there the one pass over the files, not on every DDP rank."""
    tree = food_tree(tmp_path / "food", per_class=6)
    first = folder_module(tree, tmp_path, image_size=12, streaming=True, num_workers=0)
    first.prepare_data()
    assert "Mean/std of the 14 training images ready in" in capsys.readouterr().out
    for _ in range(2):  # each rank's own data module
        rank = folder_module(tree, tmp_path, image_size=12, streaming=True, num_workers=0)
        rank.setup("fit")
        assert "mean/std" not in capsys.readouterr().out.lower()
        assert rank.mean == first.mean and rank.std == first.std


def test_the_streaming_order_follows_seed_and_epoch_so_a_resume_sees_the_same(tmp_path: Path) -> None:
    tree = food_tree(tmp_path / "food", per_class=6)

    def order(epoch: int) -> list[int]:
        module = folder_module(tree, tmp_path, image_size=12, streaming=True, num_workers=0, batch_size=4)
        module.setup()
        sampler = module.train_dataloader().sampler
        sampler.start(epoch, 0)  # what the training loader does at every epoch's start
        return list(sampler)

    # A fresh loader (as after a resume) gives epoch 3 the order an uninterrupted run gives it;
    # and epochs differ from each other.
    assert order(3) == order(3) and order(3) != order(0)
    assert sorted(order(0)) == list(range(len(order(0))))


def test_a_streaming_run_trains_from_a_zip(in_tmp: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    tree = food_tree(tmp_path / "food", per_class=6)
    archive = tmp_path / "food.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for path in sorted(tree.rglob("*.*")):
            handle.write(path, path.relative_to(tree).as_posix())
    args = food_run(
        archive, tmp_path, "--trainer.max_epochs", "2", "--data.streaming", "true", "--data.num_workers", "2"
    )
    assert run_cli("fit", *args) == 0
    out = capsys.readouterr().out
    assert "Data path: streaming from files" in out and "test/acc" in out


def test_streaming_skips_and_names_undecodable_images_when_asked(
    in_tmp: Path, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    capsys = capfd  # file descriptors: the DataLoader workers print the names they skip
    tree = small_food(tmp_path, splits=("train", "val", "test"))
    (tree / "train" / "steak" / "bad.png").write_bytes(b"not an image")
    (tree / "val" / "sushi" / "cut.jpg").write_bytes((tree / "train" / "sushi" / "sushi_001.jpg").read_bytes()[:40])
    streaming = ("--data.streaming", "true", "--data.num_workers", "2")
    args = food_run(tree, tmp_path, "--trainer.max_epochs", "2", *streaming)
    error = fails_with(args, capsys, "cannot decode image train/steak/bad.png")  # without the flag: one line
    assert "or set --data.skip_bad_images true to skip undecodable files" in error
    assert run_cli("fit", *args, "--data.skip_bad_images", "true") == 0
    out = capsys.readouterr().out
    assert "Data path: streaming from files" in out and "test/acc" in out
    for name in ("train/steak/bad.png", "val/sushi/cut.jpg"):
        assert f"Skipped an image that could not be decoded (data.skip_bad_images): {name}" in out, out

    # In detail: training batches keep their size with decodable images; evaluation drops the
    # undecodable ones, so every decodable image counts once.
    # (no augmentation: the training items go through no transform, and are still replaced)
    options = {"streaming": True, "num_workers": 0, "skip_bad_images": True, "flip": False, "translate": 0}
    module = folder_module(tree, tmp_path, image_size=12, **options)
    module.setup()
    train, val = module.images.streams["train"], module.images.streams["val"]
    bad = next(i for i, (name, _) in enumerate(train.items) if name == "train/steak/bad.png")
    image, label = train[bad]
    assert image.shape == (3, 12, 12) and label == train.items[(bad + 1) % len(train)][1]
    assert torch.equal(image, train[(bad + 1) % len(train)][0])  # the next image itself, not a blank
    labels = torch.cat([module.on_before_batch_transfer(batch, 0)[1] for batch in module.val_dataloader()])
    assert len(labels) == len(val) - 1 and bool((labels >= 0).all())
    nothing = module.on_before_batch_transfer((torch.zeros(2, 3, 12, 12), torch.tensor([UNDECODABLE] * 2)), 0)
    assert len(nothing[0]) == len(nothing[1]) == 0

    # An evaluation batch left empty counts for nothing (its loss would be NaN).
    classifier = ClassificationModule(input_shape=(3, 12, 12), num_classes=3).eval()
    x, y = torch.rand(4, 3, 12, 12), torch.tensor([0, 1, 2, 0])
    classifier.validation_step((x, y), 0)
    alone = float(classifier.val_metrics["loss"].compute())
    classifier.validation_step(nothing, 1)
    assert float(classifier.val_metrics["loss"].compute()) == pytest.approx(alone)


def test_an_error_raised_in_a_data_loader_worker_is_still_one_line() -> None:
    # The streaming path decodes in DataLoader workers, which re-raise a worker's error with its
    # traceback in the message; the user still gets the error's own line.
    from torch.utils.data import DataLoader, Dataset

    from src.cli.user_errors import user_message
    from src.errors import UserInputError

    class Broken(Dataset):
        def __len__(self) -> int:
            return 2

        def __getitem__(self, index: int) -> None:
            raise UserInputError("cannot decode image train/steak/bad.png: not an image")

    with pytest.raises(UserInputError) as caught:
        next(iter(DataLoader(Broken(), num_workers=1)))
    assert "Original Traceback" in str(caught.value)  # what the worker hands back
    assert user_message(caught.value) == "cannot decode image train/steak/bad.png: not an image"


# --- images below class folders, damaged zips, sizes no run can take ---------------------------
def test_images_in_subfolders_of_a_class_folder_belong_to_it(tmp_path: Path) -> None:
    tree = food_tree(tmp_path / "food", per_class=4)
    for label in FOODS:  # half of each class one or two folders down, as photo exports do
        for index, depth in ((1, "2025"), (2, "2025/june")):
            (tree / "train" / label / depth).mkdir(parents=True, exist_ok=True)
            image = next((tree / "train" / label).glob(f"{label}_{index:03d}.*"))
            image.rename(tree / "train" / label / depth / image.name)
    hidden = tree / "train" / "pizza" / ".ipynb_checkpoints"
    hidden.mkdir()
    food_image("pizza", 99, ".png", "RGB", (20, 20)).save(hidden / "copy.png")  # left out, as hidden files are
    archive = tmp_path / "food.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for path in sorted(tree.rglob("*.*")):
            handle.write(path, "food/" + path.relative_to(tree).as_posix())
    counts = {}
    for name, data_dir, streaming in (("tree", tree, False), ("stream", tree, True), ("zip", archive, False)):
        module = folder_module(data_dir, tmp_path, image_size=12, streaming=streaming, num_workers=0)
        module.setup()
        sizes = {
            split: len(module.images.streams[split]) if streaming else len(module.splits[split][1]) for split in SPLITS
        }
        counts[name] = sizes
    assert counts["tree"] == counts["stream"] == counts["zip"] == {"train": 10, "val": 2, "test": 12}
    assert "train/sushi/2025/june/sushi_002.jpeg" in image_decoding.list_tree(tree)["train"]["sushi"]

    # The cache follows the files: an image added in a new subfolder is decoded, not missed.
    before = folder_module(tree, tmp_path, image_size=12, streaming=False).cache_path()  # the folder is read when asked
    (tree / "train" / "steak" / "new").mkdir()
    food_image("steak", 50, ".png", "RGB", (20, 20)).save(tree / "train" / "steak" / "new" / "late.png")
    after = folder_module(tree, tmp_path, image_size=12, streaming=False)
    after.setup()
    assert after.cache_path() != before
    assert len(after.splits["train"][1]) + len(after.splits["val"][1]) == 13


def test_a_zip_cache_made_from_another_listing_is_not_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A zip's cache was named after the zip file alone: one decoded when subfolders were not
    # listed would be read back without their images.
    tree = food_tree(tmp_path / "food", per_class=4, splits=("train",))
    (tree / "train" / "pizza" / "more").mkdir()
    food_image("pizza", 50, ".png", "RGB", (20, 20)).save(tree / "train" / "pizza" / "more" / "extra.png")
    archive = tmp_path / "food.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for path in sorted(tree.rglob("*.*")):
            handle.write(path, path.relative_to(tree).as_posix())
    full = image_decoding.list_zip(archive)
    flat = {"train": {label: [n for n in names if n.count("/") == 2] for label, names in full["train"].items()}}
    monkeypatch.setattr("src.datamodules.image_folder.list_zip", lambda path, others=None: flat)
    old = folder_module(archive, tmp_path, image_size=12, streaming=False)
    old.setup()
    monkeypatch.undo()
    new = folder_module(archive, tmp_path, image_size=12, streaming=False)
    new.setup()
    assert new.cache_path() != old.cache_path()
    assert len(new.splits["train"][1]) + len(new.splits["val"][1]) == 13


def damage_member(archive: Path, member: str, how: str) -> None:
    """Spoil one member of a stored (uncompressed) zip: flip a byte of its data ('crc'), or mark
    it in the central directory as encrypted ('encrypted'), as a password-protected zip does, or
    as compressed with Deflate64 ('deflate64'), as Windows' Explorer does large zips."""
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as handle:
        info = handle.getinfo(member)
    if how == "crc":
        start = info.header_offset + 30 + len(member.encode()) + len(info.extra)
        data[start + info.file_size // 2] ^= 0xFF
    else:
        entry = data.find(b"PK\x01\x02")
        while data[entry + 46 : entry + 46 + len(member)] != member.encode():
            entry = data.find(b"PK\x01\x02", entry + 4)
        if how == "encrypted":
            data[entry + 8] |= 0x01  # general purpose flag bit 0: encrypted
        else:
            data[entry + 10] = 9  # compression method 9: Deflate64
    archive.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("how", "streaming", "message"),
    [
        ("crc", "false", "food.zip is damaged: member train/steak/steak_000.png cannot be read back (Bad CRC-32"),
        ("crc", "true", "food.zip is damaged: member train/steak/steak_000.png cannot be read back (Bad CRC-32"),
        ("encrypted", "false", "food.zip is password-protected (member train/steak/steak_000.png is encrypted)"),
        ("deflate64", "false", "food.zip: member train/steak/steak_000.png is compressed in a way Python's zipfile"),
        ("deflate64", "true", "food.zip: member train/steak/steak_000.png is compressed in a way Python's zipfile"),
    ],
)
def test_a_damaged_or_encrypted_zip_member_is_named_in_one_line(
    in_tmp: Path, tmp_path: Path, capsys: pytest.CaptureFixture, how: str, streaming: str, message: str
) -> None:
    tree = small_food(tmp_path)
    archive = tmp_path / "food.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as handle:
        for path in sorted(tree.rglob("*.*")):
            handle.write(path, path.relative_to(tree).as_posix())
    damage_member(archive, "train/steak/steak_000.png", how)
    args = food_run(archive, tmp_path, "--trainer.max_epochs", "1", "--data.streaming", streaming)
    error = fails_with([*args, "--data.num_workers", "0", "--data.skip_bad_images", "true"], capsys, message)
    assert error.count("\n") == 1 and not list(in_tmp.glob("lightning_logs/*/version_*/checkpoints/*.ckpt"))


@pytest.mark.parametrize(
    ("size", "message"),
    [
        ("1", "data.image_size 1x1 is too small: images need at least 4 pixels a side"),
        ("[2, 32]", "data.image_size 2x32 is too small"),
        ("100000", "data.image_size 100000x100000 is too large: one batch of 16 images of 3x100000x100000 float32"),
    ],
)
def test_an_image_size_no_run_can_take_is_refused_in_one_line(
    in_tmp: Path, tmp_path: Path, capsys: pytest.CaptureFixture, size: str, message: str
) -> None:
    tree = small_food(tmp_path)
    error = fails_with(
        [*food_run(tree, tmp_path, "--trainer.max_epochs", "1"), "--data.image_size", size], capsys, message
    )
    assert error.count("\n") == 1 and "--data.image_size" in error.split(message)[1]
    assert not (tmp_path / "cache").exists()  # refused before anything was decoded


def test_an_empty_validation_split_names_the_image_folders_own_option(tmp_path: Path) -> None:
    module = folder_module(food_tree(tmp_path / "food", per_class=4), tmp_path, image_size=8, val_size=0)
    module.setup("fit")
    with pytest.raises(UserInputError, match=r"the val split is empty: change data.val_size so that every split"):
        module.train_dataloader()


@pytest.mark.parametrize("net", ["TinyVGG", "BlitzCNN"])
def test_the_image_folder_config_trains_the_other_nets_as_documented(
    in_tmp: Path, tmp_path: Path, capsys: pytest.CaptureFixture, net: str
) -> None:
    """docs/own-data.md: `--model.net src.modules.nets.TinyVGG` on configs/image_folder.yaml, whose
    PatchWhitening callback is for AirbenchNet's stem: it says so and leaves the other net alone."""
    tree = small_food(tmp_path)
    args = [arg for arg in food_run(tree, tmp_path, "--trainer.max_epochs", "1") if arg != "[8, 8, 8]"]
    args.remove("--model.net.init_args.widths")
    assert run_cli("fit", *args, "--model.net", f"src.modules.nets.{net}") == 0
    assert f"PatchWhitening: {net} has no whitened stem; nothing to set up" in capsys.readouterr().out


def test_a_checkpoint_of_other_channels_names_data_channels(
    in_tmp: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    tree = small_food(tmp_path)
    assert run_cli("fit", *food_run(tree, tmp_path, "--trainer.max_epochs", "1", "--data.channels", "1")) == 0
    checkpoint = next((in_tmp / "lightning_logs").rglob("last.ckpt"))
    capsys.readouterr()
    fails_with(
        [*food_run(tree, tmp_path), "--ckpt_path", str(checkpoint)],
        capsys,
        "was trained on 1-channel images, and --data.channels is 3 here",
        command="validate",
    )
