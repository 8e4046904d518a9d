"""One run folder, `<save_dir>/<name>/version_N/`, for every logger of a run and its checkpoints.

TensorBoard and CSV keep a run there already; `RunFolder` gives MLflow and W&B the same folder
(with their run id in it, so a resumed run goes on in the same tracker run), and
`share_run_folder` puts every logger of a fit, and its checkpoints, in the first one's folder.
"""

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from src.checkpointing.atomic_files import write_atomically
from src.checkpointing.runs import claim_next_version, next_version, same_place


class RunFolder:
    """`<save_dir>/<name>/version_N` for a tracker whose files would otherwise live elsewhere.

    `save_dir` (the property) is the run folder itself, which is what `Trainer.log_dir` reads
    for a logger that is neither TensorBoard nor CSV: config.yaml lands in the run folder.
    """

    _root: Path
    _folder_name: str
    _version: int | str | None

    def _set_folder(self, save_dir: str | os.PathLike, name: str, version: int | str | None) -> None:
        self._root = Path(save_dir)
        self._folder_name = name
        self._version = version

    @property
    def root_dir(self) -> str:
        """`<save_dir>/<name>`: this experiment's runs."""
        return str(self._root / self._folder_name)

    @property
    def run_version(self) -> int | str:
        """N of version_N: given, or the next free number in the experiment's folder; a string
        names the folder itself (as TensorBoard's version does: a sweep's `trial_3`)."""
        if self._version is None:
            self._version = next_version(Path(self.root_dir))
        return self._version

    @property
    def run_folder_name(self) -> str:
        version = self.run_version
        return version if isinstance(version, str) else f"version_{version}"

    @property
    def log_dir(self) -> str:
        return str(Path(self.root_dir) / self.run_folder_name)

    @property
    def save_dir(self) -> str:
        return self.log_dir

    def _record_path(self, tracker: str) -> Path:
        return Path(self.log_dir) / f"{tracker}.json"

    def _write_record(self, tracker: str, record: dict[str, str]) -> None:
        path = self._record_path(tracker)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, (json.dumps(record, indent=2) + "\n").encode())


def logger_keeps_run_folder(logger: Any) -> bool:
    """Whether `logger` is a TensorBoard, CSV, MLflow or W&B logger of this project (one whose run
    folder is `<save_dir>/<name>/version_N`)."""
    return isinstance(logger, (RunFolder, CSVLogger, TensorBoardLogger))


def run_dir(logger: Any) -> Path | None:
    """The run folder of a logger that keeps one (numbering it now if it has no number yet); None for others."""
    return Path(logger.log_dir) if logger_keeps_run_folder(logger) else None


def share_run_folder(trainer: Any, claim: bool = True) -> Path | None:
    """Put every logger of a fit, and its checkpoints, in the first logger's run folder.

    Loggers that pick the next free version_N each pick it when they first write, so a second
    logger would pick N+1 once the first has made version_N; here the ones left unnumbered
    take the first one's N (rank 0's choice reaches the other ranks: ModelCheckpoint broadcasts
    its folder, and only rank 0 logs). A new N is claimed by making its folder at once
    (`claim_next_version`), so fits started together each get their own. The checkpoints go to
    `version_N/checkpoints` unless `checkpoint.dirpath` names a folder. Returns the folder claimed,
    if any (`release_claim` removes it while it is still empty); `claim=False` claims none (the first
    logger picks its N when it first writes).
    """
    folders = [logger for logger in trainer.loggers if logger_keeps_run_folder(logger)]
    if not folders:
        return None
    # TensorBoard's and CSV's number is `_version` (None until first asked), as is ours.
    first, *others = folders
    claimed = None
    if claim and first._version is None and trainer.is_global_zero and "://" not in str(first.root_dir):
        first._version = claim_next_version(Path(first.root_dir))
        claimed = Path(first.root_dir) / f"version_{first._version}"
    version = first.run_version if isinstance(first, RunFolder) else first.version
    for logger in others:
        if logger._version is None and same_place(logger.root_dir) == same_place(first.root_dir):
            logger._version = version
    callback = trainer.checkpoint_callback
    if callback is not None and callback.dirpath is None:
        callback.dirpath = str(run_dir(first) / "checkpoints")
    return claimed


def release_claim(claimed: Path | None) -> None:
    """Give back a run folder that `share_run_folder` claimed for a fit that stopped before writing into it."""
    if claimed is not None and claimed.is_dir() and not any(claimed.iterdir()):
        claimed.rmdir()


def holds_files(folder: Path) -> bool:
    """Whether any file lies in `folder`, at any depth."""
    return folder.is_dir() and any(path.is_file() for path in folder.rglob("*"))


def empty_run_folders(trainer: Any) -> list[Path]:
    """The trainer's run folders that hold no file yet (absent or empty): the only ones that
    `discard_unstarted_run` may remove, so an earlier run's folder is never touched."""
    folders = dict.fromkeys(path for path in map(run_dir, trainer.loggers) if path is not None)
    return [folder for folder in folders if not holds_files(folder)]


# What loggers write into a new run folder before its first step: nothing a user made.
_STARTUP_FILES = re.compile(
    r"events\.out\.tfevents\..*|config(\.resumed-\d+)?\.yaml|hparams\.yaml|metrics\.csv|(mlflow|wandb)\.json"
)


def discard_unstarted_run(trainer: Any, new_folders: list[Path]) -> None:
    """After a fit failed before its first training step: remove those of `new_folders` (its run
    folders that held no file when it started: `empty_run_folders`) that hold only what the loggers
    wrote at start-up, so a mistake leaves no empty run behind in TensorBoard. Rank 0 only."""
    if not trainer.is_global_zero or trainer.global_step > 0:
        return
    for folder in new_folders:
        if not folder.is_dir() or not re.fullmatch(r"version_\d+", folder.name):
            continue
        files = [path for path in folder.rglob("*") if path.is_file()]
        if all(path.parent == folder and _STARTUP_FILES.fullmatch(path.name) for path in files):
            shutil.rmtree(folder, ignore_errors=True)
