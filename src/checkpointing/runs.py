"""Finding an experiment's runs and checkpoints, whatever the logger, and checking them.

Every logger of this project (TensorBoard, CSV, MLflow, W&B) keeps a run in
`<save_dir>/<name>/version_N/`: checkpoints/ (last.ckpt, the best), config.yaml, and for
MLflow and W&B the tracker's run id (mlflow.json, wandb.json). These helpers read that layout;
they need no logger object, so a sweep can call them on finished runs.
"""

import json
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from src.checkpointing.checkpoint_io import (
    integrity_problem,
    is_zip_checkpoint,
    load_structure,
    previous_good,
    verify_checkpoint,
)
from src.checkpointing.stored_run import RUN_FOLDER_KEY
from src.class_paths import class_from_path
from src.errors import UserInputError, first_line

_VERSION = re.compile(r"version_(\d+)$")


def versions(experiment_dir: Path) -> list[Path]:
    """The experiment's `version_N` folders, newest (highest N) first."""
    if not experiment_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in experiment_dir.iterdir() if (m := _VERSION.match(p.name)) and p.is_dir()]
    return [path for _, path in sorted(found, reverse=True)]


def next_version(experiment_dir: Path) -> int:
    """N for a new `version_N` folder: one more than the highest there (0 for none)."""
    found = versions(experiment_dir)
    return int(_VERSION.match(found[0].name).group(1)) + 1 if found else 0


def claim_next_version(experiment_dir: Path) -> int:
    """N for a new run, its empty `version_N` folder made here and now: fits started side by side (a
    shell loop with `&`) each list the folders before any of them writes one (a dataset's first
    decode can take minutes), so without the claim they would all pick the same N and overwrite
    each other's checkpoints."""
    experiment_dir.mkdir(parents=True, exist_ok=True)
    version = next_version(experiment_dir)
    while True:
        try:
            (experiment_dir / f"version_{version}").mkdir()  # fails if another run made it first
            return version
        except FileExistsError:
            version += 1


def logger_entries(logger_config: Any) -> list[Any]:
    """The logger configs of a parsed `trainer.logger` (one, a list, or none/true/false)."""
    if isinstance(logger_config, (list, tuple)):
        return [entry for entry in logger_config if getattr(entry, "init_args", None) is not None]
    return [logger_config] if getattr(logger_config, "init_args", None) is not None else []


def keeps_run_folder(entry: Any) -> bool:
    """Whether a logger config is one whose run folder is `<save_dir>/<name>/version_N`: TensorBoard,
    CSV, src.loggers' MLflow and W&B, or a subclass, however its class path is written
    (src.loggers.run_loggers.MLflow)."""
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    from src.checkpointing.run_folder import RunFolder  # it reads runs through this module

    class_path = str(getattr(entry, "class_path", ""))
    try:
        logger_class = class_from_path(class_path)
    except (ImportError, AttributeError, ValueError):
        return False
    return isinstance(logger_class, type) and issubclass(logger_class, (TensorBoardLogger, CSVLogger, RunFolder))


def same_place(folder: Path | str) -> str:
    """A folder as a key that two spellings of one place share (`lightning_logs`, `./lightning_logs`, its
    absolute path); an object-storage URL as it is written."""
    return str(folder) if "://" in str(folder) else str(Path(folder).resolve())


def check_one_run_folder(entries: list[Any]) -> None:
    """Refuse loggers that would split one run across folders: run-folder loggers of different
    save_dir or name (a `--trainer.logger.init_args` flag sets the last logger of a list only), or
    TensorBoard's sub_dir, which would put the checkpoints where `--ckpt_path last` never looks."""
    entries = [entry for entry in entries if keeps_run_folder(entry)]
    for entry in entries:
        if getattr(entry.init_args, "sub_dir", None) is not None:
            raise UserInputError(
                f"trainer.logger {entry.class_path} sub_dir {entry.init_args.sub_dir!r}: a run keeps its curves and "
                "checkpoints together in <save_dir>/<name>/version_N, which --ckpt_path last resumes; leave sub_dir "
                "out and tell runs apart by --trainer.logger.init_args.name or version"
            )
    folders = {
        same_place(Path(str(entry.init_args.save_dir), str(entry.init_args.name or ""))): entry for entry in entries
    }
    if len(folders) > 1:
        listed = " and ".join(f"{folder} ({entry.class_path.rpartition('.')[2]})" for folder, entry in folders.items())
        raise UserInputError(
            f"the loggers of this run write to different folders, {listed}, which would split the run: give every "
            "logger in the list the same save_dir and name (a --trainer.logger.init_args flag sets the last logger "
            "of a list only; set them in the config's entries)"
        )


def experiment_dir(logger_config: Any) -> Path:
    """`<save_dir>/<name>` of a parsed `trainer.logger`: where that config's runs live."""
    entries = [entry for entry in logger_entries(logger_config) if keeps_run_folder(entry)]
    if not entries:
        raise UserInputError(
            "finding a run needs trainer.logger to be one of TensorBoardLogger (the default), "
            "src.loggers.CSV, src.loggers.MLflow or src.loggers.Wandb (configs/loggers/*.yaml)"
        )
    init_args = entries[0].init_args
    name = init_args.get("name", "lightning_logs")  # empty or null: the loggers keep runs in save_dir itself
    return Path(init_args.get("save_dir") or "lightning_logs") / (name or "")


def check_writable(folder: Path, fix: str) -> None:
    """Make sure a file can be created in `folder` (or, if it does not exist yet, in the nearest
    folder above it that does), by creating one: permissions, ACLs, read-only mounts and a full
    disk all answer. `fix` says what to do instead; it ends the message."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise UserInputError(f"cannot write {existing}: {error.strerror or error}. {fix}") from None


def tracker_record(run_dir: Path, tracker: str) -> dict[str, str]:
    """What a run folder stores of its tracker run (`mlflow`: run_id, experiment_id, tracking_uri;
    `wandb`: id, project), or {} when that tracker never logged this run."""
    path = run_dir / f"{tracker}.json"
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UserInputError(f"{path} is damaged ({error}); delete it to start a new {tracker} run") from None
    return record if isinstance(record, dict) else {}


def best_score(run_dir: Path) -> tuple[float | None, Path | None]:
    """The best monitored score of a run and its checkpoint, as its last.ckpt records them
    ((None, None) when the run saved no best yet). For a sweep's objective."""
    last = run_dir / "checkpoints" / "last.ckpt"
    check_checkpoint(last)
    state = load_structure(last)
    for callback_state in state.get("callbacks", {}).values():
        if isinstance(callback_state, dict) and "best_model_score" in callback_state:
            score = callback_state["best_model_score"]
            best = _recorded_best(state, last.parent)
            return (float(score) if score is not None else None), best
    return None, None


def latest_resumable_run(experiment_dir: Path) -> Path:
    """The newest version folder that holds `checkpoints/last.ckpt`."""
    for version_dir in versions(experiment_dir):
        if (version_dir / "checkpoints" / "last.ckpt").is_file():
            return version_dir
    raise UserInputError(
        f"no trained run to take a checkpoint from: no {experiment_dir}/version_*/checkpoints/last.ckpt exists. "
        "Train first without --ckpt_path, or give the path of a checkpoint file"
    )


def run_folders(checkpoint: Path, recorded: bool = True) -> Iterator[Path]:
    """The run folder a checkpoint may belong to, most likely first: `<run>` of `<run>/checkpoints/x.ckpt`,
    then (`recorded`) the one its fit recorded in it (RUN_FOLDER_KEY: checkpoints kept elsewhere by
    --checkpoint.dirpath)."""
    folder = checkpoint.resolve().parent
    if folder.name == "checkpoints":
        yield folder.parent
    if not recorded:
        return
    try:
        saved_in = load_structure(checkpoint).get(RUN_FOLDER_KEY)  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - damaged or foreign: the integrity check says why elsewhere
        return
    if isinstance(saved_in, str):
        yield Path(saved_in)


def run_version_of(checkpoint: Path, experiment_dir: Path, checkpoint_dir: str | None = None) -> int | str | None:
    """The logger `version` of the run a checkpoint belongs to, a run of `experiment_dir`: N for
    version_N, else the run folder's path below the experiment (a sweep's `trial_3`); None when it
    belongs to no run of this experiment. The run it recorded counts only when it lies in
    `checkpoint_dir` (the fit's checkpoint.dirpath), where the resumed fit writes its checkpoints:
    a copy elsewhere of an older state must not bring that run's folder a new last.ckpt."""
    in_dirpath = checkpoint_dir is not None and checkpoint.resolve().parent == Path(checkpoint_dir).resolve()
    folders = run_folders(checkpoint) if in_dirpath else run_folders(checkpoint, recorded=False)
    for folder in folders:
        try:
            run = folder.resolve().relative_to(experiment_dir.resolve()).as_posix()
        except ValueError:
            continue
        if run != ".":
            numbered = _VERSION.fullmatch(run)
            return int(numbered.group(1)) if numbered else run
    return None


def best_checkpoint(folder: Path) -> Path:
    """The best checkpoint in a run's checkpoint folder, as recorded by its ModelCheckpoint in last.ckpt.

    last.ckpt is verified first, like any checkpoint: a damaged one names the best file to
    give explicitly, when the other checkpoints of the run tell which it is.
    """
    last = folder / "last.ckpt"
    problem = integrity_problem(last)
    state = None
    if problem is None:
        try:
            state = load_structure(last)
        except Exception as error:  # torch raises many types for a damaged or foreign file
            problem = f"it is not a readable checkpoint ({_reason(last, error)})"
    if state is None:
        raise UserInputError(
            f"--ckpt_path best reads the best checkpoint's name from {last}, which is damaged: {problem}; "
            f"{_best_by_name(folder)}"
        )
    best = _recorded_best(state, folder)
    if best is None:
        raise UserInputError(
            f"{last} records no best checkpoint that still exists; use --ckpt_path last or a file path"
        )
    return best


def _recorded_best(state: object, folder: Path) -> Path | None:
    """The `best_model_path` a checkpoint's ModelCheckpoint state names, if that file exists."""
    callbacks = state.get("callbacks", {}) if isinstance(state, dict) else {}
    for callback_state in callbacks.values():
        if isinstance(callback_state, dict) and callback_state.get("best_model_path"):
            best = Path(callback_state["best_model_path"])
            if not best.is_file():
                best = folder / best.name  # a run folder moved or copied since: look beside last.ckpt
            if best.is_file():
                return best
    return None


def _best_by_name(folder: Path) -> str:
    """Advice naming the run's best checkpoint without last.ckpt.

    Each top-k checkpoint records the best at the time it was written, and the best changes
    only with a top-k save, so the newest intact one names the current best (itself, with
    save_top_k 1). Read only when last.ckpt is damaged, to help the user.
    """
    intact = [
        path
        for path in sorted(folder.glob("*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
        if path.name != "last.ckpt" and integrity_problem(path) is None
    ]
    if not intact:
        return "no other intact checkpoint is in that folder: train again, or give a checkpoint file with --ckpt_path"
    try:
        best = _recorded_best(load_structure(intact[0]), folder)
    except Exception:  # not a loadable checkpoint after all: fall back to listing the files
        best = None
    if best is not None and best.resolve() in {path.resolve() for path in intact}:
        return f"give the best checkpoint explicitly: --ckpt_path {best}"
    return "give one of its checkpoints explicitly: " + ", ".join(f"--ckpt_path {path}" for path in intact)


def is_newest_state(checkpoint: Path) -> bool:
    """Whether a checkpoint holds its folder's newest training state: it is `last.ckpt`, there is no
    `last.ckpt` beside it, or it is at least as far on (global step) as that `last.ckpt`. Resuming an
    older one in the same run folder would overwrite the newer `last.ckpt` with an older state."""
    last = checkpoint.parent / "last.ckpt"
    if checkpoint.name == "last.ckpt" or not last.is_file():
        return True
    try:
        return load_structure(checkpoint)["global_step"] >= load_structure(last)["global_step"]  # type: ignore[index]
    except Exception:  # noqa: BLE001 - any damage (emptied: EOFError, cut short, not a checkpoint)
        return False  # a damaged last.ckpt: keep it for the user, start a new run folder


def _reason(path: Path, error: Exception) -> str:
    """Why torch.load could not read `path`: a file torch.save never wrote (a text file, an image),
    or the error's first sentence (torch's run on for lines)."""
    with path.open("rb") as handle:
        start = handle.read(2)
    if not is_zip_checkpoint(path) and not start.startswith(b"\x80"):  # neither a zip nor a pickle
        return "it is not a file torch.save wrote"
    if found := re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error)):
        return f"it holds a {found.group(1)} object, which a weights-only load does not run"
    detail = first_line(error, 200).split(". ")[0]
    return detail if detail == type(error).__name__ else f"{type(error).__name__}: {detail}"


def check_checkpoint(path: Path) -> None:
    """Fail clearly unless `path` is an intact Lightning checkpoint (weights-only loadable)."""
    if not path.is_file():
        raise UserInputError(f"--ckpt_path {path}: no such file (give a .ckpt file, 'last' or 'best')")
    try:
        with path.open("rb"):
            pass
    except OSError as error:  # read as a failed write otherwise: "cannot write ... free space"
        raise UserInputError(
            f"cannot read {path}: {error.strerror or error}; make it readable to you (chmod a+r) or copy it somewhere "
            "you can read"
        ) from None
    verify_checkpoint(path)
    try:
        state = load_structure(path)
    except Exception as error:  # torch raises many types for a damaged or foreign file
        raise UserInputError(
            f"{path} is not a readable checkpoint ({_reason(path, error)}); {previous_good(path)}"
        ) from None
    if not isinstance(state, dict) or "state_dict" not in state:
        raise UserInputError(f"{path} is not a Lightning checkpoint (it has no state_dict); {previous_good(path)}")


def resumed_past_the_end(epoch: int, max_epochs: int) -> str:
    """The line for a fit resumed from a checkpoint of (1-based) `epoch` when max_epochs is not above it."""
    return (
        f"this checkpoint is from epoch {epoch}, past --trainer.max_epochs {max_epochs}, which counts the epochs "
        f"already trained too: give --trainer.max_epochs above {epoch} to train on, or evaluate it with "
        "`python train.py test` and the same --ckpt_path"
    )


def check_resumable(path: Path, max_epochs: int | None = None) -> None:
    """A fit from a checkpoint resumes its whole training state: refuse, in one line, a file that
    holds weights only (a state_dict saved by hand, or `checkpoint.save_weights_only`), or one
    trained past `max_epochs` (which Lightning refuses only once the run folder has its resumed
    config and curves file), before anything is written."""
    state = load_structure(path)
    if not isinstance(state, dict) or not {"pytorch-lightning_version", "optimizer_states"} <= state.keys():
        raise UserInputError(
            f"{path} holds weights but no training state (optimizer, epoch), so a fit cannot resume it: start a "
            f"new run from its weights with --model.init_from {path} instead of --ckpt_path"
        )
    epoch = state.get("epoch")  # 0-based: the epoch it was saved in (the last one trained, or the one under way)
    if isinstance(max_epochs, int) and max_epochs >= 0 and isinstance(epoch, int) and epoch + 1 > max_epochs:
        raise UserInputError(resumed_past_the_end(epoch + 1, max_epochs))
