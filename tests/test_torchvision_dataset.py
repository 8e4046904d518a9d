"""torchvision data sets by name (TorchvisionDataModule): torchvision's real download, served here by a
loopback server in FashionMNIST's own file format, then the image folder's in-memory path."""

import collections
import contextlib
import functools
import gzip
import hashlib
import http.server
import re
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.datasets import FashionMNIST
from torchvision.io import write_png

from src.datamodules import TorchvisionDataModule
from src.datamodules.torchvision_dataset import as_uint8_images
from src.errors import UserInputError
from tests.conftest import QUIET, config, run_cli


def idx_file(path: Path, array: np.ndarray) -> None:
    """`array` (uint8) gzipped in the IDX format MNIST-family files use."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as out:
        out.write(header + array.astype(np.uint8).tobytes())


def fashion_files(folder: Path, per_class: int, seed: int) -> dict[str, str]:
    """FashionMNIST's four files, made small and learnable (class k: a bright band at rows 2k..2k+3,
    plus noise): {file name: md5}."""
    rng = np.random.default_rng(seed)
    sizes = {"train": per_class * 10, "t10k": 40}
    md5s = {}
    for prefix, count in sizes.items():
        labels = np.arange(count) % 10
        images = rng.integers(0, 60, (count, 28, 28))
        for index, label in enumerate(labels):
            images[index, 2 * label + 4 : 2 * label + 8, :] += 180
        names = (f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz")
        idx_file(folder / names[0], np.clip(images, 0, 255))
        idx_file(folder / names[1], labels)
        for name in names:
            md5s[name] = hashlib.md5((folder / name).read_bytes()).hexdigest()
    return md5s


class QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def served_fashion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """FashionMNIST's download pointed at a loopback server holding its four files; the paths asked for."""
    folder = tmp_path / "served"
    folder.mkdir()
    md5s = fashion_files(folder, per_class=12, seed=0)
    asked: list[str] = []

    class Recording(QuietFiles):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            asked.append(self.path)
            # torchvision opens a URL once to follow redirects, then fetches it
            with contextlib.suppress(BrokenPipeError):
                super().do_GET()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Recording, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(FashionMNIST, "mirrors", [f"http://127.0.0.1:{server.server_address[1]}/"])
    monkeypatch.setattr(FashionMNIST, "resources", [(name, md5) for name, md5 in md5s.items()])
    try:
        yield asked
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_fashion_mnist_downloads_by_name_and_a_tinyvgg_learns_it(
    served_fashion: list[str], in_tmp: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = [
        "--config",
        config("fashion_mnist"),
        "--data.data_dir",
        str(in_tmp / "tv"),
        "--data.cache_dir",
        str(in_tmp / "cache"),
        "--data.val_size",
        "20",
        "--trainer.max_epochs",
        "8",
        "--data.batch_size",
        "10",
        "--trainer.callbacks",
        "[]",
        *QUIET,
    ]
    assert run_cli("fit", *args) == 0
    assert set(served_fashion) == {f"/{name}" for name, _ in FashionMNIST.resources}  # torchvision's own fetch
    assert (in_tmp / "tv" / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").is_file()
    accuracy = float(re.search(r"test/acc\s*│\s*([0-9.]+)", capsys.readouterr().out).group(1))  # type: ignore[union-attr]
    assert accuracy >= 0.7  # 40 unseen test images of ten banded classes: chance is 0.1
    ckpt = next((in_tmp / "lightning_logs" / "fashion_mnist").rglob("last.ckpt"))
    state = torch.load(ckpt, weights_only=True)["TorchvisionDataModule"]
    assert state["class_names"] == FashionMNIST.classes and state["image_size"] == [28, 28] and state["channels"] == 1
    # the checkpoint alone predicts a user's own PNG (a band at class 3's rows: "Dress")
    band = np.full((28, 28), 20, dtype=np.uint8)
    band[10:14, :] = 220
    photos = in_tmp / "photos"
    photos.mkdir()
    write_png(torch.from_numpy(band).unsqueeze(0), str(photos / "mine.png"))
    answers = in_tmp / "answers.csv"
    assert run_cli("predict", "--ckpt_path", str(ckpt), "--input", str(photos), "--output", str(answers)) == 0
    assert answers.read_text().splitlines()[1].split(",")[1] == FashionMNIST.classes[3]
    # a second run finds the files and its cache: nothing is downloaded again, and the set's files
    # are read once (torchvision reads them whole whenever a data set object is made)
    served_fashion.clear()
    made = []
    original = FashionMNIST.__init__

    @functools.wraps(original)
    def counted(self: FashionMNIST, *args: object, **kwargs: object) -> None:
        made.append(kwargs.get("train"))
        original(self, *args, **kwargs)

    monkeypatch.setattr(FashionMNIST, "__init__", counted)
    assert run_cli("fit", *args, "--trainer.max_epochs", "1") == 0
    assert served_fashion == [] and made == [True]


def test_offline_or_a_wrong_name_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(FashionMNIST, "mirrors", ["http://127.0.0.1:9/"])  # nothing listens there
    module = TorchvisionDataModule(data_dir=tmp_path / "tv", cache_dir=tmp_path / "cache")
    with pytest.raises(UserInputError, match="could not download FashionMNIST") as error:
        module.prepare_data()
    assert "\n" not in str(error.value) and "download=True" in str(error.value)
    refused = TorchvisionDataModule(data_dir=tmp_path / "tv", download=False)
    with pytest.raises(UserInputError, match="no FashionMNIST files"):
        refused.prepare_data()
    with pytest.raises(UserInputError, match="not a torchvision data set name .*; one of: .*FashionMNIST"):
        TorchvisionDataModule(name="FashionMnist")
    for other in ("FlyingChairs", "Cityscapes"):  # optical flow and segmentation: no download= or no train/test
        with pytest.raises(UserInputError, match="not a torchvision data set that downloads itself") as error:
            TorchvisionDataModule(name=other)
        assert other not in str(error.value).split("one of: ")[1].split(", ")


def test_a_set_whose_samples_are_not_image_and_class_is_one_line() -> None:
    with pytest.raises(UserInputError, match="gives samples that are not \\(image, class index\\)"):  # image pairs
        as_uint8_images([(Image.new("L", (4, 4)), Image.new("L", (4, 4)), 1)])
    with pytest.raises(UserInputError, match="labels its images with tuple, not a class index"):
        as_uint8_images([(Image.new("L", (4, 4)), (1, 2))])


def test_processes_that_each_build_the_module_download_the_set_once(
    served_fashion: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Under DDP every process builds the data module and LightningCLI asks it for num_classes
    # there, before any process group: here two threads, each as slow to download as a network.
    original = FashionMNIST.download

    def slow(self: FashionMNIST) -> None:
        time.sleep(0.3)
        original(self)

    monkeypatch.setattr(FashionMNIST, "download", slow)
    folder = tmp_path / "tv"
    modules = [TorchvisionDataModule(data_dir=folder, cache_dir=tmp_path / f"cache{i}") for i in range(2)]
    start = threading.Barrier(2)
    classes: list[int] = []

    def ask(module: TorchvisionDataModule) -> None:
        start.wait()
        classes.append(module.num_classes)

    threads = [threading.Thread(target=ask, args=(module,)) for module in modules]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert classes == [10, 10]
    asked = collections.Counter(served_fashion)
    assert set(asked) == {f"/{name}" for name, _ in FashionMNIST.resources}
    assert max(asked.values()) <= 2  # one download: torchvision opens each URL to follow redirects, then fetches it
