"""`train.py predict`: a CSV with one row per input, in order, with what the trained model says."""

import csv
from pathlib import Path

import pytest
import torch
from torchvision.io import write_png

from src.modules.nets import MLP
from src.tools.prediction_output import written_by_predict
from src.tools.prediction_table import prediction_columns, write_prediction_csv
from tests.conftest import QUIET, config, run_cli
from tests.test_cifar10 import image_tree, tiny_cifar_run


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def net_weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    state = torch.load(checkpoint, weights_only=True)["state_dict"]
    return {key.removeprefix("net."): value for key, value in state.items() if key.startswith("net.")}


@pytest.fixture
def trained_circles(in_tmp: Path) -> Path:
    assert run_cli("fit", "--config", config("circles"), "--trainer.max_epochs", "30", *QUIET) == 0
    return next((in_tmp / "lightning_logs" / "circles" / "version_0" / "checkpoints").glob("epoch=*.ckpt"))


def test_circles_predictions_match_the_inputs_and_the_trained_net(trained_circles: Path, in_tmp: Path) -> None:
    points = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.1, -0.75], [-0.95, 0.2], [0.0, 1.02]])
    lines = ["id,x1,x2,note"] + [f"p{i},{x:.3f},{y:.3f},n{i}" for i, (x, y) in enumerate(points.tolist())]
    (in_tmp / "points.csv").write_text("\n".join(lines) + "\n")
    assert (
        run_cli(
            "predict",
            "--config",
            config("circles"),
            "--ckpt_path",
            "best",
            "--input",
            "points.csv",
            "--output",
            "out/predicted.csv",
            *QUIET,
        )
        == 0
    )
    rows = read_rows(in_tmp / "out" / "predicted.csv")
    assert [row["id"] for row in rows] == [f"p{i}" for i in range(5)]
    assert [row["note"] for row in rows] == [f"n{i}" for i in range(5)]
    net = MLP(2, 1, hidden_sizes=[512, 512], activation="relu")
    net.load_state_dict(net_weights(trained_circles))
    with torch.no_grad():
        p_inner = torch.sigmoid(net.eval()(points)).flatten()
    for row, p in zip(rows, p_inner.tolist(), strict=True):
        assert float(row["p_1"]) == pytest.approx(p, abs=1e-5)
        assert float(row["p_0"]) + float(row["p_1"]) == pytest.approx(1.0, abs=1e-5)
        assert row["class"] == ("1" if p > 0.5 else "0")
        assert float(row["probability"]) == pytest.approx(max(p, 1 - p), abs=1e-5)
    assert [row["class"] for row in rows] == ["1", "0", "1", "0", "0"]  # inner circle is class 1
    assert not (in_tmp / "lightning_logs" / "circles" / "version_1").exists()  # predicting makes no run


def test_a_labelled_files_own_class_column_is_kept_beside_the_predictions(
    trained_circles: Path, in_tmp: Path, capsys: pytest.CaptureFixture
) -> None:
    (in_tmp / "labelled.csv").write_text("x1,x2,class,probability\n0,0,truth1,sure\n1,0,truth0,unsure\n")
    args = ["--config", config("circles"), "--ckpt_path", "best", *QUIET]
    assert run_cli("predict", *args, "--input", "labelled.csv", "--output", "out.csv") == 0
    assert "kept under other names: class as input_class, probability as input_probability" in capsys.readouterr().out
    header = (in_tmp / "out.csv").read_text().splitlines()[0]
    assert header == "x1,x2,input_class,input_probability,class,probability,p_0,p_1"
    rows = read_rows(in_tmp / "out.csv")
    assert [(row["input_class"], row["input_probability"]) for row in rows] == [
        ("truth1", "sure"),
        ("truth0", "unsure"),
    ]
    assert [row["class"] for row in rows] == ["1", "0"]  # the inner circle is class 1
    # Predicting that output again keeps every earlier column too.
    assert run_cli("predict", *args, "--input", "out.csv", "--output", "again.csv") == 0
    again = (in_tmp / "again.csv").read_text().splitlines()[0].split(",")
    earlier = [
        "input_class",
        "input_probability",
        "input_input_class",
        "input_input_probability",
        "input_p_0",
        "input_p_1",
    ]
    assert again == ["x1", "x2", *earlier, "class", "probability", "p_0", "p_1"], again


def test_predict_refuses_missing_columns_and_a_missing_checkpoint(
    trained_circles: Path, in_tmp: Path, capsys: pytest.CaptureFixture
) -> None:
    (in_tmp / "bad.csv").write_text("a,b\n1,2\n")
    args = ["--config", config("circles"), *QUIET]
    assert run_cli("predict", *args, "--ckpt_path", "last", "--input", "bad.csv") == 2
    assert "has no column(s) ['x1', 'x2']" in capsys.readouterr().err
    assert run_cli("predict", *args, "--input", "bad.csv") == 2
    assert "add --ckpt_path best, last or a checkpoint file" in capsys.readouterr().err
    assert run_cli("predict", *args, "--ckpt_path", "last") == 2
    assert "the following arguments are required: --input" in capsys.readouterr().err
    assert run_cli("predict", *args, "--ckpt_path", "last", "--input", "nowhere.csv") == 2
    assert "input file not found: nowhere.csv" in capsys.readouterr().err
    (in_tmp / "latin1.csv").write_bytes("name,x1,x2\ncafé,0.1,0.2\n".encode("latin-1"))  # a spreadsheet's export
    assert run_cli("predict", *args, "--ckpt_path", "last", "--input", "latin1.csv") == 2
    error = capsys.readouterr().err
    assert error.startswith("error: latin1.csv is not UTF-8 (byte 0xe9 on line 2") and error.count("\n") == 1, error
    (in_tmp / "big.csv").write_text("x1,x2\n0.1,0.2\n1e39,0.2\n")  # past float32: it would predict NaN
    assert run_cli("predict", *args, "--ckpt_path", "last", "--input", "big.csv") == 2
    assert (
        "big.csv, line 3: column 'x1' is '1e39', beyond the +-3.4e+38 of the model's float32" in capsys.readouterr().err
    )
    (in_tmp / "good.csv").write_text("x1,x2\n0.1,0.2\n")
    assert run_cli("predict", *args, "--ckpt_path", "last", "--input", "good.csv", "--skip_bad_images") == 2
    assert (
        "--skip_bad_images is for image inputs; this model predicts from the rows of a CSV" in capsys.readouterr().err
    )
    assert not (in_tmp / "predictions.csv").exists()


def test_regression_predictions_use_the_checkpoints_standardisation(in_tmp: Path) -> None:
    args = ["--config", config("regression"), "--trainer.max_epochs", "300", *QUIET]
    assert run_cli("fit", *args) == 0
    (in_tmp / "xs.csv").write_text("x\n0.5\n5\n12.5\n19\n")
    assert run_cli("predict", *args, "--ckpt_path", "last", "--input", "xs.csv") == 0
    rows = read_rows(in_tmp / "predictions.csv")
    assert [row["x"] for row in rows] == ["0.5", "5", "12.5", "19"]
    checkpoint = torch.load(in_tmp / "lightning_logs/regression/version_0/checkpoints/last.ckpt", weights_only=True)
    scaling = checkpoint["RegressionDataModule"]
    net = MLP(1, 1, hidden_sizes=[384, 384], activation="tanh")
    net.load_state_dict(net_weights(in_tmp / "lightning_logs/regression/version_0/checkpoints/last.ckpt"))
    x = torch.tensor([[0.5], [5.0], [12.5], [19.0]])
    with torch.no_grad():
        expected = net((x - scaling["feature_mean"]) / scaling["feature_std"]).flatten()
    assert [float(row["predicted_y"]) for row in rows] == pytest.approx(expected.tolist(), rel=1e-5)
    truth = x + 2 * torch.sin(x)
    assert (expected - truth.flatten()).abs().max() < 1.5  # a trained fit of y = x + 2 sin(x)


def test_cifar_predicts_a_folder_of_images_and_a_single_file(
    in_tmp: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    tree = image_tree(tmp_path / "tree", per_class=4)
    assert run_cli("fit", *tiny_cifar_run(tree, tmp_path), "--trainer.max_epochs", "1") == 0
    photos = in_tmp / "photos"
    (photos / "more").mkdir(parents=True)
    for index in range(3):
        write_png(torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8), str(photos / f"{index}.png"))
    write_png(torch.randint(0, 256, (3, 64, 48), dtype=torch.uint8), str(photos / "more" / "big.png"))  # resized
    args = [*tiny_cifar_run(tree, tmp_path), "--ckpt_path", "best"]
    assert run_cli("predict", *args, "--input", "photos") == 0
    rows = read_rows(in_tmp / "predictions.csv")
    assert [row["file"] for row in rows] == [f"photos/{name}" for name in ("0.png", "1.png", "2.png", "more/big.png")]
    for row in rows:
        probabilities = {
            name: float(row[f"p_{name}"])
            for name in ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
        }
        assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-4)
        assert row["class"] == max(probabilities, key=probabilities.get)
    assert run_cli("predict", *args, "--input", str(photos / "1.png"), "--output", "one.csv") == 0
    single = read_rows(in_tmp / "one.csv")
    assert len(single) == 1 and single[0]["probability"] == rows[1]["probability"]
    (photos / "1a.png").write_bytes(b"half a download")  # sorted between 1.png and 2.png
    assert run_cli("predict", *args, "--input", "photos", "--output", "skipped.csv") == 2
    assert not (in_tmp / "skipped.csv").exists()
    capsys.readouterr()
    assert run_cli("predict", *args, "--input", "photos", "--output", "skipped.csv", "--skip_bad_images") == 0
    out = capsys.readouterr().out
    assert "Skipped 1 image(s) that could not be read or decoded (--skip_bad_images): photos/1a.png (the first: " in out
    assert "(the first: cannot decode image photos/1a.png: not an image format PIL reads" in out, out
    assert read_rows(in_tmp / "skipped.csv") == rows  # the others, each with its own prediction


@pytest.mark.parametrize(
    ("inputs", "outputs"),
    [
        ({"x": ["1"]}, torch.tensor([[0.5]])),  # a regressor's
        ({"x1": ["1"], "x2": ["2"]}, torch.tensor([[0.2, 0.8]])),  # a classifier's
        ({"class": ["a"], "x": ["1"]}, torch.tensor([[0.2, 0.8]])),  # an input column named like a prediction
    ],
)
def test_predict_recognises_the_csv_it_wrote(tmp_path: Path, inputs: dict, outputs: torch.Tensor) -> None:
    names = ["0", "1"] if outputs.shape[1] == 2 else None
    write_prediction_csv(tmp_path / "p.csv", inputs, prediction_columns(outputs, names, "y"))
    assert written_by_predict(tmp_path / "p.csv")


@pytest.mark.parametrize(
    "content",
    [b"x1,x2,label\n0.1,0.2,1\n", b"x,y\n1,2\n", b"class,probability\na,0.5\n", b"PK\x03\x04\x00\xff\xfe", b""],
)
def test_predict_does_not_take_other_files_for_its_own(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "data.csv").write_bytes(content)
    assert not written_by_predict(tmp_path / "data.csv")


def test_a_missing_image_folder_or_a_csv_given_to_an_image_model_says_which_flag(
    in_tmp: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A forgotten --data.data_dir is named as the flag to give; a CSV given to an image model is called a table."""
    from tests.test_image_folder import food_run, food_tree

    args = food_run(food_tree(tmp_path / "food", per_class=4, splits=("train",)), tmp_path, "--trainer.max_epochs", "1")
    assert run_cli("fit", *args, "--data.data_dir", "nowhere") == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--data.data_dir nowhere does not exist" in error and "give your folder with --data.data_dir" in error
    assert run_cli("fit", *args) == 0
    (in_tmp / "rows.csv").write_text("a,b\n1,2\n")
    capsys.readouterr()
    assert run_cli("predict", *args, "--ckpt_path", "last", "--input", "rows.csv") == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--input rows.csv is a table, but this model classifies images" in error, error


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_predicted_values_keep_every_digit_of_their_precision(dtype: torch.dtype) -> None:
    """A price of 1,234,567.8 is written as such, not rounded to 1.23457e+06 (six digits)."""
    outputs = torch.tensor([[1234567.8], [8.929161], [-0.000123456789], [3e20]], dtype=dtype)
    written = prediction_columns(outputs, None, "price")["predicted_price"]
    assert written[0] == "1234567.8"
    assert torch.tensor([float(value) for value in written], dtype=dtype).equal(outputs.flatten())
