"""A fit never writes into a folder that already holds another run unless it resumes that run.

A fit names its run folder by the logger's `version` (or, with no logger, `default_root_dir`),
and its checkpoints by `checkpoint.dirpath`. Given a folder of an earlier run without
resuming it, Lightning would write the new run's last.ckpt over the old one and add its
curves to the old run's; here the fit stops first, in one line that says how to resume or
where a new run goes.
"""

from pathlib import Path
from typing import Any

from src.checkpointing.run_folder import run_dir
from src.checkpointing.runs import is_newest_state
from src.errors import UserInputError


def checkpoint_folder(trainer: Any) -> Path | None:
    """Where the fit's checkpoint callback writes: its dirpath, or Lightning's fallback when a fit
    has no logger (`<default_root_dir>/checkpoints`); None without a checkpoint callback."""
    callback = trainer.checkpoint_callback
    if callback is None:
        return None
    if callback.dirpath is not None:
        return Path(callback.dirpath)
    if not trainer.loggers:
        return Path(trainer.default_root_dir) / "checkpoints"
    return None  # Lightning puts it in the logger's run folder, which is checked as a whole


def resumes(folder: Path, ckpt_path: Path | None) -> bool:
    """Whether a fit from `ckpt_path` continues the run whose checkpoints are in `folder` (its newest state)."""
    return ckpt_path is not None and ckpt_path.resolve().parent == folder.resolve() and is_newest_state(ckpt_path)


def _holds_files(folder: Path) -> bool:
    return folder.is_dir() and any(path.is_file() for path in folder.rglob("*"))


def check_not_occupied(trainer: Any, ckpt_path: Path | None) -> None:
    """Refuse a fit whose run folder or checkpoint folder holds an earlier run it does not resume."""
    checkpoints = checkpoint_folder(trainer)
    folders = [run_dir(logger) for logger in trainer.loggers]
    for run in dict.fromkeys(folder for folder in folders if folder is not None):
        own = checkpoints if checkpoints is not None else run / "checkpoints"
        if _holds_files(run) and not resumes(own, ckpt_path):
            resume = own / "last.ckpt" if (own / "last.ckpt").is_file() else None
            how = f"continue it with --ckpt_path {resume}" if resume else "choose another version"
            raise UserInputError(
                f"{run} already holds a run, and a new fit there would overwrite its checkpoints and add to its "
                f"curves: {how}, or leave out --trainer.logger.init_args.version to start a new version_N"
            )
    if checkpoints is not None and not resumes(checkpoints, ckpt_path):
        earlier = sorted(path.name for path in checkpoints.glob("*.ckpt"))
        if earlier:
            resume = checkpoints / "last.ckpt" if "last.ckpt" in earlier else checkpoints / earlier[-1]
            elsewhere = "--checkpoint.dirpath DIR" if trainer.loggers else "--trainer.default_root_dir DIR"
            raise UserInputError(
                f"{checkpoints} already holds checkpoints of another run ({', '.join(earlier[:3])}"
                f"{', ...' if len(earlier) > 3 else ''}), which a new fit would overwrite: continue that run with "
                f"--ckpt_path {resume}, or write the new run elsewhere with {elsewhere}"
            )
