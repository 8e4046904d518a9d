"""Reading a numeric CSV table into feature and target tensors, with errors that name the fix."""

import csv
from pathlib import Path

import torch

from src.errors import UserInputError


def read_csv_table(
    path: Path, feature_columns: list[str] | None, target_column: str | None
) -> tuple[torch.Tensor, torch.Tensor, list[str], str]:
    """Load `path` as float32 features (N x F) and target (N x 1).

    With `feature_columns` None every column but the target is a feature; with
    `target_column` None the last column is the target. Returns the tensors and the
    column names used.
    """
    if not path.is_file():
        raise UserInputError(f"CSV file not found: {path} (set data.csv_path to an existing file)")
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    if len(rows) < 2:
        raise UserInputError(f"{path} has no data rows: it needs a header line and at least one row")
    header = [name.strip() for name in rows[0]]
    target = target_column or header[-1]
    features = feature_columns or [name for name in header if name != target]
    missing = [name for name in [*features, target] if name not in header]
    if missing:
        raise UserInputError(f"{path} has no column(s) {missing}; its columns are {header}")
    if not features:
        raise UserInputError(f"{path} has no feature columns besides the target {target!r}")
    wanted = [header.index(name) for name in [*features, target]]
    values = []
    for line_number, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise UserInputError(f"{path}, line {line_number}: {len(row)} fields, expected {len(header)}")
        try:
            values.append([float(row[i]) for i in wanted])
        except ValueError:
            bad = next(header[i] for i in wanted if not _is_number(row[i]))
            raise UserInputError(
                f"{path}, line {line_number}: column {bad!r} is not a number ({row[header.index(bad)]!r})"
            ) from None
    table = torch.tensor(values, dtype=torch.float32)
    if not torch.isfinite(table).all():
        raise UserInputError(f"{path} contains NaN or infinite values; clean or drop those rows")
    return table[:, :-1], table[:, -1:], features, target


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_feature_rows(path: Path, features: list[str]) -> tuple[torch.Tensor, dict[str, list[str]]]:
    """Load the `features` columns of `path` as float32 (N x F) for prediction.

    Also returns every column of the file as read (text), so the predictions can be written
    beside the user's own columns (ids, labels) in the same order.
    """
    if not path.is_file():
        raise UserInputError(f"input file not found: {path} (give a CSV file with --input)")
    with path.open(newline="") as handle:
        rows = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    if len(rows) < 2:
        raise UserInputError(f"{path} has no data rows: it needs a header line and at least one row")
    header = [name.strip() for name in rows[0]]
    missing = [name for name in features if name not in header]
    if missing:
        raise UserInputError(
            f"{path} has no column(s) {missing}; the model needs the columns {features} (its columns are {header})"
        )
    wanted = [header.index(name) for name in features]
    values = []
    for line_number, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise UserInputError(f"{path}, line {line_number}: {len(row)} fields, expected {len(header)}")
        bad = [header[i] for i in wanted if not _is_number(row[i])]
        if bad:
            raise UserInputError(f"{path}, line {line_number}: column {bad[0]!r} is not a number")
        values.append([float(row[i]) for i in wanted])
    inputs = torch.tensor(values, dtype=torch.float32)
    if not torch.isfinite(inputs).all():
        raise UserInputError(f"{path} contains NaN or infinite values; clean or drop those rows")
    columns = {name: [row[index].strip() for row in rows[1:]] for index, name in enumerate(header)}
    return inputs, columns
