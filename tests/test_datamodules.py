"""Data modules: sizes, disjoint reproducible splits, dtypes, standardisation and bad input."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.model_selection import train_test_split

from src.datamodules import RegressionDataModule, TabularDataModule, ToyPointsDataModule
from src.datamodules.image_decoding import read_images_to_predict
from src.datamodules.splits import split_indices
from src.datamodules.standardisation import PixelMoments, fit_pixel_standardisation
from src.errors import UserInputError
from tests.conftest import config, run_cli


def test_circles_splits_have_the_right_sizes_types_and_no_overlap() -> None:
    dm = ToyPointsDataModule()
    dm.setup()
    sizes = {name: len(x) for name, (x, _) in dm.splits.items()}
    assert sizes == {"train": 700, "val": 100, "test": 200}
    x, y = dm.splits["train"]
    assert x.dtype == torch.float32 and x.shape[1] == 2 and y.dtype == torch.long
    assert set(y.unique().tolist()) == {0, 1}
    rows = [set(map(tuple, dm.splits[s][0].tolist())) for s in ("train", "val", "test")]
    assert not (rows[0] & rows[1]) and not (rows[0] & rows[2]) and not (rows[1] & rows[2])
    assert (dm.input_shape, dm.num_classes) == ((2,), 2)


def test_splits_are_reproducible_and_change_with_the_seed() -> None:
    first, again, other = ToyPointsDataModule(), ToyPointsDataModule(), ToyPointsDataModule(seed=7)
    for dm in (first, again, other):
        dm.setup()
    assert torch.equal(first.splits["test"][0], again.splits["test"][0])
    assert not torch.equal(first.splits["test"][0], other.splits["test"][0])


def test_test_split_is_the_course_split_and_ignores_the_val_fraction() -> None:
    _, course_test = train_test_split(np.arange(1000), test_size=0.2, random_state=42)
    for val_fraction in (0.0, 0.1, 0.3):
        parts = split_indices(1000, val_fraction, 0.2, seed=42)
        assert sorted(parts.test.tolist()) == sorted(course_test.tolist())
        assert len(parts.train) + len(parts.val) + len(parts.test) == 1000


def test_blobs_and_moons_generators() -> None:
    blobs = ToyPointsDataModule(dataset="blobs", centers=4)
    blobs.setup()
    assert blobs.num_classes == 4 and set(blobs.splits["train"][1].unique().tolist()) == {0, 1, 2, 3}
    moons = ToyPointsDataModule(dataset="moons", noise=0.1)
    moons.setup()
    assert moons.num_classes == 2 and moons.splits["train"][0].shape == (700, 2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"test_fraction": 1.0}, "test_fraction must be in [0, 1)"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "must be < 1"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"n_samples": 3}, "n_samples must be >= 10"),
    ],
)
def test_circles_rejects_impossible_values(kwargs: dict, message: str) -> None:
    with pytest.raises(UserInputError, match=message.replace("[", r"\[").replace(")", r"\)")):
        ToyPointsDataModule(**kwargs)


def test_linear_source_is_the_course_line_split_in_order() -> None:
    dm = RegressionDataModule(source="linear", standardize=False, shuffle_split=False)
    dm.setup()
    x_train, y_train = dm.splits["train"]
    x_test, _ = dm.splits["test"]
    assert len(x_train) + len(dm.splits["val"][0]) + len(x_test) == 50
    assert len(x_test) == 10 and x_test.min() > x_train.max()  # tested on the largest x
    assert torch.allclose(y_train, 0.7 * x_train + 0.3)


def test_wave_noise_grows_along_x_and_the_noise_floor_is_its_variance() -> None:
    dm = RegressionDataModule(source="wave", n_samples=4000, noise=0.3, standardize=False)
    dm.setup()
    x, y = dm.splits["train"]
    residual = y - dm.true_targets("train")
    low, high = residual[x < 5].std().item(), residual[x > 15].std().item()
    assert 0.3 < low < 0.5 and 0.7 < high < 0.95  # noise * (1 + x / 10)
    expected = (0.3 * (1 + x / 10)).pow(2).mean().item()
    assert dm.noise_floor("train") == pytest.approx(expected, rel=0.1)


def test_standardisation_is_fitted_on_the_training_split_only() -> None:
    dm = RegressionDataModule(source="wave")
    dm.setup()
    train_x = dm.splits["train"][0]
    assert train_x.mean().abs() < 1e-5 and (train_x.std() - 1).abs() < 1e-5
    raw_train = dm.raw_inputs["train"]
    assert torch.allclose(dm.feature_mean, raw_train.mean(dim=0))


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_csv_table_reads_features_and_target(tmp_path: Path) -> None:
    rows = "\n".join(f"{i},{2 * i},{3 * i + 1}" for i in range(20))
    path = write(tmp_path / "data.csv", "a,b,price\n" + rows + "\n")
    dm = TabularDataModule(csv_path=path, target_column="price", standardize=False)
    dm.setup()
    assert dm.task == "regression" and dm.input_shape == (2,) and dm.feature_names == ["a", "b"]
    x, y = dm.splits["train"]
    assert torch.allclose(y[:, 0], 3 * x[:, 0] + 1)


@pytest.mark.parametrize(
    ("content", "kwargs", "message"),
    [
        (None, {}, "CSV file not found"),
        ("", {}, "no data rows"),
        ("a,b\n", {}, "no data rows"),
        ("a,b\n1,2\n", {"target_column": "price"}, "no column(s) ['price']"),
        ("a,b\n1,x\n", {"feature_columns": ["b"], "target_column": "a"}, "column(s) ['b'] hold text ('x'"),
        ("a,b\n1,2,3\n", {}, "line 2: 3 fields, expected 2"),
        ("a,b\n\n1,x\n", {"target_column": "b", "task": "regression"}, "('x' on line 3)"),  # file lines
    ],
)
def test_csv_table_rejects_bad_files_with_a_clear_message(
    tmp_path: Path, content: str | None, kwargs: dict, message: str
) -> None:
    path = tmp_path / "data.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UserInputError) as error:
        TabularDataModule(csv_path=path, **{"target_column": "b", **kwargs}).input_shape  # noqa: B018 - read when needed
    assert message in str(error.value)


def test_pixel_moments_summed_in_parts_give_the_whole_sets_mean_and_std() -> None:
    """What `train.py optimize` relies on: each writer sums its shards, the parts merge after."""
    images = torch.randint(0, 256, (30, 3, 5, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    images[:, 2] = 7  # a constant channel keeps std 1
    whole = fit_pixel_standardisation([images[:11], images[11:]], "the test images")
    merged = PixelMoments()
    for part in (images[:4], images[4:4], images[4:19], images[19:]):  # an empty part too
        moments = PixelMoments()
        if len(part):
            moments.add(part)
        merged.merge(PixelMoments.from_state(moments.state()))
    mean, std = merged.mean_std("the test images")
    assert mean == pytest.approx(whole[0], abs=1e-12) and std == pytest.approx(whole[1], abs=1e-12)
    pixels = images.double().div(255).transpose(0, 1).flatten(1)
    assert whole[0] == pytest.approx(pixels.mean(1).tolist(), abs=1e-12)
    assert whole[1][:2] == pytest.approx(pixels.std(1, correction=0)[:2].tolist(), abs=1e-12)
    assert whole[1][2] == 1.0


@pytest.mark.parametrize("task", ["circles", "regression"])
def test_a_fit_with_nothing_held_out_for_testing_ends_without_a_test(
    task: str, in_tmp: Path, capsys: pytest.CaptureFixture
) -> None:
    assert run_cli("fit", "--config", config(task), "--trainer.max_epochs", "2", "--data.test_fraction", "0") == 0
    out = capsys.readouterr().out
    assert "no test split: skipping the test" in out and "Best checkpoint:" in out


def test_a_last_training_batch_of_one_sample_is_skipped_so_batchnorm_trains(
    in_tmp: Path, capsys: pytest.CaptureFixture
) -> None:
    # 700 training points in batches of 699 leave one: BatchNorm cannot train on it.
    args = ["--config", config("circles"), "--data.batch_size", "699", "--model.net.init_args.batch_norm", "true"]
    assert run_cli("fit", *args, "--trainer.max_epochs", "2") == 0
    assert "epoch=1-step=2.ckpt" in capsys.readouterr().out  # one step an epoch
    dm = ToyPointsDataModule(batch_size=699)
    dm.setup()
    assert len(dm.train_dataloader()) == 1 and len(dm.test_dataloader()) == 1
    two_left = ToyPointsDataModule(batch_size=698)
    two_left.setup()
    assert len(two_left.train_dataloader()) == 2  # a batch of two trains


def test_images_to_predict_skip_hidden_folders_and_a_bad_one_says_what_to_do(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    (photos / ".ipynb_checkpoints").mkdir(parents=True)
    Image.new("RGB", (5, 7), "red").save(photos / "a.png")
    Image.new("RGB", (5, 7), "blue").save(photos / ".ipynb_checkpoints" / "a-checkpoint.png")
    images, names = read_images_to_predict(photos, (4, 4))
    assert names == [str(photos / "a.png")] and images.shape == (1, 3, 4, 4)
    (photos / "broken.png").write_bytes(b"not an image")
    with pytest.raises(UserInputError, match="broken.png.*nothing was predicted: fix or remove that file"):
        read_images_to_predict(photos, (4, 4))
    images, names = read_images_to_predict(photos, (4, 4), skip_bad=True)
    assert names == [str(photos / "a.png")] and images.shape == (1, 3, 4, 4)
    assert images[0, 0].eq(255).all() and images[0, 2].eq(0).all()  # the red one, not an empty slot
    (photos / "a.png").unlink()
    with pytest.raises(UserInputError, match="none of the 1 image file"):
        read_images_to_predict(photos, (4, 4), skip_bad=True)


def test_the_exported_resize_record_is_what_pil_reproduces() -> None:
    """model.json's `resize` says how to prepare a photo without this project: following it with PIL
    (bilinear, covering size, center crop) gives what training and predict feed the net."""
    from src.datamodules.image_decoding import fit_to_size, preprocessing_record

    rows, columns = torch.meshgrid(torch.linspace(0, 6, 97), torch.linspace(0, 9, 131), indexing="ij")
    channels = [torch.sin(rows), torch.cos(columns), torch.sin(rows + columns)]
    photo = (torch.stack(channels) * 100 + 128).round().to(torch.uint8)  # a smooth 131 x 97 photo
    assert "bilinear" in preprocessing_record(3, (32, 32))["resize"]
    assert "exif_transpose" in preprocessing_record(3, (32, 32))["orientation"]  # as training decodes photos
    covering = (43, 32)  # 131 x 97 scaled by 32 / 97, each side rounded
    resized = np.asarray(Image.fromarray(photo.permute(1, 2, 0).numpy()).resize(covering, Image.BILINEAR))
    left = round((43 - 32) / 2)  # 6: half to even
    by_pil = torch.from_numpy(resized[:, left : left + 32].copy()).permute(2, 0, 1).int()
    ours = fit_to_size(photo.unsqueeze(0), (32, 32))[0].int()
    assert (by_pil - ours).abs().max() <= 1
    bicubic = np.asarray(Image.fromarray(photo.permute(1, 2, 0).numpy()).resize(covering, Image.BICUBIC))
    assert (torch.from_numpy(bicubic[:, left : left + 32].copy()).permute(2, 0, 1).int() - ours).abs().max() > 1
