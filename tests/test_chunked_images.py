"""LitData chunks (`train.py optimize`, ChunkedImageDataModule): written from an image folder with its
classes, split and mean/std; trained on, resumed mid-epoch exactly, predicted from the checkpoint
alone; and streamed from S3 through moto's server on loopback."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from src.datamodules import ImageFolderDataModule
from src.datamodules.chunk_writer import optimize
from src.datamodules.image_file_dataset import ImageFiles
from src.errors import UserInputError
from tests.conftest import QUIET, config, run_cli, run_train_py
from tests.test_cli import scalars
from tests.test_pretrained import class_tree

litdata = pytest.importorskip("litdata")

CLASSES = ["a", "b", "c"]


def with_test_split(root: Path) -> Path:
    """class_tree's train/ plus a test/<class>/ of two images each."""
    class_tree(root, CLASSES, per_class=14)
    for name in CLASSES:
        (root / "test" / name).mkdir(parents=True)
        for image in sorted((root / "train" / name).iterdir())[:2]:
            shutil.move(image, root / "test" / name / image.name)
    return root


def test_optimize_decodes_each_image_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The training images' mean/std are summed as the chunks are written, not in a pass of their own."""
    tree = with_test_split(tmp_path / "tree")
    log = tmp_path / "read.txt"
    read = ImageFiles._read

    def logged(self: ImageFiles, name: str) -> bytes:
        with log.open("a") as lines:  # the forked LitData workers append here too
            lines.write(name + "\n")
        return read(self, name)

    monkeypatch.setattr(ImageFiles, "_read", logged)
    record = optimize(tree, str(tmp_path / "chunks"), image_size=16, num_workers=2)
    names = log.read_text().splitlines()
    assert record["splits"] == {"train": 32, "val": 4, "test": 6}
    assert len(names) == 42 and len(set(names)) == 42


def test_optimize_refuses_an_empty_split_in_one_line(tmp_path: Path) -> None:
    tree = class_tree(tmp_path / "tree", CLASSES, per_class=3)
    with pytest.raises(UserInputError, match="the val split is empty: change --val_size so that every split gets"):
        optimize(tree, str(tmp_path / "chunks"), image_size=16, val_size=0)


def chunk_run(chunks: str, *extra: str) -> list[str]:
    """configs/image_chunks.yaml on `chunks` with a small net: seconds on a CPU."""
    return [
        "--config",
        config("image_chunks"),
        "--data.data_dir",
        chunks,
        "--data.batch_size",
        "8",
        "--data.num_workers",
        "1",
        "--model.net.init_args.widths",
        "[8, 8, 8]",
        "--trainer.check_val_every_n_epoch",
        "1",
        "--trainer.log_every_n_steps",
        "1",
        *QUIET,
        *extra,
    ]


@pytest.fixture(scope="module")
def chunks(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(image tree, its chunks at 16 x 16), written once for the module's tests."""
    root = tmp_path_factory.mktemp("chunked")
    tree = with_test_split(root / "tree")
    out = root / "chunks"
    done = run_train_py("optimize", "--data_dir", str(tree), "--output_dir", str(out), "--image_size", "16", cwd=root)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"Wrote 42 images of 3 classes as LitData chunks to {out} (train 32, val 4, test 6)" in done.stdout
    assert "Data path" not in done.stdout  # a fit's line about how it reads its data: not optimize's
    return tree, out


def test_the_chunks_keep_the_image_folders_classes_split_and_statistics(chunks: tuple[Path, Path]) -> None:
    tree, out = chunks
    record = json.loads((out / "dataset.json").read_text())
    folder = ImageFolderDataModule(tree, image_size=16, streaming=True, cache_dir=out.parent / "cache")
    folder.setup("fit")
    assert record["class_names"] == CLASSES and record["image_size"] == [16, 16]
    assert record["mean"] == pytest.approx(folder.mean) and record["std"] == pytest.approx(folder.std)
    # every stored image is the image folder's own decoding of the same file, with its label
    stored = litdata.StreamingDataset(str(out / "val"))
    expected = folder.images.streams["val"]
    assert len(stored) == len(expected) == 4
    pairs = {(tuple(expected[i][0].flatten().tolist()), expected[i][1]) for i in range(len(expected))}
    assert {(tuple(item["image"].flatten().tolist()), item["label"]) for item in stored} == pairs
    refused = run_train_py("optimize", "--data_dir", str(tree), "--output_dir", str(out), cwd=out.parent)
    assert refused.returncode == 2 and "already holds LitData chunks written by `optimize`" in refused.stderr
    assert f"--data.data_dir {out}" in refused.stderr  # finished chunks: the line says how to train on them


def test_a_model_trains_on_chunks_and_predicts_from_the_checkpoint_alone(
    chunks: tuple[Path, Path], in_tmp: Path, capsys: pytest.CaptureFixture
) -> None:
    tree, out = chunks
    # 4 validation images reach 1.0 within a couple of epochs, and the first best val/acc is kept: the
    # best checkpoint by val/loss (which keeps falling) is the trained one, not an early tie.
    best_by_loss = ["--checkpoint.monitor", "val/loss", "--checkpoint.mode", "min"]
    assert run_cli("fit", *chunk_run(str(out), "--trainer.max_epochs", "12", *best_by_loss)) == 0
    accuracy = float(re.search(r"test/acc\s*│\s*([0-9.]+)", capsys.readouterr().out).group(1))  # type: ignore[union-attr]
    assert accuracy >= 0.8  # three colour classes, 6 unseen test images: chance is 0.33
    ckpt = in_tmp / "lightning_logs" / "image_chunks" / "version_0" / "checkpoints" / "last.ckpt"
    answers = in_tmp / "answers.csv"
    photos = tree / "test" / "b"
    away = out.with_name("away")
    out.rename(away)  # the chunks are not needed to predict
    try:
        assert run_cli("predict", "--ckpt_path", str(ckpt), "--input", str(photos), "--output", str(answers)) == 0
    finally:
        away.rename(out)
    rows = answers.read_text().splitlines()
    assert rows[0].startswith("file,class,probability") and sum(",b," in row for row in rows[1:]) >= 1
    # the whole test folder, predicted from the checkpoint alone: as right as the test said
    every = in_tmp / "every.csv"
    assert run_cli("predict", "--ckpt_path", str(ckpt), "--input", str(tree / "test"), "--output", str(every)) == 0
    predicted = [row.split(",") for row in every.read_text().splitlines()[1:]]
    assert len(predicted) == 6 and sum(Path(name).parent.name == label for name, label, *_ in predicted) >= 5
    # chunks of other images (another size) are refused against this checkpoint, in one line
    other = in_tmp / "other_chunks"
    done = run_train_py(
        "optimize", "--data_dir", str(tree), "--output_dir", str(other), "--image_size", "12", cwd=in_tmp
    )
    assert done.returncode == 0, done.stderr[-2000:]
    refused = run_train_py("test", "--ckpt_path", str(ckpt), "--data.data_dir", str(other), cwd=in_tmp)
    assert refused.returncode == 2 and "the checkpoint was trained on image_size [16, 16]" in refused.stderr


def test_a_run_stopped_mid_epoch_resumes_with_the_batches_that_remained(
    chunks: tuple[Path, Path], in_tmp: Path
) -> None:
    _, out = chunks
    # No augmentation: then the batches are the same in every run and weights compare bit for bit.
    # The config's one-cycle schedule asks the loader for its length (the steps estimate) first.
    args = chunk_run(str(out), "--data.flip", "false", "--data.translate", "0", "--trainer.max_epochs", "3")
    args += ["--data.num_workers", "2"]  # two LitData workers take the batches in turn
    stop = {"class_path": "tests.helpers.SignalAtStep", "init_args": {"step": 6, "signum": signal.SIGTERM}}
    assert run_cli("fit", *args, f"--trainer.callbacks+={json.dumps(stop)}") == 143
    run = in_tmp / "lightning_logs" / "image_chunks" / "version_0"
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 6  # epoch 1's 2nd of 4
    assert run_cli("fit", *args, "--ckpt_path", "last") == 0
    assert run_cli("fit", *args) == 0
    straight = in_tmp / "lightning_logs" / "image_chunks" / "version_1"
    resumed_state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    straight_state = torch.load(straight / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    for key, value in straight_state.items():
        assert torch.equal(resumed_state[key], value), key
    assert [step for step, _ in scalars(run)["train/loss_step"]] == list(range(12))  # 3 epochs of 4, none again


def test_an_epochs_remainder_of_one_image_is_skipped_not_a_crash(in_tmp: Path) -> None:
    """33 training images in batches of 8 leave one: at 16 px the net's last BatchNorm sees it as
    1 x 1 features and cannot train on it. The epoch is 4 batches, and the schedule knows it."""
    tree = class_tree(in_tmp / "tree", CLASSES, per_class=12)
    chunks = in_tmp / "chunks"
    record = optimize(tree, str(chunks), image_size=16, val_size=3, num_workers=1)
    assert record["splits"]["train"] == 33
    for workers in ("0", "2"):
        args = chunk_run(str(chunks), "--data.num_workers", workers, "--trainer.max_epochs", "2")
        assert run_cli("fit", *args) == 0
    for run in sorted((in_tmp / "lightning_logs" / "image_chunks").iterdir()):
        saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
        assert saved["global_step"] == 8 and saved["lr_schedulers"][0]["total_steps"] == 8, run


def test_a_shift_as_large_as_the_chunks_images_is_one_line(chunks: tuple[Path, Path], tmp_path: Path) -> None:
    done = run_train_py("fit", *chunk_run(str(chunks[1]), "--data.translate", "16"), cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1] == (
        "error: data.translate must be below the image side of the chunks (16 pixels), got 16: lower data.translate"
    )
    assert not (tmp_path / "lightning_logs" / "image_chunks" / "version_0").exists()


def test_a_folder_without_chunks_or_an_undecodable_image_is_one_line(tmp_path: Path) -> None:
    done = run_train_py("fit", *chunk_run(str(tmp_path)), cwd=tmp_path)
    assert done.returncode == 2
    assert "holds no LitData chunks" in done.stderr and "train.py optimize" in done.stderr
    tree = with_test_split(tmp_path / "tree")
    (tree / "test" / "a" / "broken.png").write_bytes(b"not a png")  # met only by a LitData worker
    failed = run_train_py("optimize", "--data_dir", str(tree), "--output_dir", str(tmp_path / "out"), cwd=tmp_path)
    assert failed.returncode == 2, failed.stderr[-2000:]
    last = failed.stderr.strip().splitlines()[-1]
    assert (
        last.startswith("error: cannot decode image test/a/broken.png") and "skip_bad_images" not in last
    )  # no such option
    # The failed run left the splits it had written; a rerun after the fix says they are leftovers, not data.
    (tree / "test" / "a" / "broken.png").unlink()
    again = run_train_py("optimize", "--data_dir", str(tree), "--output_dir", str(tmp_path / "out"), cwd=tmp_path)
    assert again.returncode == 2
    assert "leftovers of an `optimize` that did not finish" in again.stderr.strip().splitlines()[-1]
    source = run_train_py("optimize", "--data_dir", str(tree), "--output_dir", str(tree), cwd=tmp_path)
    assert source.returncode == 2 and "is not empty" in source.stderr and "leftovers" not in source.stderr  # images
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("the user's own")
    theirs = run_train_py("optimize", "--data_dir", str(tree), "--output_dir", str(tmp_path / "mine"), cwd=tmp_path)
    assert theirs.returncode == 2 and "is not empty" in theirs.stderr
    assert (tmp_path / "mine" / "notes.txt").read_text() == "the user's own"


# --- S3, through moto's server on loopback ----------------------------------------------------
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[dict[str, str]]:
    """moto's S3 server on 127.0.0.1 with a bucket `chunks`: the environment that reaches it."""
    pytest.importorskip("moto")
    import boto3

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),  # nothing of this machine's ~/.aws
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
    }
    client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        try:
            client.create_bucket(Bucket="chunks")
            break
        except Exception:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                pytest.fail("moto's S3 server did not start")
            time.sleep(0.2)
    try:
        yield env
    finally:
        os.kill(server.pid, signal.SIGTERM)
        server.wait(timeout=20)


def test_chunks_stream_from_s3_and_a_bad_bucket_or_no_credentials_is_one_line(
    chunks: tuple[Path, Path], s3: dict[str, str], in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3
    from litdata.streaming import downloader

    _, out = chunks
    client = boto3.client("s3", endpoint_url=s3["AWS_ENDPOINT_URL"], region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip
    for path in out.rglob("*"):  # as `aws s3 sync` would upload them
        if path.is_file():
            client.upload_file(str(path), "chunks", f"photos/{path.relative_to(out).as_posix()}")
    for key, value in s3.items():
        monkeypatch.setenv(key, value)
    # The emulator speaks plain http, which LitData's chunk client (obstore) refuses unless told;
    # real S3 is https. Its forked workers inherit the setting.
    monkeypatch.setitem(downloader._OBSTORE_CLIENT_OPTIONS, "allow_http", "true")
    args = chunk_run("s3://chunks/photos", "--trainer.max_epochs", "2", "--data.cache_dir", str(in_tmp / "cache"))
    assert run_cli("fit", *args) == 0
    state = torch.load(next((in_tmp / "lightning_logs").rglob("last.ckpt")), weights_only=True)
    assert state["global_step"] == 8  # 2 epochs of the 32 training images in batches of 8, all from S3
    assert state["ChunkedImageDataModule"]["class_names"] == CLASSES
    env = dict(s3)
    again = run_train_py(
        "optimize", "--data_dir", str(out.parent / "tree"), "--output_dir", "s3://chunks/photos", cwd=in_tmp, env=env
    )
    assert again.returncode == 2 and "already holds LitData chunks" in again.stderr  # LitData would delete them
    for root in ("s3://chunks", "s3://chunks/"):  # the bucket's root holds photos/
        at_root = run_train_py(
            "optimize", "--data_dir", str(out.parent / "tree"), "--output_dir", root, cwd=in_tmp, env=env
        )
        assert at_root.returncode == 2 and "s3://chunks" in at_root.stderr, at_root.stderr
        assert "is not empty" in at_root.stderr, at_root.stderr  # the bucket's root holds photos/, not chunks
    wrong_bucket = run_train_py("fit", *chunk_run("s3://nobucket/photos"), cwd=in_tmp, env=env)
    assert wrong_bucket.returncode == 2 and "cannot read s3://nobucket/photos/dataset.json" in wrong_bucket.stderr
    no_credentials = {**env, "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}
    refused = run_train_py("fit", *chunk_run("s3://chunks/photos"), cwd=in_tmp, env=no_credentials)
    assert refused.returncode == 2 and "AWS_ACCESS_KEY_ID" in refused.stderr.strip().splitlines()[-1]
