"""TabularDataModule on real scikit-learn tables written as CSV: classes, stratified splits,
missing values, one-line errors, and fit -> predict -> export through the real CLI."""

import csv
import json
from pathlib import Path

import pytest
import torch
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris

from src.datamodules import TabularDataModule
from src.datamodules.csv_table import read_feature_rows
from src.errors import UserInputError
from src.modules.nets import MLP
from tests.conftest import QUIET, config, run_cli
from tests.test_figures import images

CANCER_ARGS = ["--data.csv_path", "cancer.csv", "--data.target_column", "diagnosis", "--data.id_columns", "[id]"]


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def write_cancer(path: Path) -> Path:
    """Breast cancer (569 rows, 30 features) with an id column and text labels malignant/benign."""
    data = load_breast_cancer()
    header = ["id", *[name.replace(" ", "_") for name in data.feature_names], "diagnosis"]
    rows = [
        [f"p{i}", *[f"{v:.6g}" for v in x], data.target_names[t]]
        for i, (x, t) in enumerate(zip(data.data, data.target, strict=True))
    ]
    return write_csv(path, header, rows)


def write_iris(path: Path) -> Path:
    """Iris with numeric labels 0/1/2 (a classification only when asked)."""
    data = load_iris()
    rows = [[*x.tolist(), int(t)] for x, t in zip(data.data, data.target, strict=True)]
    return write_csv(path, ["sepal_length", "sepal_width", "petal_length", "petal_width", "species"], rows)


@pytest.fixture
def cancer(tmp_path: Path) -> Path:
    return write_cancer(tmp_path / "cancer.csv")


# --- the data module alone -----------------------------------------------------------------
def test_text_labels_make_a_classification_with_sorted_class_names(cancer: Path) -> None:
    dm = TabularDataModule(cancer, "diagnosis", id_columns=["id"])
    assert dm.task == "classification" and dm.class_names == ["benign", "malignant"] and dm.num_classes == 2
    assert dm.input_shape == (30,) and "id" not in dm.feature_names
    dm.setup("fit")
    x, y = dm.splits["train"]
    assert x.dtype == torch.float32 and y.dtype == torch.long
    assert x.mean(dim=0).abs().max() < 1e-4 and (x.std(dim=0) - 1).abs().max() < 1e-4  # fitted on train
    assert dm.splits["test"][0].mean(dim=0).abs().max() > 1e-3  # ... and only applied to test


def test_a_column_constant_on_the_training_split_is_only_centred(tmp_path: Path) -> None:
    # Like a digit's corner pixel: 0 in every row of the table, then 16 in a row to predict. Divided
    # by a clamped std of ~0, that value became ~1e9 and swamped every other feature.
    rows = [[i % 7, 0, "a" if i % 2 else "b"] for i in range(40)]
    path = write_csv(tmp_path / "t.csv", ["x", "pixel", "label"], rows)
    dm = TabularDataModule(path, "label", val_fraction=0.25, test_fraction=0.25)
    dm.setup("fit")
    assert dm.feature_std[1] == 1.0 and dm.feature_mean[1] == 0.0
    assert dm.transform(torch.tensor([[3.0, 16.0]]))[0, 1] == 16.0  # centred, not divided by ~0
    assert (dm.splits["train"][0].std(dim=0)[0] - 1).abs() < 1e-4  # the other column is still scaled


def test_numeric_labels_are_classes_when_asked_and_a_regression_otherwise(tmp_path: Path) -> None:
    path = write_iris(tmp_path / "iris.csv")
    classes = TabularDataModule(path, "species", task="classification")
    assert classes.class_names == ["0", "1", "2"] and classes.num_classes == 3
    regression = TabularDataModule(path, "species")  # auto: only numbers
    assert regression.task == "regression" and not hasattr(regression, "num_classes")
    assert regression.targets.shape == (150, 1) and regression.targets.dtype == torch.float32


def test_stratified_splits_keep_the_class_proportions_and_follow_the_seed(cancer: Path) -> None:
    dm = TabularDataModule(cancer, "diagnosis", id_columns=["id"], val_fraction=0.1, test_fraction=0.2)
    parts = dm.split()
    assert (len(parts.train), len(parts.val), len(parts.test)) == (398, 57, 114)  # as split_indices sizes them
    everything = torch.cat(list(parts))
    assert len(set(everything.tolist())) == 569  # disjoint and complete
    overall = dm.targets.float().mean().item()  # share of malignant: 212 / 569 = 0.3726
    for index in parts:
        share = dm.targets[index].float().mean().item()
        assert abs(share - overall) <= 1 / len(index), (share, overall)
    again = TabularDataModule(cancer, "diagnosis", id_columns=["id"]).split()
    other = TabularDataModule(cancer, "diagnosis", id_columns=["id"], seed=7).split()
    assert torch.equal(parts.test, again.test) and not torch.equal(parts.test, other.test)


def test_missing_values_are_refused_by_line_and_column_or_filled_with_the_training_mean(tmp_path: Path) -> None:
    rows = [[i, 2.0 * i if i % 5 else "", "a" if i % 2 else "b"] for i in range(40)]
    path = write_csv(tmp_path / "holes.csv", ["x1", "x2", "label"], rows)
    with pytest.raises(UserInputError) as error:
        TabularDataModule(path, "label").input_shape  # noqa: B018 - the table is read when first needed
    assert str(error.value).startswith(f"{path}, line 2: column 'x2' has no value")  # row 0 is line 2
    assert "--data.fill_missing mean" in str(error.value)
    dm = TabularDataModule(path, "label", fill_missing="mean", standardize=False)
    dm.setup("fit")
    raw = dm.inputs[dm.split().train]
    expected = raw[:, 1][~raw[:, 1].isnan()].mean()
    assert dm.fill_values[1] == pytest.approx(expected.item())
    assert not dm.splits["train"][0].isnan().any() and not dm.splits["test"][0].isnan().any()
    assert dm.state_dict()["fill_values"][1] == dm.fill_values[1]


def test_a_space_after_a_closing_quote_reads_as_before(tmp_path: Path) -> None:
    """The reader that catches an unclosed quote is strict; what only it refuses is read leniently."""
    path = tmp_path / "spaced.csv"
    path.write_text('a,b,y\n1,"2" ,u\n3,4,v\n')
    assert TabularDataModule(path, "y").inputs.tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_a_trained_models_splits_are_its_own_whatever_the_config_says(
    cancer: Path, capsys: pytest.CaptureFixture
) -> None:
    """Validated or tested with the training config at another seed, a trained model keeps the rows it was
    trained beside, and its data is set up once however often the state arrives."""
    trained = TabularDataModule(cancer, "diagnosis", id_columns=["id"])
    trained.setup("fit")
    later = TabularDataModule(cancer, "diagnosis", id_columns=["id"], seed=7)
    later.setup("validate")  # Lightning's order: set up, then the checkpoint's state
    later.load_state_dict(trained.state_dict())
    assert torch.equal(later.splits["val"][1], trained.splits["val"][1])
    assert torch.equal(later.splits["val"][0], trained.splits["val"][0])
    assert later.state_dict()["split"]["seed"] == 42  # and a checkpoint of the resumed run says so too
    other = write_cancer(cancer.parent / "other.csv")
    other.write_text(other.read_text().replace("p0,", "q0,"))  # other bytes: every row is tested
    alone = TabularDataModule(other, "diagnosis", id_columns=["id"])
    alone.load_state_dict(trained.state_dict())  # the checkpoint's state first (a checkpoint alone), then Lightning's
    alone.setup("test")
    alone.load_state_dict(trained.state_dict())
    assert capsys.readouterr().out.count("Testing on all 569 rows") == 1


def test_a_trained_model_fills_or_refuses_missing_cells_as_it_was_trained(tmp_path: Path) -> None:
    """Whatever a later config says: a model trained to refuse missing cells never sees them filled with 0,
    and one trained to fill them keeps its training means, in test and in the predictor's state."""
    rows = [[i, 3.0 * i + 1, "ab"[i % 2]] for i in range(40)]
    full = write_csv(tmp_path / "full.csv", ["x1", "x2", "label"], rows)
    holed = [[i, "" if i % 5 == 0 else x2, label] for i, x2, label in rows]
    holes = write_csv(tmp_path / "holes.csv", ["x1", "x2", "label"], holed)
    refusing = TabularDataModule(full, "label")
    refusing.setup("fit")
    later = TabularDataModule(holes, "label", fill_missing="mean")
    later.setup("test")  # Lightning's order: the data is set up before the checkpoint's state arrives
    with pytest.raises(UserInputError, match="the model was trained to refuse them"):
        later.load_state_dict(refusing.state_dict())
    filling = TabularDataModule(holes, "label", fill_missing="mean")
    filling.setup("fit")
    restored = TabularDataModule(holes, "label")  # fill_missing refuse, as the classification config says
    restored.load_state_dict(filling.state_dict())
    assert restored.fill_missing == "mean" and torch.equal(restored.state_dict()["fill_values"], filling.fill_values)
    restored.setup("test")
    assert not restored.splits["test"][0].isnan().any()


@pytest.mark.parametrize(
    ("content", "kwargs", "message"),
    [
        (None, {}, "CSV file not found"),
        ("a,b,y\n1,2,u\n3,4,u\n", {}, "holds one class only ('u')"),
        ("a,b,y\n1,2,u\n3,4,v\n", {"target_column": "price"}, "has no column(s) ['price'] (data.target_column)"),
        ("a,b,y\n1,red,u\n3,4,v\n", {}, "feature column(s) ['b'] hold text ('red' in 'b' on line 2)"),
        # Python's float() reads 2023_01 as 202301: a code, refused as the text it is
        ("a,b,y\n1,2023_01,u\n3,2023_02,v\n", {}, "feature column(s) ['b'] hold text ('2023_01' in 'b' on line 2)"),
        ("a,b,y\n1,2,u\n3,4,\n", {}, "line 3: the target column 'y' has no value"),
        ("a,b,y\n1,2,u\n3,inf,v\n", {}, "line 3: column 'b' is 'inf'"),
        ("a;b;y\n1;2;u\n3;4,5;v\n", {"feature_columns": ["b"]}, "('4,5'); numbers need a decimal point (1.5, not"),
        ("a,b,y\n1,2,3\n3,4,text\n", {"task": "regression"}, "which a regression cannot predict"),
        ("a;b;y\n1;2;1,5\n3;4;2,25\n", {}, "line 2: the target column 'y' is not a number ('1,5'); numbers need a"),
        ("a,b,y\n1,2,None\n3,4,v\n", {}, "('None' is read as missing); drop the row, or rename it in the file if"),
        ('a,b,y\n"1,234",2,u\n3,4,v\n', {}, "numbers need a decimal point (1.5, not 1,5) and no digit grouping"),
        ('a,b,y\n"1,234,567",2,u\n3,4,v\n', {}, "('1,234,567'); numbers must not group their digits"),
        (
            'a,b,y\n1,2,u\n3,"4,v\n5,6,u\n7,8,v\n',
            {},
            'data.csv, line 3: a quote (") opened there is never closed, so the row runs on to the end of the file',
        ),
        # in the last column, the rest of the file would be one field of the right row width
        ('a,b,y\n1,2,u\n3,4,"v\n5,6,u\n7,8,v\n', {}, 'data.csv, line 3: a quote (") opened there is never closed'),
        ("a,b,y\n1,2,u,\n3,4,v,\n", {}, "line 2: 4 fields, expected 3, the extra ones empty (a trailing ','?)"),
        ("a,b,y\n1,2,3\n3,4,#N/A\n", {}, "line 3: the target column 'y' has no value ('#N/A' is read as missing)"),
    ],
)
def test_bad_tables_are_refused_in_one_line(tmp_path: Path, content: str | None, kwargs: dict, message: str) -> None:
    path = tmp_path / "data.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UserInputError) as error:
        TabularDataModule(path, **{"target_column": "y", **kwargs}).input_shape  # noqa: B018 - read when first needed
    assert message in str(error.value) and "\n" not in str(error.value)


def test_unnamed_columns_are_no_features(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """pandas' to_csv writes its row index as a first column without a name: used as a feature, it would
    give away the order of rows sorted by class. A spreadsheet's empty trailing columns are no names twice."""
    rows = [[i, i % 7, (3 * i) % 5, "a" if i < 20 else "b"] for i in range(40)]  # sorted by class
    indexed = write_csv(tmp_path / "indexed.csv", ["", "x1", "x2", "label"], rows)
    dm = TabularDataModule(indexed, "label")
    assert dm.feature_names == ["x1", "x2"]
    assert "column(s) 1 have no name and are not used as features" in capsys.readouterr().out
    # the same file read by pandas and written back: the index is then called "Unnamed: 0"
    rewritten = write_csv(tmp_path / "rewritten.csv", ["Unnamed: 0", "x1", "x2", "label"], rows)
    assert TabularDataModule(rewritten, "label").feature_names == ["x1", "x2"]
    assert "column(s) 1 'Unnamed: 0' have no name" in capsys.readouterr().out
    (tmp_path / "excel.csv").write_text("x1;x2;label;;\n" + "".join(f"{r[1]};{r[2]};{r[3]};;\n" for r in rows))
    dm = TabularDataModule(tmp_path / "excel.csv", "label")
    assert dm.feature_names == ["x1", "x2"] and "no name" not in capsys.readouterr().out  # empty: nothing to say


def test_a_class_too_small_for_the_training_split_is_named(tmp_path: Path) -> None:
    rows = [[i, "common"] for i in range(30)] + [[99, "rare"]]
    path = write_csv(tmp_path / "rare.csv", ["x", "label"], rows)
    with pytest.raises(UserInputError, match="class 'rare' has only 1 row"):
        TabularDataModule(path, "label", val_fraction=0.5, test_fraction=0.45).split()


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_a_spreadsheets_csv_with_a_bom_and_another_delimiter_reads_as_a_plain_one(
    tmp_path: Path, delimiter: str
) -> None:
    # Excel's "CSV UTF-8" starts with a byte-order mark; European locales separate by ';'.
    rows = [[f"p{i}", i % 7, (3 * i) % 5, "a" if i % 2 else "b"] for i in range(40)]
    plain = write_csv(tmp_path / "plain.csv", ["id", "x1", "x2", "label"], rows)
    lines = [delimiter.join(map(str, row)) for row in [["id", "x1", "x2", "label"], *rows]]
    excel = tmp_path / "excel.csv"
    excel.write_text("\n".join(lines) + "\n", encoding="utf-8-sig")
    dm = TabularDataModule(excel, "label", id_columns=["id"])  # the id column is 'id', not '\ufeffid'
    assert dm.feature_names == ["x1", "x2"] and torch.equal(
        dm.inputs, TabularDataModule(plain, "label", id_columns=["id"]).inputs
    )
    features = tmp_path / "features.csv"  # a feature named first keeps its name
    features.write_text("\n".join(line.split(delimiter, 1)[1] for line in lines) + "\n", encoding="utf-8-sig")
    assert TabularDataModule(features, "label").feature_names == ["x1", "x2"]
    inputs, columns = read_feature_rows(excel, ["x1", "x2"])  # predict --input reads it the same way
    assert list(columns) == ["id", "x1", "x2", "label"] and columns["id"][:2] == ["p0", "p1"]
    assert torch.equal(inputs, dm.inputs)
    # Excel's "sep=;" first line names the separator and is no header; lines are still counted from it
    named = tmp_path / "named.csv"
    named.write_text(f"sep={delimiter}\n" + "\n".join(lines) + "\n", encoding="utf-8-sig")
    assert torch.equal(TabularDataModule(named, "label", id_columns=["id"]).inputs, dm.inputs)
    named.write_text(
        named.read_text(encoding="utf-8-sig").replace(f"p1{delimiter}1{delimiter}", f"p1{delimiter}x{delimiter}")
    )
    with pytest.raises(UserInputError, match="on line 4"):  # sep=, the header, p0, then p1
        TabularDataModule(named, "label", id_columns=["id"]).input_shape  # noqa: B018 - read when first needed


def test_a_comma_csv_with_semicolons_in_its_cells_stays_a_comma_csv(tmp_path: Path) -> None:
    rows = [[f"box;{i}", i % 7, "a" if i % 2 else "b"] for i in range(40)]
    path = write_csv(tmp_path / "t.csv", ["name", "x", "label"], rows)
    assert TabularDataModule(path, "label", id_columns=["name"]).feature_names == ["x"]


def test_a_predict_input_in_latin1_is_refused_with_the_conversion(tmp_path: Path) -> None:
    path = tmp_path / "new.csv"
    path.write_bytes("name,x1,x2\ncafé,1,2\n".encode("latin-1"))
    with pytest.raises(UserInputError) as error:
        read_feature_rows(path, ["x1", "x2"])
    assert f"iconv -f latin1 -t utf-8 {path} > {tmp_path / 'new-utf8.csv'}" in str(error.value)


# --- through the CLI: each user mistake is one line and exit status 2 -------------------------
IDS = ["--data.id_columns", "[id]"]
BAD_INPUTS = [
    (["--data.csv_path", "nowhere.csv", "--data.target_column", "diagnosis"], "CSV file not found: nowhere.csv"),
    (["--data.csv_path", "cancer.csv", "--data.target_column", "label"], "has no column(s) ['label']"),
    (["--data.csv_path", "one_class.csv", "--data.target_column", "diagnosis", *IDS], "holds one class only"),
    (["--data.csv_path", "cancer.csv", "--data.target_column", "diagnosis"], "--data.id_columns '[id]'"),
    (["--data.csv_path", "holes.csv", "--data.target_column", "diagnosis", *IDS], "line 3: column 'mean_radius' has"),
    (["--data.csv_path", "cancer.csv"], "target_column"),
]


@pytest.mark.parametrize(("extra", "message"), BAD_INPUTS, ids=[message for _, message in BAD_INPUTS])
def test_each_bad_input_gives_one_line_and_exit_2(
    in_tmp: Path, capsys: pytest.CaptureFixture, extra: list[str], message: str
) -> None:
    lines = write_cancer(in_tmp / "cancer.csv").read_text().splitlines()
    (in_tmp / "one_class.csv").write_text("\n".join([lines[0], *[line for line in lines if "benign" in line]]))
    holed = lines[2].split(",")
    holed[1] = ""  # mean_radius of the second data row, line 3 of the file
    (in_tmp / "holes.csv").write_text("\n".join([*lines[:2], ",".join(holed), *lines[3:]]) + "\n")
    assert (
        run_cli("fit", "--config", config("tabular_classification"), "--trainer.max_epochs", "1", *QUIET, *extra) == 2
    )
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert "Traceback" not in "\n".join(err)
    assert err[-1].startswith("error: ") and message in err[-1], err[-1]


def test_the_wrong_config_for_the_target_says_which_to_use(in_tmp: Path, capsys: pytest.CaptureFixture) -> None:
    write_cancer(in_tmp / "cancer.csv")
    assert run_cli("fit", "--config", config("tabular_regression"), *CANCER_ARGS, *QUIET) == 2
    assert "configs/tabular_classification.yaml" in capsys.readouterr().err.strip().splitlines()[-1]
    write_iris(in_tmp / "iris.csv")
    iris = ["--data.csv_path", "iris.csv", "--data.target_column", "species", "--data.task", "auto"]
    assert run_cli("fit", "--config", config("tabular_classification"), *iris, *QUIET) == 2
    assert "configs/tabular_regression.yaml" in capsys.readouterr().err.strip().splitlines()[-1]
    # The classification config says task: classification; a measured quantity is still refused.
    load_diabetes(as_frame=True).frame.to_csv(in_tmp / "diabetes.csv", index=False)
    diabetes = ["--data.csv_path", "diabetes.csv", "--data.target_column", "target"]
    assert run_cli("fit", "--config", config("tabular_classification"), *diabetes, *QUIET) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "holds 214 different numbers in 442 rows" in line and "configs/tabular_regression.yaml" in line, line


def test_numeric_labels_that_differ_past_six_digits_are_classes_of_their_own(tmp_path: Path) -> None:
    """0.1 and 0.10000001 were both named '0.1': one output never trained, a confusing matrix."""
    rows = [[row, (3 * row) % 7, (0.1, 0.10000001, 0.25)[row % 3]] for row in range(60)]
    path = write_csv(tmp_path / "close.csv", ["x1", "x2", "label"], rows)
    dm = TabularDataModule(path, "label", task="classification")
    assert dm.class_names == ["0.1", "0.10000001", "0.25"]
    assert torch.bincount(dm.targets).tolist() == [20, 20, 20]


def test_many_classes_written_as_numbers_are_classes_when_asked_for(tmp_path: Path) -> None:
    """20 classes coded 0 to 19, 4 rows each: under 5 rows a number, yet class codes, not a quantity
    (which the diabetes target, 214 scattered numbers, is)."""
    rows = [[row, (7 * row) % 13, row % 20] for row in range(80)]
    path = write_csv(tmp_path / "codes.csv", ["x1", "x2", "label"], rows)
    dm = TabularDataModule(path, "label", task="classification", val_fraction=0.25, test_fraction=0.25)
    assert dm.class_names == [str(code) for code in range(20)] and dm.num_classes == 20
    shifted = write_csv(tmp_path / "shifted.csv", ["x1", "x2", "label"], [[a, b, c + 5] for a, b, c in rows])
    with pytest.raises(UserInputError, match="holds 20 different numbers in 80 rows"):
        assert TabularDataModule(shifted, "label", task="classification").class_names  # 5 to 24: no count of classes


# --- fit, predict and export: one trained model, checked three ways ---------------------------
def test_breast_cancer_trains_predicts_with_stored_class_names_and_exports(in_tmp: Path) -> None:
    write_cancer(in_tmp / "cancer.csv")
    fit_args = ["--config", config("tabular_classification"), *CANCER_ARGS, *QUIET]
    assert run_cli("fit", *fit_args, "--trainer.max_epochs", "60", "--model.optimizer.init_args.lr", "0.01") == 0
    run = in_tmp / "lightning_logs" / "tabular_classification" / "version_0"
    (best,) = (run / "checkpoints").glob("epoch=*.ckpt")
    state = torch.load(best, weights_only=True)["TabularDataModule"]
    assert state["class_names"] == ["benign", "malignant"] and len(state["feature_names"]) == 30
    # the confusion matrix every 100 epochs (the config's), and after the last validation of a shorter run too
    (matrix,) = images(run)["val/confusion_matrix"]
    assert matrix[0] == torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert matrix[1].std() > 0

    # The held-out test rows, without their labels, as a user's new file.
    dm = TabularDataModule(in_tmp / "cancer.csv", "diagnosis", id_columns=["id"])
    test_rows = set(dm.split().test.tolist())
    lines = (in_tmp / "cancer.csv").read_text().splitlines()
    header, body = lines[0].split(","), [line.split(",") for line in lines[1:]]
    truth = {row[0]: row[-1] for index, row in enumerate(body) if index in test_rows}
    write_csv(in_tmp / "new.csv", header[:-1], [row[:-1] for index, row in enumerate(body) if index in test_rows])

    # The checkpoint's class names win: rename the training file's labels before predicting from the
    # checkpoint alone (with the config, a file of other classes is refused: check_checkpoint_fits).
    renamed = [",".join(header)] + [line.replace("malignant", "M").replace("benign", "B") for line in lines[1:]]
    (in_tmp / "cancer.csv").write_text("\n".join(renamed) + "\n")
    assert run_cli("predict", "--ckpt_path", str(best), "--input", "new.csv", *QUIET) == 0
    rows = read_rows(in_tmp / "predictions.csv")
    assert list(rows[0]) == ["id", "class", "probability", "p_benign", "p_malignant"]  # ids copied, names kept
    assert [row["id"] for row in rows] == list(truth)
    accuracy = sum(row["class"] == truth[row["id"]] for row in rows) / len(rows)
    assert len(rows) == 114 and accuracy >= 0.93, accuracy  # the majority class alone scores 0.63

    # Export: model.json's standardisation + the bare net reproduce predict's probabilities.
    assert (
        run_cli(
            "export",
            "--ckpt_path",
            str(best),
            "--output_dir",
            "shipped",
            "--formats",
            "[state_dict, torchscript]",
        )
        == 0
    )
    record = json.loads((in_tmp / "shipped" / "model.json").read_text())
    assert record["classes"] == ["benign", "malignant"]
    mean = torch.tensor(record["input"]["standardization"]["mean"])
    std = torch.tensor(record["input"]["standardization"]["std"])
    assert torch.allclose(mean, state["feature_mean"]) and torch.allclose(std, state["feature_std"])
    raw = torch.tensor([[float(v) for v in row[1:-1]] for i, row in enumerate(body) if i in test_rows])
    net = MLP(*record["net"]["args"], **record["net"]["init_args"]).eval()
    net.load_state_dict(torch.load(in_tmp / "shipped" / "net_state_dict.pt", weights_only=True))
    with torch.no_grad():
        p_bare = torch.sigmoid(net((raw - mean) / std)).flatten()
        p_script = torch.sigmoid(torch.jit.load(str(in_tmp / "shipped" / "model.torchscript.pt"))(raw)).flatten()
    p_predict = torch.tensor([float(row["p_malignant"]) for row in rows])
    assert torch.allclose(p_bare, p_predict, atol=1e-5) and torch.allclose(p_script, p_predict, atol=1e-5)


def test_csv_regression_predicts_its_target_with_ids_and_fills_missing_inputs(in_tmp: Path) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(200, 2, generator=generator) * 10
    rows = [[f"h{i}", a, b, 3 * a - 2 * b + 1] for i, (a, b) in enumerate(x.tolist())]
    write_csv(in_tmp / "houses.csv", ["house", "rooms", "age", "price"], rows)
    args = ["--config", config("tabular_regression"), "--data.csv_path", "houses.csv", "--data.target_column", "price"]
    args += ["--data.id_columns", "[house]", "--data.fill_missing", "mean", *QUIET]
    assert run_cli("fit", *args, "--trainer.max_epochs", "150", "--trainer.check_val_every_n_epoch", "50") == 0
    (in_tmp / "new.csv").write_text("house,rooms,age\nA,1,1\nB,5,2\nC,,5\n")
    assert run_cli("predict", *args, "--ckpt_path", "best", "--input", "new.csv") == 0
    rows = read_rows(in_tmp / "predictions.csv")
    assert [list(row) for row in rows] == [["house", "predicted_price"]] * 3
    assert float(rows[0]["predicted_price"]) == pytest.approx(2.0, abs=1.0)  # 3 - 2 + 1
    assert float(rows[1]["predicted_price"]) == pytest.approx(12.0, abs=1.0)  # 15 - 4 + 1
    assert rows[2]["house"] == "C"  # the missing rooms took the training mean (about 5)
    assert float(rows[2]["predicted_price"]) == pytest.approx(6.0, abs=2.0)


def test_a_target_in_the_millions_trains_as_one_near_1_and_ships_in_its_units(in_tmp: Path) -> None:
    """The regression config learns the standardised target: diabetes progression x 10,000 (values from
    250,000 to 3,460,000) reaches the test R2 of the plain table (about 0.47 on this split; -0.56 when
    the net learnt the target in its own units), and predict, the Python predictor and every export
    give predictions in the target's units."""
    from src.tools.predictor import load_predictor
    from tests.test_cli import scalars

    data = load_diabetes()
    rows = [[*(f"{v:.6g}" for v in x), float(y) * 10_000] for x, y in zip(data.data, data.target, strict=True)]
    write_csv(in_tmp / "progress.csv", [*data.feature_names, "progress"], rows)
    args = ["--config", config("tabular_regression"), "--data.csv_path", "progress.csv"]
    args += ["--data.target_column", "progress", *QUIET]
    assert run_cli("fit", *args) == 0
    run = in_tmp / "lightning_logs" / "tabular_regression" / "version_0"
    assert scalars(run)["test/r2"][-1][1] >= 0.4
    (in_tmp / "new.csv").write_text("\n".join([",".join(data.feature_names), *(",".join(r[:-1]) for r in rows[:20])]))
    assert run_cli("predict", *args, "--ckpt_path", "best", "--input", "new.csv") == 0
    predicted = torch.tensor([float(row["predicted_progress"]) for row in read_rows(in_tmp / "predictions.csv")])
    truth = torch.tensor([row[-1] for row in rows[:20]])
    assert 0.2 * truth.mean() < predicted.mean() < 5 * truth.mean() and predicted.std() > 0.05 * truth.std()
    predictor = load_predictor(next((run / "checkpoints").glob("epoch=*.ckpt")))
    from_python = torch.tensor([float(v) for v in predictor.predict_file(in_tmp / "new.csv")[1]["predicted_progress"]])
    assert torch.allclose(from_python, predicted, rtol=1e-5)
    assert run_cli("export", *args, "--ckpt_path", "best", "--output_dir", "shipped") == 0
    record = json.loads((in_tmp / "shipped" / "model.json").read_text())
    scale = record["target_standardization"]
    assert scale["mean"] == pytest.approx(1.5e6, rel=0.1) and scale["std"] == pytest.approx(7.7e5, rel=0.15)
    raw, _ = read_feature_rows(in_tmp / "new.csv", list(data.feature_names))
    mean, std = (torch.tensor(record["input"]["standardization"][key]) for key in ("mean", "std"))
    net = MLP(len(data.feature_names), 1, **record["net"]["init_args"])
    net.load_state_dict(torch.load(in_tmp / "shipped" / "net_state_dict.pt", weights_only=True))
    with torch.no_grad():
        bare = (net((raw - mean) / std) * scale["std"] + scale["mean"]).flatten()
        scripted = torch.jit.load(str(in_tmp / "shipped" / "model.torchscript.pt"))(raw).flatten()
    assert torch.allclose(bare, predicted, rtol=1e-4) and torch.allclose(scripted, predicted, rtol=1e-4)
