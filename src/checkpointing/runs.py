"""Finding an experiment's runs and checkpoints under the TensorBoard log folder, and checking them."""

import re
from pathlib import Path

import torch

from src.checkpointing.checkpoint_io import previous_good, verify_checkpoint
from src.errors import UserInputError

_VERSION = re.compile(r"version_(\d+)$")


def versions(experiment_dir: Path) -> list[Path]:
    """The experiment's `version_N` folders, newest (highest N) first."""
    if not experiment_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in experiment_dir.iterdir() if (m := _VERSION.match(p.name)) and p.is_dir()]
    return [path for _, path in sorted(found, reverse=True)]


def latest_resumable_run(experiment_dir: Path) -> Path:
    """The newest version folder that holds `checkpoints/last.ckpt`."""
    for version_dir in versions(experiment_dir):
        if (version_dir / "checkpoints" / "last.ckpt").is_file():
            return version_dir
    raise UserInputError(
        f"nothing to resume: no {experiment_dir}/version_*/checkpoints/last.ckpt exists. "
        "Train first without --ckpt_path, or give the path of a checkpoint file"
    )


def best_checkpoint(version_dir: Path) -> Path:
    """The best checkpoint of a run, as recorded by its ModelCheckpoint in last.ckpt."""
    last = version_dir / "checkpoints" / "last.ckpt"
    state = torch.load(last, map_location="cpu", weights_only=True)
    for callback_state in state.get("callbacks", {}).values():
        if isinstance(callback_state, dict) and callback_state.get("best_model_path"):
            best = Path(callback_state["best_model_path"])
            if not best.is_absolute() and not best.is_file():
                best = version_dir / "checkpoints" / best.name
            if best.is_file():
                return best
    raise UserInputError(f"{last} records no best checkpoint that still exists; use --ckpt_path last or a file path")


def check_checkpoint(path: Path) -> None:
    """Fail clearly unless `path` is an intact Lightning checkpoint (weights-only loadable)."""
    if not path.is_file():
        raise UserInputError(f"--ckpt_path {path}: no such file (give a .ckpt file, 'last' or 'best')")
    verify_checkpoint(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a damaged or foreign file
        detail = str(error).strip().splitlines()[0][:100] if str(error).strip() else ""
        reason = f"{type(error).__name__}: {detail}" if detail else type(error).__name__
        raise UserInputError(f"{path} is not a readable checkpoint ({reason}); {previous_good(path)}") from None
    if not isinstance(state, dict) or "state_dict" not in state:
        raise UserInputError(f"{path} is not a Lightning checkpoint (it has no state_dict); {previous_good(path)}")
