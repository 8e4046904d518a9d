"""The tutorial's own inputs: examples/ and what examples/make_examples.py writes."""

import csv
import sys
from pathlib import Path

from conftest import QUIET, ROOT, config, run_cli

sys.path.insert(0, str(ROOT))
from examples.make_examples import write_cancer_csv, write_digits, write_new_digits  # noqa: E402


def test_make_examples_writes_the_real_tables_and_images(tmp_path: Path) -> None:
    assert write_cancer_csv(tmp_path / "cancer.csv") == 569
    with (tmp_path / "cancer.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows[0]) == 32 and rows[0]["id"] == "p0"
    assert {row["diagnosis"] for row in rows} == {"malignant", "benign"}
    assert sum(row["diagnosis"] == "malignant" for row in rows) == 212  # the data set's own count
    assert write_digits(tmp_path / "digits") == {"train": 1437, "test": 360}
    assert len(list((tmp_path / "digits" / "test" / "seven").glob("*.png"))) == 36
    assert len(write_new_digits(tmp_path / "new")) == 6


def test_the_shipped_inputs_predict_with_a_trained_circles_model(in_tmp: Path) -> None:
    assert run_cli("fit", "--config", config("circles"), "--trainer.max_epochs", "30", *QUIET) == 0
    best = next((in_tmp / "lightning_logs/circles/version_0/checkpoints").glob("epoch=*.ckpt"))
    output = in_tmp / "points_predicted.csv"
    args = ["--config", config("circles"), "--ckpt_path", str(best), "--input", str(ROOT / "examples/points.csv")]
    assert run_cli("predict", *args, "--output", str(output)) == 0
    with output.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["id"] for row in rows] == ["a", "b", "c"]
    # The origin lies inside the inner ring (class 1); (1, 0) on the outer ring (class 0).
    assert [row["class"] for row in rows[:2]] == ["1", "0"]
