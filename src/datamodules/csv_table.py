"""Reading CSV files into tensors, with errors that name the file, the line and the fix.

`read_rows` reads a file once as text (header, rows and their line numbers in the file);
`numeric_columns` turns some of its columns into float32, refusing or marking missing
cells; `read_feature_rows` does both for prediction and keeps every column as text, to
copy into the predictions. Every data module that reads a CSV goes through these.
"""

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from src.errors import UserInputError

# Cells that mean "no value" (compared lower-cased, after stripping spaces).
MISSING_MARKERS = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})


@dataclass(frozen=True)
class CsvRows:
    """A CSV file as text: the header, the non-blank data rows (each as wide as the header)
    and each row's line number in the file (the header is line 1)."""

    path: Path
    header: list[str]
    rows: list[list[str]]
    lines: list[int]

    def column(self, name: str) -> list[str]:
        """One column's cells, stripped of surrounding spaces."""
        index = self.header.index(name)
        return [row[index].strip() for row in self.rows]

    def require(self, names: list[str], role: str) -> None:
        """Refuse names that are not columns of the file; `role` says what they were asked for."""
        absent = [name for name in names if name not in self.header]
        if absent:
            raise UserInputError(f"{self.path} has no column(s) {absent} ({role}); its columns are {self.header}")


def is_missing(cell: str) -> bool:
    return cell.strip().lower() in MISSING_MARKERS


def read_rows(path: Path, if_missing: str) -> CsvRows:
    """The header and the non-blank data rows of `path`; `if_missing` is the error for a
    path that is not a file."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(if_missing)
    rows, lines = [], []
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        for row in reader:
            if any(cell.strip() for cell in row):
                rows.append(row)
                lines.append(reader.line_num)
    if len(rows) < 2:
        raise UserInputError(f"{path} has no data rows: it needs a header line and at least one row")
    header = [name.strip() for name in rows[0]]
    for line_number, row in zip(lines[1:], rows[1:], strict=True):
        if len(row) != len(header):
            raise UserInputError(f"{path}, line {line_number}: {len(row)} fields, expected {len(header)}")
    return CsvRows(path, header, rows[1:], lines[1:])


def numeric_columns(
    table: CsvRows, columns: list[str], allow_missing: bool = False, missing_hint: str = "fill it in or drop the row"
) -> torch.Tensor:
    """The `columns` of `table` as float32 (N x len(columns)), finite; a missing cell (see
    MISSING_MARKERS) is NaN with `allow_missing`, else refused with its line and column."""
    table.require(columns, "asked for as numbers")
    wanted = [table.header.index(name) for name in columns]
    values = []
    for line_number, row in zip(table.lines, table.rows, strict=True):
        numbers = []
        for index in wanted:
            cell = row[index].strip()
            if is_missing(cell):
                if not allow_missing:
                    raise UserInputError(
                        f"{table.path}, line {line_number}: column {table.header[index]!r} has no value "
                        f"({cell!r}); {missing_hint}"
                    )
                numbers.append(math.nan)
                continue
            try:
                number = float(cell)
            except ValueError:
                raise UserInputError(
                    f"{table.path}, line {line_number}: column {table.header[index]!r} is not a number ({cell!r})"
                ) from None
            if not math.isfinite(number):
                raise UserInputError(
                    f"{table.path}, line {line_number}: column {table.header[index]!r} is {cell!r}; use finite numbers"
                )
            numbers.append(number)
        values.append(numbers)
    return torch.tensor(values, dtype=torch.float32).reshape(len(values), len(wanted))


def read_feature_rows(
    path: Path, features: list[str], fill: torch.Tensor | None = None
) -> tuple[torch.Tensor, dict[str, list[str]]]:
    """Load the `features` columns of `path` as float32 (N x F) for prediction.

    Missing cells are refused, or replaced by `fill` (one value per feature) when given.
    Also returns every column of the file as read (text), so the predictions can be written
    beside the user's own columns (ids, labels) in the same order.
    """
    table = read_rows(path, f"input file not found: {path} (give a CSV file with --input)")
    if any(name not in table.header for name in features):
        raise UserInputError(
            f"{path} has no column(s) {[n for n in features if n not in table.header]}; the model needs the columns "
            f"{features} (its columns are {table.header})"
        )
    inputs = numeric_columns(table, features, allow_missing=fill is not None)
    if fill is not None:
        inputs = torch.where(torch.isnan(inputs), fill.to(inputs.dtype).expand_as(inputs), inputs)
    columns = {name: table.column(name) for name in table.header}
    return inputs, columns
