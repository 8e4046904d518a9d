"""A fit never writes into a folder that already holds another run unless it resumes that run.

A fit names its run folder by the logger's `version` (or, with no logger, `default_root_dir`),
and its checkpoints by `checkpoint.dirpath`. Given a folder of an earlier run without
resuming it, Lightning would write the new run's last.ckpt over the old one and add its
curves to the old run's; here the fit stops first, in one line that says how to resume or
where a new run goes. A fit that does resume a run keeps logging to the trackers that run
was logged to (`check_trackers_go_on`).
"""

from pathlib import Path

from lightning.pytorch import Trainer
from lightning.pytorch.loggers import MLFlowLogger, WandbLogger

from src.checkpointing.checkpoint_io import furthest_good
from src.checkpointing.run_folder import holds_files, run_dir
from src.checkpointing.runs import is_newest_state, run_folders
from src.errors import UserInputError


def checkpoint_folder(trainer: Trainer) -> Path | None:
    """Where the fit's checkpoint callback writes: its dirpath (share_run_folder sets it for this
    project's loggers), else Lightning's own choice: `<default_root_dir>/checkpoints` without a
    logger, `<save_dir>/<name>/<version>/checkpoints` of the first logger; None without a callback."""
    callback = trainer.checkpoint_callback
    if callback is None:
        return None
    if callback.dirpath is not None:
        return Path(callback.dirpath)
    if not trainer.loggers:
        return Path(trainer.default_root_dir) / "checkpoints"
    logger = trainer.loggers[0]
    version = logger.version if isinstance(logger.version, str) else f"version_{logger.version}"
    return Path(logger.save_dir or trainer.default_root_dir) / str(logger.name) / version / "checkpoints"


def resumes(folder: Path, ckpt_path: Path | None) -> bool:
    """Whether a fit from `ckpt_path` continues the run whose checkpoints are in `folder` (its newest state)."""
    return ckpt_path is not None and ckpt_path.resolve().parent == folder.resolve() and is_newest_state(ckpt_path)


def _ways_out(folder: Path, elsewhere: str) -> str:
    """How to go on from a folder of checkpoints: continue its run from the checkpoint that run would
    accept (its newest state, intact), or start elsewhere, from its furthest intact checkpoint if the
    newest is damaged."""
    good = furthest_good(folder)
    if good is not None and is_newest_state(good):
        return f"continue that run with --ckpt_path {good}, or {elsewhere}"
    if good is not None:
        return f"{elsewhere} (adding --ckpt_path {good}, its furthest intact checkpoint, to go on from it)"
    return elsewhere


def check_not_occupied(trainer: Trainer, ckpt_path: Path | None) -> None:
    """Refuse a fit whose run folder or checkpoint folder holds an earlier run it does not resume.
    A `fast_dev_run` writes no checkpoint and logs nowhere (Lightning swaps in a dummy logger)."""
    if trainer.fast_dev_run:
        return
    checkpoints = checkpoint_folder(trainer)
    folders = [run_dir(logger) for logger in trainer.loggers]
    for run in dict.fromkeys(folder for folder in folders if folder is not None):
        own = checkpoints if checkpoints is not None else run / "checkpoints"
        # A run is continued from its newest state, whether its checkpoints go on in the same folder
        # or, with --checkpoint.dirpath, in a new one.
        if holds_files(run) and not (resumes(own, ckpt_path) or resumes(run / "checkpoints", ckpt_path)):
            elsewhere = "leave out --trainer.logger.init_args.version to start a new version_N"
            raise UserInputError(
                f"{run} already holds a run, and a new fit there would overwrite its checkpoints and add to its "
                f"curves: {_ways_out(run / 'checkpoints', elsewhere)}"
            )
    if checkpoints is not None and not resumes(checkpoints, ckpt_path):
        earlier = sorted(path.name for path in checkpoints.glob("*.ckpt"))
        if earlier:
            flag = "--checkpoint.dirpath DIR" if trainer.loggers else "--trainer.default_root_dir DIR"
            raise UserInputError(
                f"{checkpoints} already holds checkpoints of another run ({', '.join(earlier[:3])}"
                f"{', ...' if len(earlier) > 3 else ''}), which a new fit would overwrite: "
                f"{_ways_out(checkpoints, f'write the new run elsewhere with {flag}')}"
            )


# A run folder's record of its tracker run (src/loggers), the tracker's name, its logger, its config part.
TRACKER_RECORDS = {
    "mlflow.json": ("MLflow", MLFlowLogger, "configs/loggers/mlflow.yaml"),
    "wandb.json": ("W&B", WandbLogger, "configs/loggers/wandb.yaml"),
}


def check_trackers_go_on(trainer: Trainer, ckpt_path: Path | None) -> None:
    """Refuse a fit that resumes a run logged to MLflow or W&B without that tracker's logger: the
    curves after the resume would go to the other loggers only, and the tracker's run would end
    at the stop, as if it were the whole run."""
    if ckpt_path is None or trainer.fast_dev_run:
        return
    folders = {folder.resolve() for logger in trainer.loggers if (folder := run_dir(logger)) is not None}
    resumed = next((run for run in run_folders(ckpt_path) if run.resolve() in folders), None)
    if resumed is None:
        return  # a new run that starts from another run's weights: nothing of that run goes on
    for record, (tracker, logger_type, part) in TRACKER_RECORDS.items():
        if (resumed / record).is_file() and not any(isinstance(logger, logger_type) for logger in trainer.loggers):
            run = ckpt_path.parent.parent if ckpt_path.resolve().parent.parent == resumed else resumed  # as given
            raise UserInputError(
                f"{run} was logged to {tracker} ({run / record} holds its run id), and this fit has no {tracker} "
                f"logger, so the rest of the run would not reach it: resume with the run's own loggers (--config "
                f"{run / 'config.yaml'} --ckpt_path {ckpt_path}, or add --config {part}), or rename {run / record} "
                f"to go on without {tracker}"
            )
