"""Reading CSV files into tensors, with errors that name the file, the line and the fix.

`read_rows` reads a file once as text (header, rows and their line numbers in the file);
`numeric_columns` turns some of its columns into float32, refusing or marking missing
cells; `read_feature_rows` does both for prediction and keeps every column as text, to
copy into the predictions. Every data module that reads a CSV goes through these.

A file is read as UTF-8 (a byte-order mark, as Excel writes, is dropped) and its delimiter
is detected among `,` `;` tab and `|`; files in another encoding, workbooks and unclosed
quotes are refused in one line that says how to convert or mend the file.
"""

import csv
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from src.errors import UserInputError

FLOAT32_MAX = float(torch.finfo(torch.float32).max)  # about 3.4e38: a larger value becomes inf in the model
# Training squares values in float32 (a column's variance for its standardisation, a regression's error),
# which overflows beyond about 1.8e19.
TRAINABLE_MAX = math.sqrt(FLOAT32_MAX)
# A spreadsheet's formula errors as it saves them in a CSV (#N/A for a lookup that found nothing): no value.
EXCEL_ERRORS = frozenset({"#n/a", "#na", "#div/0!", "#value!", "#ref!", "#num!", "#null!", "#name?"})
# Cells that mean "no value" (compared lower-cased, after stripping spaces).
MISSING_MARKERS = frozenset({"", "na", "n/a", "nan", "null", "none", "?"}) | EXCEL_ERRORS
# A number written with thousands separators: 1,234 or -12,345,678.5.
DIGIT_GROUPS = re.compile(r"[+-]?\d{1,3}(,\d{3})+(\.\d+)?$")
EXCEL_SEPARATOR_LINE = re.compile(r"sep=(.)\r?\n")  # a first line Excel reads as "columns are separated by"
DELIMITERS = ",;\t|"  # what a spreadsheet's "save as" writes; a comma unless the file says otherwise
SNIFF_CHARACTERS = 16_384  # how much of the file the delimiter is guessed from
SAVE_AS_CSV = "or save it from the spreadsheet as 'CSV UTF-8 (comma delimited)'"
# The first bytes of files that are not text: what they are, and how to get a CSV from them.
WORKBOOK_MAGIC = {
    b"PK\x03\x04": "a spreadsheet workbook (.xlsx) or another zip file",
    b"\xd0\xcf\x11\xe0": "an Excel 97-2003 workbook (.xls)",
}


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


PANDAS_UNNAMED = re.compile(r"Unnamed: \d+(_level_\d+)?")  # what pandas calls a header cell left empty


def unnamed(name: str) -> bool:
    """A header cell with no name: empty, or pandas' `Unnamed: 0` (a row index read and written back)."""
    return not name.strip() or PANDAS_UNNAMED.fullmatch(name.strip()) is not None


def parse_number(cell: str) -> float:
    """A cell as a number, as a CSV writes one; ValueError for anything else, Python's own digit
    grouping (`2023_01`, a code, which float() reads as 202301) included."""
    if "_" in cell:
        raise ValueError(f"not a number: {cell!r}")
    return float(cell)


def is_missing(cell: str) -> bool:
    return cell.strip().lower() in MISSING_MARKERS


def read_rows(path: Path, if_missing: str) -> CsvRows:
    """The header and the non-blank data rows of `path`; `if_missing` is the error for a
    path that is not a file."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(if_missing)
    text = read_text(path)
    excel_line = EXCEL_SEPARATOR_LINE.match(text)  # `sep=;`: Excel's line naming the separator, no header
    delimiter = excel_line.group(1) if excel_line else detect_delimiter(text)
    try:  # strict: a quote left open at the end of the file is an error, not a field swallowing the rest
        rows, lines, starts = _parse(text, delimiter, path, strict=True)
    except csv.Error:  # strict refuses more (a space after a closing quote): what it refused, read leniently
        rows, lines, starts = _parse(text, delimiter, path, strict=False)
    if excel_line:
        rows, lines, starts = rows[1:], lines[1:], starts[1:]
    if len(rows) < 2:
        raise UserInputError(f"{path} has no data rows: it needs a header line and at least one row")
    header = [name.strip() for name in rows[0]]
    repeated = sorted({name for name in header if name and header.count(name) > 1})  # unnamed ones are never read
    if repeated:
        raise UserInputError(
            f"{path} has the column name(s) {repeated} more than once: rename them so that each column has its own name"
        )
    for first, line_number, row in zip(starts[1:], lines[1:], rows[1:], strict=True):
        if len(row) != len(header) and first != line_number:
            raise UserInputError(
                f'{path}, line {first}: a quote (") opened there is not closed, so the row runs on to line '
                f"{line_number}: close or remove that quote"
            )
        if len(row) > len(header) and not any(cell.strip() for cell in row[len(header) :]):
            raise UserInputError(
                f"{path}, line {line_number}: {len(row)} fields, expected {len(header)}, the extra ones empty (a "
                f"trailing {delimiter!r}?): remove the trailing {delimiter!r}s or name those columns in the header"
            )
        if len(row) != len(header):
            raise UserInputError(f"{path}, line {line_number}: {len(row)} fields, expected {len(header)}")
    return CsvRows(path, header, rows[1:], lines[1:])


def _parse(text: str, delimiter: str, path: Path, strict: bool) -> tuple[list[list[str]], list[int], list[int]]:
    """The non-blank rows of `text`, each row's last line and its first (a quoted field can span lines).
    A quote still open at the end of the file is refused in one line; another csv.Error of the strict
    reader is raised as it is, for a lenient second reading."""
    rows, lines, starts = [], [], []
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=strict)
    while True:
        first_line = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            if strict and "unexpected end of data" not in str(error):
                raise
            raise _unreadable_row(path, first_line, error) from None
        if any(cell.strip() for cell in row):
            rows.append(row)
            lines.append(reader.line_num)
            starts.append(first_line)
    return rows, lines, starts


def read_text(path: Path) -> str:
    """The file as UTF-8 text (a leading byte-order mark dropped); a workbook, UTF-16 text,
    another encoding or an unreadable file is refused in one line saying how to convert it."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UserInputError(
            f"cannot read {path}: {error.strerror}; give this user read access (chmod a+r {path}) or copy the file "
            "somewhere readable"
        ) from None
    converted = path.with_name(f"{path.stem}-utf8.csv")
    for magic, kind in WORKBOOK_MAGIC.items():
        if data.startswith(magic):
            raise UserInputError(
                f"{path} is {kind}, not a CSV file: open it in the spreadsheet and save it as "
                "'CSV UTF-8 (comma delimited)'"
            )
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise UserInputError(
            f"{path} is UTF-16 text, not UTF-8: convert it with iconv -f utf-16 -t utf-8 {path} > {converted}, "
            f"{SAVE_AS_CSV}"
        )
    if b"\x00" in data[:SNIFF_CHARACTERS]:
        raise UserInputError(
            f"{path} holds NUL bytes, so it is not UTF-8 text: UTF-16 text (convert it with iconv -f utf-16le -t "
            f"utf-8 {path} > {converted}) or not a CSV file at all"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise UserInputError(
            f"{path} is not UTF-8 (byte {data[error.start]:#04x} on line {line}; Latin-1 or Windows-1252, perhaps): "
            f"convert it, e.g. iconv -f latin1 -t utf-8 {path} > {converted}, {SAVE_AS_CSV}"
        ) from None


def detect_delimiter(text: str) -> str:
    """`,` `;` tab or `|`, as csv.Sniffer reads the start of `text`; a comma when it cannot
    tell or when its guess leaves the header a single column."""
    sample = text[:SNIFF_CHARACTERS]
    if len(text) > SNIFF_CHARACTERS and "\n" in sample:
        sample = sample[: sample.rindex("\n")]  # whole lines only
    try:
        delimiter = csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        return ","
    header = next(csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter), [])
    return delimiter if len(header) > 1 else ","


def _unreadable_row(path: Path, line: int, error: csv.Error) -> UserInputError:
    """A row the csv module cannot read: most often a quote opened and never closed, which
    swallows the rest of the file into one field."""
    if "field larger than field limit" in str(error):
        return UserInputError(
            f'{path}, line {line}: a field runs past {csv.field_size_limit()} characters, most likely a quote (") '
            "opened there and never closed; close it or remove it"
        )
    if "unexpected end of data" in str(error):
        return UserInputError(
            f'{path}, line {line}: a quote (") opened there is never closed, so the row runs on to the end of the '
            "file: close or remove that quote"
        )
    return UserInputError(f"{path}, line {line}: not readable as CSV ({error}); mend the row or remove it")


def numeric_columns(
    table: CsvRows,
    columns: list[str],
    allow_missing: bool = False,
    missing_hint: str = "fill it in or drop the row",
    largest: float = FLOAT32_MAX,
) -> torch.Tensor:
    """The `columns` of `table` as float32 (N x len(columns)), finite and within +-`largest` (FLOAT32_MAX
    to predict, TRAINABLE_MAX to train); a missing cell (see MISSING_MARKERS) is NaN with
    `allow_missing`, else refused with its line and column."""
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
                number = parse_number(cell)
            except ValueError:
                raise UserInputError(
                    f"{table.path}, line {line_number}: column {table.header[index]!r} is not a number ({cell!r})"
                    f"{decimal_comma_hint(cell)}"
                ) from None
            if not math.isfinite(number):
                raise UserInputError(
                    f"{table.path}, line {line_number}: column {table.header[index]!r} is {cell!r}; use finite numbers"
                )
            if abs(number) > largest:
                reason = "the model's float32" if largest == FLOAT32_MAX else "float32 training (its square overflows)"
                raise UserInputError(
                    f"{table.path}, line {line_number}: column {table.header[index]!r} is {cell!r}, beyond the "
                    f"+-{largest:.1e} of {reason}; rescale the column (other units, or its logarithm)"
                )
            numbers.append(number)
        values.append(numbers)
    return torch.tensor(values, dtype=torch.float32).reshape(len(values), len(wanted))


def decimal_comma_hint(cell: str) -> str:
    """For '1,5': numbers are read with a decimal point, as a ';'-separated export may not write them;
    for '1,234,567' or '1,234.5': digit grouping, which a spreadsheet's export may add."""
    if DIGIT_GROUPS.match(cell.strip()) and (cell.count(",") > 1 or "." in cell):
        return "; numbers must not group their digits (1234567, not 1,234,567): export the file without separators"
    if "," not in cell:
        return ""
    try:
        parse_number(cell.replace(",", "."))
    except ValueError:
        return ""
    grouped = " and no digit grouping (1234, not 1,234)" if DIGIT_GROUPS.match(cell.strip()) else ""
    return f"; numbers need a decimal point (1.5, not 1,5){grouped}: export the file with '.' as the decimal separator"


def read_feature_rows(
    path: Path, features: list[str], fill: torch.Tensor | None = None
) -> tuple[torch.Tensor, dict[str, list[str]]]:
    """Load the `features` columns of `path` as float32 (N x F) for prediction.

    Missing cells are refused, or replaced by `fill` (one value per feature) when given.
    Also returns every column of the file as read (text), so the predictions can be written
    beside the user's own columns (ids, labels) in the same order.
    """
    if path.is_dir():
        raise UserInputError(
            f"--input {path} is a folder, but this model predicts from a CSV file with the columns {features}: "
            "give --input FILE.csv"
        )
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
