"""Predictions as a CSV table: the user's input rows, then what the model predicts for each."""

import csv
import io
from pathlib import Path

import numpy as np
import torch

from src.checkpointing.atomic_files import write_atomically


def shortest_decimal(value: np.floating) -> str:
    """The fewest digits that read back as exactly `value` in its own precision (float32 or float64),
    positional between 1e-4 and 1e16 as Python writes floats: `1234567.8`, not `1.23457e+06`."""
    if value == 0 or 1e-4 <= abs(value) < 1e16:
        return np.format_float_positional(value, unique=True, trim="-")
    return str(value)


def prediction_columns(outputs: torch.Tensor, class_names: list[str] | None, target_name: str) -> dict[str, list[str]]:
    """Columns for a classifier's probabilities (N x classes): the predicted `class`, its
    `probability` and one `p_<class>` column per class; for a regressor's outputs (N x 1):
    `predicted_<target>`, each value with every digit its precision holds (`shortest_decimal`)."""
    if class_names is None:
        values = outputs.detach().to(torch.float64 if outputs.dtype == torch.float64 else torch.float32).cpu()
        return {f"predicted_{target_name}": [shortest_decimal(value) for value in values.flatten().numpy()]}
    probabilities = outputs.float()
    best, chosen = probabilities.max(dim=1)
    columns = {
        "class": [class_names[index] for index in chosen.tolist()],
        "probability": [f"{value:.6f}" for value in best.tolist()],
    }
    for index, name in enumerate(class_names):
        columns[f"p_{name}"] = [f"{value:.6f}" for value in probabilities[:, index].tolist()]
    return columns


def is_prediction_header(header: list[str]) -> bool:
    """Whether a CSV header ends with the columns `prediction_columns` makes (predictions always
    come last): `predicted_<target>`, or `class`, `probability` and two or more `p_<class>`."""
    if header and header[-1].startswith("predicted_"):
        return True
    if "probability" not in header:
        return False
    position = len(header) - 1 - header[::-1].index("probability")
    per_class = header[position + 1 :]
    return (
        header[position - 1 : position] == ["class"]
        and len(per_class) >= 2
        and all(name.startswith("p_") for name in per_class)
    )


def input_column_names(inputs: list[str], predictions: list[str]) -> dict[str, str]:
    """The name each input column is written under: its own, or `input_<name>` for one named like a
    prediction column (a labelled file's own `class`, or an earlier predictions CSV predicted again),
    so no input value is lost and the predictions stay the last columns."""
    names: dict[str, str] = {}
    for name in inputs:
        written = name
        while written in predictions or written in names.values() or (written != name and written in inputs):
            written = f"input_{written}"
        names[name] = written
    return names


def write_prediction_csv(path: Path, inputs: dict[str, list[str]], predictions: dict[str, list[str]]) -> int:
    """Write input columns then prediction columns, one row per input; returns the row count.
    An input column named like a prediction column is written as `input_<name>` (`input_column_names`);
    the predictions stay the last columns, which `is_prediction_header` recognises."""
    names = input_column_names(list(inputs), list(predictions))
    columns = {**{names[name]: values for name, values in inputs.items()}, **predictions}
    rows = len(next(iter(predictions.values())))
    if any(len(values) != rows for values in columns.values()):
        raise ValueError("every column needs one value per input row")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(zip(*columns.values(), strict=True))
    path.parent.mkdir(parents=True, exist_ok=True)
    # a file name that is not UTF-8 (from another system's zip) is written with \x escapes: the CSV stays UTF-8
    raw = buffer.getvalue().encode("utf-8", "surrogateescape")  # such a name's own bytes
    write_atomically(path, raw.decode("utf-8", "backslashreplace").encode())
    return rows
