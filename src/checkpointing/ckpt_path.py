"""`--ckpt_path last | best | FILE`: the checkpoint a command starts from, checked, and the run it continues.

Lightning's `ckpt_path="last"` looks only in the ModelCheckpoint's folder and, finding
nothing, warns and trains from scratch; here `last` and `best` name a file of the config's
experiment (`<save_dir>/<name>/version_N/checkpoints`), or stop with one line. A fit from
a checkpoint of one of the experiment's runs writes into that run's folder.
"""

from pathlib import Path
from typing import Any

from src.checkpointing.runs import (
    best_checkpoint,
    check_checkpoint,
    check_writable,
    experiment_dir,
    is_newest_state,
    keeps_run_folder,
    latest_resumable_run,
    logger_entries,
    run_version_of,
)
from src.errors import UserInputError


def checkpoint_file(ckpt_path: str, logger_config: Any, checkpoint_dir: str | None = None) -> Path:
    """The file `--ckpt_path` names (`last`/`best`: in `checkpoint_dir`, the config's
    `checkpoint.dirpath`, when it holds a last.ckpt, else of the newest run of the logger's
    experiment that has one: a resumed run may write its new checkpoints to a new, empty
    dirpath), checked to be an intact Lightning checkpoint."""
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if ckpt_path in ("last", "best") and folder is not None and (folder / "last.ckpt").is_file():
        path = folder / "last.ckpt" if ckpt_path == "last" else best_checkpoint(folder)
        print(f"Using the {ckpt_path} checkpoint in {folder}: {path}")
    elif ckpt_path in ("last", "best"):
        run = latest_resumable_run(experiment_dir(logger_config))
        path = run / "checkpoints" / "last.ckpt" if ckpt_path == "last" else best_checkpoint(run / "checkpoints")
        print(f"Using the {ckpt_path} checkpoint of {run}: {path}")
    else:
        path = Path(ckpt_path)
    check_checkpoint(path)
    return path


def check_resumable_folder(run: Path) -> None:
    """A resumed run writes its logs, config and checkpoints into its own folder: refuse at once,
    in one line, when that folder cannot be written (TensorBoard's writer thread would fail later
    with a traceback)."""
    for folder in (run, run / "checkpoints"):
        check_writable(
            folder,
            f"Resuming writes the run's logs and checkpoints there: make {run} writable, or continue in a new "
            "run elsewhere with --trainer.logger.init_args.save_dir DIR --ckpt_path "
            f"{run / 'checkpoints' / 'last.ckpt'}",
        )


def version_folder(version: int | str) -> str:
    """The run folder a logger's `version` names: version_N for a number, else the text itself."""
    return f"version_{version}" if isinstance(version, int) else str(version)


def log_into_the_checkpoint_run(
    subcommand: str, trainer_config: Any, path: Path, checkpoint_dir: str | None = None
) -> None:
    """Resuming a checkpoint that lies in one of this experiment's runs continues that run's folder,
    whether given as `last` or as a path: its curves go on as one run (MLflow and W&B find their
    run id there; a checkpoint in `checkpoint_dir`, the fit's checkpoint.dirpath, names the run it was
    saved in). An older checkpoint of a run (behind its last.ckpt) starts a new run folder
    instead, so the run's newer last.ckpt and curves are never overwritten. validate and test log
    nowhere: outside a fit Lightning restores only the weights, so their metrics would sit at step 0
    of a run (TensorBoard reads that as a restart and drops the run's later points), or alone in a
    new version_N; the table they print is the result. predict and export log nothing either, so a
    tracker (an MLflow server that is down) never stands in their way. Changes `trainer_config.logger`
    in place."""
    if subcommand in ("validate", "test", "predict", "export"):
        trainer_config.logger = False
    if subcommand != "fit":
        return
    entries = [entry for entry in logger_entries(trainer_config.logger) if keeps_run_folder(entry)]
    version = run_version_of(path, experiment_dir(trainer_config.logger), checkpoint_dir) if entries else None
    if version is not None and is_newest_state(path):  # an older checkpoint starts a new run folder
        check_resumable_folder(experiment_dir(trainer_config.logger) / version_folder(version))
        for entry in entries:
            given = entry.init_args.version
            if given is not None and version_folder(given) != version_folder(version):
                raise UserInputError(
                    f"--trainer.logger.init_args.version {given}, but {path} continues its own run "
                    f"{version_folder(version)}: leave the version out to resume that run, or start a new run from "
                    f"its weights with --model.init_from {path}"
                )
            entry.init_args.version = version
