"""The one door from the command line into this package: what a command needs to save, stop and resume.

TemplateCLI makes one `RunSafety` per command, once its config is parsed, and hands it the
Trainer it builds; everything else of the package stays behind it (docs/run-safety.md).
"""

from pathlib import Path
from typing import Any

from lightning.pytorch import Trainer

from src.checkpointing.checkpoint_io import AtomicCheckpointIO
from src.checkpointing.ckpt_path import checkpoint_file, log_into_the_checkpoint_run
from src.checkpointing.occupied_run import check_not_occupied, check_trackers_go_on
from src.checkpointing.rng_state import RngState
from src.checkpointing.run_folder import release_claim, share_run_folder
from src.checkpointing.runs import check_resumable


class RunSafety:
    """The checkpoint a command starts from, and what its Trainer needs to save and resume exactly.

    Args:
        subcommand: fit, validate, test, predict, lr_find or export; None for a parser without
            subcommands (a script that fits by itself).
        config: that command's parsed config. A `ckpt_path` of `last`, `best` or a file becomes
            the checked file; a fit from a checkpoint of one of the experiment's runs writes into
            that run's folder (its loggers' `version` is set here).
    """

    def __init__(self, subcommand: str | None, config: Any) -> None:
        self.fitting = subcommand in ("fit", None)
        # `fit` claims its run folder as its Trainer is built; a script's Trainer (no subcommand, as
        # `TemplateCLI(run=False)` builds) may never fit, so its loggers pick their folder when they write.
        self.claims_folder = subcommand == "fit"
        self.ckpt_path: Path | None = None
        given = config.get("ckpt_path") if subcommand is not None else None
        if given is not None:
            checkpoint_dir = (config.get("checkpoint") or {}).get("dirpath")
            self.ckpt_path = checkpoint_file(str(given), config.trainer.logger, checkpoint_dir)
            if self.fitting:
                check_resumable(self.ckpt_path, (config.get("trainer") or {}).get("max_epochs"))
            log_into_the_checkpoint_run(subcommand, config.trainer, self.ckpt_path, checkpoint_dir)
            config.ckpt_path = str(self.ckpt_path)

    @staticmethod
    def plugins(given: Any) -> list[Any]:
        """The Trainer's plugins: those given, plus checkpoint files written atomically with sha256
        records and loaded verified and weights-only."""
        plugins = given if isinstance(given, list) else [given] if given is not None else []
        return [*plugins, AtomicCheckpointIO()]

    def equip(self, trainer: Trainer) -> None:
        """Checkpoints carry the RNG states; a fit keeps every logger and its checkpoints in one run folder,
        which holds no earlier run unless the fit resumes it, and a resumed run keeps its trackers."""
        if self.fitting:
            claimed = share_run_folder(trainer, claim=self.claims_folder)
            try:
                check_not_occupied(trainer, self.ckpt_path)
                check_trackers_go_on(trainer, self.ckpt_path)
            except BaseException:
                release_claim(claimed)  # refused (or stopped) before writing: no empty version_N left behind
                raise
        trainer.callbacks.append(RngState())
