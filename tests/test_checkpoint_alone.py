"""A checkpoint is all a trained model needs: predict, test and export with no --config and no
training data, through the same Predictor a server would use, and the .pt2 export."""

import csv
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image
from sklearn.datasets import load_iris

from src.errors import UserInputError
from src.tools.predictor import load_predictor
from tests.conftest import QUIET, ROOT, config, run_cli
from tests.test_cifar10 import image_tree, tiny_cifar_run
from tests.test_image_folder import FOODS, food_image, food_run, food_tree

TOLERANCE = 1e-5


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def same_predictions(first: Path, second: Path) -> None:
    """Two predictions CSVs with the same rows, text columns equal and numbers within TOLERANCE."""
    a, b = read_rows(first), read_rows(second)
    assert len(a) == len(b) > 0 and list(a[0]) == list(b[0])
    for row_a, row_b in zip(a, b, strict=True):
        for key in row_a:
            if key.startswith(("p_", "probability", "predicted_")):
                assert float(row_a[key]) == pytest.approx(float(row_b[key]), abs=TOLERANCE), key
            else:
                assert row_a[key] == row_b[key], key


def checkpoint_of(run: Path) -> Path:
    return next((run / "checkpoints").glob("epoch=*.ckpt"), run / "checkpoints" / "last.ckpt")


def predict_both_ways(config_args: list[str], ckpt: Path, inputs: str, move_away: Path | None, tmp: Path) -> None:
    """predict with the config, then (training data moved away) with the checkpoint alone: the same CSV."""
    assert run_cli("predict", *config_args, "--ckpt_path", str(ckpt), "--input", inputs, "--output", "a.csv") == 0
    if move_away is not None:
        move_away.rename(tmp / "moved_away")
    assert run_cli("predict", "--ckpt_path", str(ckpt), "--input", inputs, "--output", "b.csv", *QUIET) == 0
    same_predictions(tmp / "a.csv", tmp / "b.csv")


# --- toy points and the synthetic regression ------------------------------------------------
@pytest.mark.parametrize(
    ("name", "header", "points"),
    [("circles", "x1,x2", ["0,0", "1,0", "0.1,-0.75"]), ("regression", "x", ["0.5", "5", "12.5"])],
)
def test_toy_tasks_predict_from_the_checkpoint_alone(in_tmp: Path, name: str, header: str, points: list[str]) -> None:
    args = ["--config", config(name), "--trainer.max_epochs", "5", "--trainer.check_val_every_n_epoch", "5", *QUIET]
    assert run_cli("fit", *args) == 0
    (in_tmp / "inputs.csv").write_text("\n".join([header, *points]) + "\n")
    ckpt = checkpoint_of(in_tmp / "lightning_logs" / name / "version_0")
    predict_both_ways(args, ckpt, "inputs.csv", None, in_tmp)


# --- CSV tables -------------------------------------------------------------------------------
def write_iris(path: Path, rows: slice | list[int] = slice(None)) -> Path:
    """Iris with text labels and an id column."""
    data = load_iris()
    indices = range(150)[rows] if isinstance(rows, slice) else rows
    lines = ["id,sepal_length,sepal_width,petal_length,petal_width,species"]
    for i in indices:
        lines.append(f"i{i}," + ",".join(f"{v:.1f}" for v in data.data[i]) + f",{data.target_names[data.target[i]]}")
    path.write_text("\n".join(lines) + "\n")
    return path


def iris_args(name: str, target: str) -> list[str]:
    return [
        "--config",
        config(name),
        "--data.csv_path",
        "train/iris.csv",
        "--data.target_column",
        target,
        "--data.id_columns",
        "[id]",
        "--trainer.max_epochs",
        "20",
        *QUIET,
    ]


def test_a_csv_classifier_predicts_and_tests_new_rows_from_the_checkpoint_alone(
    in_tmp: Path, capsys: pytest.CaptureFixture
) -> None:
    (in_tmp / "train").mkdir()
    write_iris(in_tmp / "train" / "iris.csv")
    args = iris_args("tabular_classification", "species")
    assert run_cli("fit", *args) == 0
    ckpt = checkpoint_of(in_tmp / "lightning_logs" / "tabular_classification" / "version_0")
    new = write_iris(in_tmp / "new.csv", [*range(30, 70), *range(140, 150)])  # other rows, another mean
    predict_both_ways(args, ckpt, "new.csv", in_tmp / "train", in_tmp)
    assert {row["class"] for row in read_rows(in_tmp / "b.csv")} <= {"setosa", "versicolor", "virginica"}
    # test on the new labelled rows: every row, with the checkpoint's classes and standardisation (not refitted)
    capsys.readouterr()
    # a flag given twice (a command from the shell's history, one more --ckpt_path): the last one counts
    assert (
        run_cli("test", "--ckpt_path", "gone.ckpt", "--ckpt_path", str(ckpt), "--data.csv_path", str(new), *QUIET) == 0
    )
    out = capsys.readouterr().out
    assert "Testing on all 50 rows of" in out
    loss = float(re.search(r"test/loss\s*│\s*([0-9.]+)", out).group(1))  # type: ignore[union-attr]
    predictor = load_predictor(ckpt)
    _, columns = predictor.predict_file(new)
    truth = [row["species"] for row in read_rows(new)]
    expected = -torch.tensor([float(columns[f"p_{label}"][i]) for i, label in enumerate(truth)]).log().mean()
    assert loss == pytest.approx(expected.item(), abs=1e-4)
    # With the training config too: Lightning sets the data up before it restores the checkpoint, and the
    # splits are built again with the checkpoint's standardisation, on every row of the new file.
    config_args = [*args[:8], "--data.csv_path", str(new)]
    assert run_cli("test", *config_args, "--ckpt_path", str(ckpt), *QUIET) == 0
    out = capsys.readouterr().out
    assert "Testing on all 50 rows of" in out
    with_config = float(re.search(r"test/loss\s*│\s*([0-9.]+)", out).group(1))  # type: ignore[union-attr]
    assert with_config == pytest.approx(loss, abs=1e-6)


def test_the_training_csv_moved_elsewhere_is_still_tested_on_its_test_split(
    in_tmp: Path, capsys: pytest.CaptureFixture
) -> None:
    """On another machine the training file sits elsewhere: it is known by its bytes, so `test` scores the
    seeded test split, as at its own path, not every row (training rows included)."""
    (in_tmp / "train").mkdir()
    write_iris(in_tmp / "train" / "iris.csv")
    assert run_cli("fit", *iris_args("tabular_classification", "species")) == 0
    ckpt = checkpoint_of(in_tmp / "lightning_logs" / "tabular_classification" / "version_0")
    capsys.readouterr()
    assert run_cli("test", "--ckpt_path", str(ckpt), "--data.csv_path", "train/iris.csv", *QUIET) == 0
    at_home = capsys.readouterr().out
    # The training config with another seed: still the test split the model was trained beside, not one
    # that would hold its training rows.
    other_seed = [*iris_args("tabular_classification", "species")[:8], "--data.seed", "7"]
    assert run_cli("test", *other_seed, "--ckpt_path", str(ckpt), *QUIET) == 0
    reseeded = capsys.readouterr().out
    (in_tmp / "moved").mkdir()
    shutil.move(in_tmp / "train" / "iris.csv", in_tmp / "moved" / "iris.csv")
    assert run_cli("test", "--ckpt_path", str(ckpt), "--data.csv_path", "moved/iris.csv", *QUIET) == 0
    moved = capsys.readouterr().out
    assert "Testing on all" not in moved
    table = re.compile(r"test/loss\s*│\s*([0-9.]+)")
    assert table.search(moved).group(1) == table.search(at_home).group(1)  # type: ignore[union-attr]
    assert table.search(reseeded).group(1) == table.search(at_home).group(1)  # type: ignore[union-attr]
    # Edited in place (rows dropped or added), its seeded test split would hold training rows: refused.
    write_iris(in_tmp / "train" / "iris.csv", slice(0, 140))
    assert run_cli("test", "--ckpt_path", str(ckpt), "--data.csv_path", "train/iris.csv", *QUIET) == 2
    assert "has changed since the model was trained on it" in capsys.readouterr().err.strip().splitlines()[-1]


def test_a_csv_regressor_predicts_from_the_checkpoint_alone(in_tmp: Path) -> None:
    (in_tmp / "train").mkdir()
    write_iris(in_tmp / "train" / "iris.csv")
    args = [*iris_args("tabular_regression", "petal_width"), "--data.feature_columns", "[sepal_length, sepal_width]"]
    assert run_cli("fit", *args) == 0
    ckpt = checkpoint_of(in_tmp / "lightning_logs" / "tabular_regression" / "version_0")
    (in_tmp / "new.csv").write_text("id,sepal_length,sepal_width\na,5.1,3.5\nb,6.7,3.0\n")
    predict_both_ways(args, ckpt, "new.csv", in_tmp / "train", in_tmp)
    assert list(read_rows(in_tmp / "b.csv")[0]) == ["id", "predicted_petal_width"]


# --- images -----------------------------------------------------------------------------------
def test_an_image_folder_model_predicts_tests_and_exports_from_the_checkpoint_alone(
    in_tmp: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    tree = food_tree(tmp_path / "food", per_class=4, splits=("train",))
    args = food_run(tree, tmp_path, "--trainer.max_epochs", "2", "--data.image_size", "12")
    assert run_cli("fit", *args) == 0
    ckpt = checkpoint_of(in_tmp / "lightning_logs" / "image_folder" / "version_0")
    photos = in_tmp / "photos"
    photos.mkdir()
    food_image("sushi", 1, ".png", "RGBA", (30, 20)).save(photos / "a.png")
    food_image("pizza", 2, ".jpg", "L", (15, 15)).save(photos / "b.jpg")
    predict_both_ways(args, ckpt, "photos", tree, in_tmp)
    # the Python API takes PIL images and paths alike, as predict reads files
    written = read_rows(in_tmp / "b.csv")
    with Image.open(photos / "a.png") as image:
        results = load_predictor(ckpt).predict([image, photos / "b.jpg"])
    assert [result["class"] for result in results] == [row["class"] for row in written]
    # a float tensor (torchvision's to_tensor: [0, 1]) is refused, not read as black images on the 0-255 scale
    with pytest.raises(UserInputError, match=r"must be uint8 \(N x\) 3 x H x W with values 0-255"):
        load_predictor(ckpt).predict(torch.rand(2, 3, 12, 12))
    for result, row in zip(results, written, strict=True):
        assert [result["probabilities"][name] for name in FOODS] == pytest.approx(
            [float(row[f"p_{name}"]) for name in FOODS], abs=TOLERANCE
        )
    # test on a new labelled folder (test/<class>/ only): its images, the checkpoint's classes and mean/std
    new = food_tree(tmp_path / "new", per_class=2, splits=("test",))
    capsys.readouterr()
    assert run_cli("test", "--ckpt_path", str(ckpt), "--data.data_dir", str(new), *QUIET) == 0
    loss = float(re.search(r"test/loss\s*│\s*([0-9.]+)", capsys.readouterr().out).group(1))  # type: ignore[union-attr]
    predictor = load_predictor(ckpt)
    files = sorted((new / "test").rglob("*.*"))
    probabilities = predictor.outputs(files)
    truth = torch.tensor([FOODS.index(path.parent.name) for path in files])
    smoothing = 0.2  # configs/image_folder.yaml's label_smoothing
    logs = probabilities.log()
    expected = -((1 - smoothing) * logs[torch.arange(len(truth)), truth] + smoothing * logs.mean(dim=1)).mean()
    assert loss == pytest.approx(expected.item(), abs=1e-4)
    # export needs only the checkpoint too
    out = in_tmp / "shipped"
    assert run_cli("export", "--ckpt_path", str(ckpt), "--output_dir", str(out), *QUIET) == 0
    record = json.loads((out / "model.json").read_text())
    assert record["classes"] == list(FOODS) and record["input"]["shape"] == ["batch", 3, 12, 12]
    assert set(record["files"]) == {"state_dict", "pt2", "torchscript", "onnx"}
    assert "dynamo=True" in record["exporters"]["onnx"]


def test_cifar10_predicts_from_the_checkpoint_alone(in_tmp: Path, tmp_path: Path) -> None:
    tree = image_tree(tmp_path / "tree", per_class=3, with_test=False)
    args = [*tiny_cifar_run(tree, tmp_path), "--data.val_size", "10", "--trainer.max_epochs", "1"]
    assert run_cli("fit", *args) == 0
    ckpt = checkpoint_of(in_tmp / "lightning_logs" / "cifar10_cpu" / "version_0")
    photos = in_tmp / "photos"
    shutil.copytree(tree / "train" / "cat", photos)
    predict_both_ways(args, ckpt, "photos", tree, in_tmp)


# --- the Python API, the .pt2 export, checkpoints without a run config ----------------------------------------
@pytest.fixture
def trained_circles(in_tmp: Path) -> Path:
    args = ["--config", config("circles"), "--trainer.max_epochs", "5", "--trainer.check_val_every_n_epoch", "5"]
    assert run_cli("fit", *args, *QUIET) == 0
    return checkpoint_of(in_tmp / "lightning_logs" / "circles" / "version_0")


def test_a_partial_config_applies_on_top_of_the_checkpoints_own(
    trained_circles: Path, capsys: pytest.CaptureFixture
) -> None:
    """A --config without a model (configs/debug/*.yaml, configs/loggers/*.yaml) was taken for the
    whole config: "required: --model", though the checkpoint holds it."""
    capsys.readouterr()
    fast = ["--config", str(ROOT / "configs" / "debug" / "fast_dev_run.yaml")]
    assert run_cli("test", "--ckpt_path", str(trained_circles), *fast, *QUIET) == 0
    assert "test/acc" in capsys.readouterr().out
    long_yaml = ", ".join(["log_every_n_steps: 1"] * 20)  # inline YAML longer than a file name may be
    no_batches = ["--config", f"{{trainer: {{limit_test_batches: 0, {long_yaml}}}}}"]  # applied: nothing is tested
    assert run_cli("test", "--ckpt_path", str(trained_circles), *no_batches, *QUIET) == 0
    assert "test/acc" not in capsys.readouterr().out
    assert run_cli("test", "--ckpt_path", str(trained_circles), "--config", "{model: {}}") == 2  # a model section


def test_the_predictor_takes_rows_columns_and_arrays_alike(trained_circles: Path) -> None:
    predictor = load_predictor(trained_circles)
    rows = predictor.predict([{"x1": 0.0, "x2": 0.0}, {"x1": 1.0, "x2": 0.0}])
    columns = predictor.predict({"x1": [0.0, 1.0], "x2": [0.0, 0.0]})
    array = predictor.outputs([[0.0, 0.0], [1.0, 0.0]])
    assert rows == columns and predictor.classes == ["0", "1"]
    assert [row["probabilities"]["1"] for row in rows] == pytest.approx(array[:, 1].tolist(), abs=TOLERANCE)
    assert sum(rows[0]["probabilities"].values()) == pytest.approx(1.0, abs=TOLERANCE)
    with pytest.raises(UserInputError, match="input row 1: 'x2' is true, not a number"):
        predictor.predict([{"x1": 0.0, "x2": 0.0}, {"x1": 1.0, "x2": True}])  # JSON's true, as a server gets it
    assert predictor.outputs([1.0, 0.0]).tolist() == array[1:].tolist()  # one row as a flat list
    assert predictor.outputs([]).shape == (0, 2) and predictor.predict([]) == []  # no rows, no answers
    with pytest.raises(UserInputError, match=r"input row 0: 'x1' is 'NaN', not a number \(a missing value: null\)"):
        predictor.predict({"x1": "NaN", "x2": 0.0})  # a float NaN (pandas' missing cell) is a missing value
    with pytest.raises(UserInputError, match="not the path 'points.csv': for a CSV file use predict_file"):
        predictor.predict("points.csv")
    with pytest.raises(UserInputError, match=r"columns of values must be equally long, got \{'x1': 2, 'x2': 1\}"):
        predictor.predict({"x1": [0.0, 1.0], "x2": [0.0]})
    pandas = pytest.importorskip("pandas")
    table = pandas.DataFrame({"x1": [0.0, 1.0], "x2": [0.0, 0.0]})
    assert (
        predictor.predict(table) == rows
        and predictor.predict({"x1": (v for v in (0.0, 1.0)), "x2": [0.0, 0.0]}) == rows
    )
    with pytest.raises(UserInputError, match="missing"):  # pandas' NA is a missing cell, as in a CSV
        predictor.predict(table.astype("Float64").mask(table["x1"] > 0.5))
    # Arrays of another shape are refused, not reshaped into other rows: features as rows (2 x N), an extra column.
    for wrong in ([[0.0, 1.0, 2.0], [0.0, 0.0, 0.0]], [[0.0, 0.0, 7.0]] * 4):
        with pytest.raises(UserInputError, match=r"must be N x 2, its columns in the order \['x1', 'x2'\]; got"):
            predictor.outputs(wrong)


def test_pt2_export_from_the_checkpoint_alone_has_a_dynamic_batch(trained_circles: Path, in_tmp: Path) -> None:
    out = in_tmp / "shipped"
    assert run_cli("export", "--ckpt_path", str(trained_circles), "--output_dir", str(out), "--formats", "[pt2]") == 0
    record = json.loads((out / "model.json").read_text())
    assert set(record["files"]) == {"pt2"} and record["max_abs_difference"]["pt2"] < 1e-4
    program = torch.export.load(str(out / "model.pt2")).module()
    predictor = load_predictor(trained_circles)
    for count in (1, 5):
        points = torch.randn(count, 2)
        with torch.no_grad():
            logits = program(points)
        assert logits.shape == (count, 1)
        expected = predictor.outputs(points)[:, 1]
        assert torch.sigmoid(logits).flatten() == pytest.approx(expected.tolist(), abs=TOLERANCE)


def test_a_checkpoint_without_its_run_config_says_so_in_one_line(
    trained_circles: Path, in_tmp: Path, capsys: pytest.CaptureFixture
) -> None:
    checkpoint = torch.load(trained_circles, weights_only=True)
    del checkpoint["run_config"]
    torch.save(checkpoint, in_tmp / "old.ckpt")
    (in_tmp / "points.csv").write_text("x1,x2\n0,0\n")
    capsys.readouterr()
    assert run_cli("predict", "--ckpt_path", "old.ckpt", "--input", "points.csv") == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "old.ckpt holds no record of its run's config" in error[0]
    assert "--config" in error[0] and "retrain" in error[0]
    assert "serve and load_predictor take only a checkpoint that needs nothing else" in error[0]  # no --config there
    assert not (in_tmp / "predictions.csv").exists()
    # with the config it was trained with, it still predicts
    assert run_cli("predict", "--config", config("circles"), "--ckpt_path", "old.ckpt", "--input", "points.csv") == 0
    checkpoint["run_config"] = "model: [unclosed\n"  # edited by hand
    torch.save(checkpoint, in_tmp / "edited.ckpt")
    capsys.readouterr()
    assert run_cli("predict", "--ckpt_path", "edited.ckpt", "--input", "points.csv", "--output", "e.csv") == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "edited.ckpt holds no readable record of its run's config" in error[0], error
