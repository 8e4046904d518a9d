"""Reading a numeric CSV table into tensors, with errors that name the fix.

Training reads features and a target (`read_csv_table`); prediction reads the features
and keeps every column as text to copy into the predictions (`read_feature_rows`).
"""

import csv
from pathlib import Path

import torch

from src.errors import UserInputError


def _read_rows(path: Path, if_missing: str) -> tuple[list[str], list[list[str]]]:
    """The header and the non-blank data rows of `path`, each row as wide as the header;
    `if_missing` is the error for a path that is not a file."""
    if not path.is_file():
        raise UserInputError(if_missing)
    with path.open(newline="") as handle:
        rows = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    if len(rows) < 2:
        raise UserInputError(f"{path} has no data rows: it needs a header line and at least one row")
    header = [name.strip() for name in rows[0]]
    for line_number, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise UserInputError(f"{path}, line {line_number}: {len(row)} fields, expected {len(header)}")
    return header, rows[1:]


def _numbers(path: Path, header: list[str], rows: list[list[str]], columns: list[str]) -> torch.Tensor:
    """The `columns` of `rows` as float32 (N x len(columns)), all finite."""
    missing = [name for name in columns if name not in header]
    if missing:
        raise UserInputError(f"{path} has no column(s) {missing}; its columns are {header}")
    wanted = [header.index(name) for name in columns]
    values = []
    for line_number, row in enumerate(rows, start=2):
        try:
            values.append([float(row[i]) for i in wanted])
        except ValueError:
            bad = next(i for i in wanted if not _is_number(row[i]))
            raise UserInputError(
                f"{path}, line {line_number}: column {header[bad]!r} is not a number ({row[bad]!r})"
            ) from None
    table = torch.tensor(values, dtype=torch.float32)
    if not torch.isfinite(table).all():
        raise UserInputError(f"{path} contains NaN or infinite values; clean or drop those rows")
    return table


def read_csv_table(
    path: Path, feature_columns: list[str] | None, target_column: str | None
) -> tuple[torch.Tensor, torch.Tensor, list[str], str]:
    """Load `path` as float32 features (N x F) and target (N x 1).

    With `feature_columns` None every column but the target is a feature; with
    `target_column` None the last column is the target. Returns the tensors and the
    column names used.
    """
    header, rows = _read_rows(path, f"CSV file not found: {path} (set data.csv_path to an existing file)")
    target = target_column or header[-1]
    features = feature_columns or [name for name in header if name != target]
    if not features:
        raise UserInputError(f"{path} has no feature columns besides the target {target!r}")
    table = _numbers(path, header, rows, [*features, target])
    return table[:, :-1], table[:, -1:], features, target


def read_feature_rows(path: Path, features: list[str]) -> tuple[torch.Tensor, dict[str, list[str]]]:
    """Load the `features` columns of `path` as float32 (N x F) for prediction.

    Also returns every column of the file as read (text), so the predictions can be written
    beside the user's own columns (ids, labels) in the same order.
    """
    header, rows = _read_rows(path, f"input file not found: {path} (give a CSV file with --input)")
    if any(name not in header for name in features):
        raise UserInputError(
            f"{path} has no column(s) {[n for n in features if n not in header]}; the model needs the columns "
            f"{features} (its columns are {header})"
        )
    inputs = _numbers(path, header, rows, features)
    columns = {name: [row[index].strip() for row in rows] for index, name in enumerate(header)}
    return inputs, columns


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
