"""Where `predict` may write its CSV: never over the user's data, a folder or a run's checkpoints."""

import csv
import re
from pathlib import Path

from src.errors import UserInputError
from src.tools.prediction_table import is_prediction_header

RUN_FOLDER = re.compile(r"version_\d+$")
HEADER_BYTES = 1 << 16  # a predictions header is one line; a longer first line is not one of ours


def csv_header(path: Path) -> list[str]:
    """The first line of a text CSV as column names; [] when it is not one."""
    try:
        with path.open("rb") as handle:
            first_line = handle.readline(HEADER_BYTES).decode("utf-8")
        return next(csv.reader([first_line.rstrip("\r\n")]), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def written_by_predict(path: Path, prediction_columns: list[str] | None = None) -> bool:
    """Whether `path` is a text CSV whose header is the one `predict` writes (so replacing it
    loses nothing the user made); with `prediction_columns`, the one this model writes."""
    header = csv_header(path)
    if prediction_columns is not None:
        return header[-len(prediction_columns) :] == prediction_columns
    return is_prediction_header(header)


def in_checkpoint_folder(target: Path, checkpoint: Path, checkpoint_dir: Path | None = None) -> bool:
    """Whether a resolved path lies in a folder of checkpoints: a run's `version_N/checkpoints`, a
    `checkpoints` folder holding the checkpoint in use, or the configured `checkpoint.dirpath`."""
    folders = target.parents
    if any(folder.name == "checkpoints" and RUN_FOLDER.match(folder.parent.name) for folder in folders):
        return True
    used = checkpoint.resolve().parent
    if used.name == "checkpoints" and used in folders:
        return True
    return checkpoint_dir is not None and checkpoint_dir.resolve() in folders


def is_checkpoint_file(target: Path) -> bool:
    """A `.ckpt` file (existing or not), or one with a `.sha256` record beside it as this template's saves have."""
    return target.suffix == ".ckpt" or target.with_name(target.name + ".sha256").exists()


def check_prediction_output(
    output: Path, source: Path, checkpoint: Path, overwrite: bool, checkpoint_dir: Path | None = None
) -> None:
    """Refuse, before anything runs, an `--output` that would destroy something: the input, a
    folder, a checkpoint file or anything in a checkpoints folder (even with --overwrite), or an existing file that
    predict did not write (unless --overwrite)."""
    target = output.resolve()
    if target == source.resolve():
        raise UserInputError(f"--output {output} would overwrite the input; choose another file name")
    if target.is_dir():
        raise UserInputError(
            f"--output {output} is a folder: give a file name, e.g. --output {output / 'predictions.csv'}"
        )
    if in_checkpoint_folder(target, checkpoint, checkpoint_dir):
        raise UserInputError(
            f"--output {output} is inside a checkpoints folder, which predict never writes to; "
            "choose a file elsewhere, e.g. --output predictions.csv"
        )
    if target == checkpoint.resolve() or is_checkpoint_file(target):
        raise UserInputError(
            f"--output {output} is a checkpoint file, which predict never replaces (not even with --overwrite); "
            "choose a file elsewhere, e.g. --output predictions.csv"
        )
    if target.exists() and not overwrite and not written_by_predict(target):
        raise UserInputError(not_ours(output))


def check_same_predictions(output: Path, prediction_columns: list[str], overwrite: bool) -> None:
    """Before writing: an existing `--output` is replaced only when it holds this model's prediction
    columns (a CSV of the user's that merely ends in `predicted_<something>` is not one)."""
    if output.exists() and not overwrite and not written_by_predict(output, prediction_columns):
        raise UserInputError(not_ours(output))


def not_ours(output: Path) -> str:
    return (
        f"--output {output} exists and is not a predictions CSV written by predict for this model; choose "
        "another file name, or add --overwrite to replace it"
    )
