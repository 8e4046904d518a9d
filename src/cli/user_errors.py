"""Turning the exceptions a user can cause into one line that names the problem."""

import difflib
import errno
import re
from argparse import ArgumentError

import torch.distributed as dist
from lightning.fabric.utilities.exceptions import MisconfigurationException

from src.checkpointing.runs import resumed_past_the_end
from src.errors import UserInputError, first_line

_STRUCTURE = (
    "Parser key",
    "Problem with given class_path",
    "Does not validate against",
    "Subtypes:",
    "Errors:",
    "Given value",
    "Expected a <class 'NoneType'>",
)


# What gloo and NCCL raise on the ranks still waiting when another rank of a DDP run has exited.
_PEER_GONE = ("Connection closed by peer", "Connection reset by peer", "remote worker crashing")

# Lightning's ValueError when an interval in batches is longer than an epoch.
_INTERVAL_PAST_EPOCH = re.compile(
    r"`val_check_interval` \((\d+)\) must be less than or equal to the number of the training batches \((\d+)\)"
)

# Where each command writes, for a write that failed; fit and the others write into the run folder.
_OUTPUT_OPTIONS = {
    "export": "--output_dir",
    "predict": "--output",
    "optimize": "--output_dir",
    "lr_find": "--output_dir",
}

# Lightning's refusal to resume a checkpoint whose epoch is past max_epochs.
_RESUMED_PAST_END = re.compile(
    r"restored a checkpoint with current_epoch=(\d+), but you have set Trainer\(max_epochs=(\d+)\)"
)

# Lightning's refusal of a checkpoint monitor that the model never logged (at the first validation).
_UNKNOWN_CHECKPOINT_MONITOR = re.compile(
    r"`ModelCheckpoint\(monitor='([^']*)'\)` could not find the monitored key in the returned metrics: \[([^\]]*)\]"
)

# Lightning's refusal of a plateau schedule's monitor that the model never logged (when it first steps).
_UNKNOWN_PLATEAU_MONITOR = re.compile(
    r"ReduceLROnPlateau conditioned on metric (\S+) which is not available\. Available metrics are: \[([^\]]*)\]"
)

_DISK_ERRORS = {errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EROFS, errno.ENOTDIR, errno.EEXIST, errno.EDQUOT}


def _causes(error: BaseException) -> list[BaseException]:
    chain, seen = [], set()
    while error is not None and id(error) not in seen:
        chain.append(error)
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return chain


def summarize_argument_error(text: str) -> str:
    """'model.optimizer.lr: Not of type PositiveFloat: ...' from jsonargparse's nested report."""
    lines = [line.strip().lstrip("- ") for line in text.splitlines() if line.strip()]
    # A key can close another line too: '... expects a function or a callable class: Parser key "lr":'.
    keys = [key for line in lines for key in re.findall(r'Parser key "([^"]+)"', line)]
    # A problem can follow its key on the same line: 'Parser key "config": File does not exist'.
    lines = [re.sub(r'^Parser key "[^"]+":\s*', "", line) for line in lines]
    problems = [line for line in lines if line and not line.startswith(_STRUCTURE)]
    problem = problems[-1] if problems else lines[-1]
    # A union (float or Tensor, bool or int) lists what each member expected: name the plain types it takes.
    expected = [m.group(1) for line in problems if (m := re.fullmatch(r"Expected a (<class '[\w.]+'>)", line))]
    given = [
        m.group(1) for line in lines if (m := re.match(r"Given value: (.*?)(?:\. Got value: Namespace\(.*)?$", line))
    ]
    if expected and given:
        problem = f"Expected a {' or '.join(dict.fromkeys(expected))}. Got value: {given[0]}"
    # A choice ('Expected a typing.Literal['min', 'max']'): name the choices.
    problem = re.sub(r"Expected a typing\.Literal\[(.*?)\]", r"Expected one of \1", problem)
    # jsonargparse adds the whole parsed group after the value (". Got value: Namespace(class_path=...,
    # init_args=Namespace(activation='swish'))"): name the argument that holds the value instead.
    argument = None
    if group := re.search(r"\.? Got value: Namespace\((.*)$", problem):
        value = re.search(r"Got value: (.*?)\.? Got value: Namespace", problem)
        pairs = re.findall(r"(\w+)='?([^',()]*)'?", group.group(1))
        named = [key for key, held in pairs if key not in ("class_path", "init_args") and value and held == value[1]]
        argument = named[0] if len(named) == 1 else None
        problem = problem[: group.start()]
    # Keys nest (model -> optimizer -> lr); a class path in between is not a key.
    keys = list(dict.fromkeys(keys))
    if argument and keys:
        keys = [*(keys[:-1] if keys[-1] == argument else keys), "init_args", argument]
    path = ".".join(keys)
    return f"{path}: {problem}" if path and not problem.startswith(path) else problem


def _own_message(text: str) -> str:
    """The error's own line: a DataLoader worker re-raises it with the worker's traceback first."""
    if "Original Traceback" not in text:
        return text
    last = text.strip().splitlines()[-1]
    return last.split("UserInputError: ", 1)[-1]


def unknown_subcommand(word: str, subcommands: tuple[str, ...]) -> str:
    """The line for `python train.py WORD ...` where WORD is no subcommand: every one, and the nearest."""
    nearest = difflib.get_close_matches(word, subcommands, n=1)
    guess = f"did you mean {nearest[0]}? " if nearest else ""
    return f"{word!r} is not a command: {guess}choose from {', '.join(subcommands)} (see: python train.py --help)"


def no_subcommand(subcommands: tuple[str, ...]) -> str:
    """The line for `python train.py` alone."""
    return (
        f"no command given: choose from {', '.join(subcommands)}, e.g. python train.py fit --config "
        "configs/circles.yaml (see: python train.py --help)"
    )


def user_message(error: BaseException, subcommand: str = "fit") -> str | None:
    """The one-line message for a mistake the user can fix, or None for a real bug."""
    causes = _causes(error)
    for cause in causes:
        if isinstance(cause, UserInputError):
            return _own_message(str(cause))
    for cause in causes:
        if isinstance(cause, OSError) and cause.errno in _DISK_ERRORS:
            where = cause.filename or "the log folder"
            option = _OUTPUT_OPTIONS.get(
                subcommand, "--trainer.logger.init_args.save_dir (or --checkpoint.dirpath, where you set it)"
            )
            return (
                f"cannot write {where}: {cause.strerror}. Existing checkpoints are untouched; free space or "
                f"choose another place with {option}"
            )
    for index, cause in enumerate(causes):
        if type(cause).__name__ == "StorageInternalError":  # Optuna's, for a study database it cannot write
            reason = first_line(causes[-1]) if index + 1 < len(causes) else "the database refused the write"
            return (
                f"the sweep's study database could not be written ({reason}): make it and its folder writable, "
                "with space free, or give another --sweep.storage"
            )
    distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    if distributed and isinstance(error, RuntimeError) and any(sign in str(error) for sign in _PEER_GONE):
        rank = f"rank {dist.get_rank()}"
        return f"{rank} stopped because another rank of this DDP run ended first: that rank's message says why"
    if isinstance(error, ValueError) and (found := _INTERVAL_PAST_EPOCH.search(str(error))):
        interval, batches = found.groups()
        return (
            f"--trainer.val_check_interval {interval} is more than the {batches} training batches of an epoch: give "
            f"at most {batches} (or a fraction of an epoch, such as 0.5), or count batches across epochs with "
            "--trainer.check_val_every_n_epoch null"
        )
    if isinstance(error, MisconfigurationException) and (found := _RESUMED_PAST_END.search(str(error))):
        return resumed_past_the_end(int(found.group(1)) + 1, int(found.group(2)))  # Lightning counts from 0
    monitors = (
        (_UNKNOWN_CHECKPOINT_MONITOR, "--checkpoint.monitor"),
        (_UNKNOWN_PLATEAU_MONITOR, "--model.scheduler.monitor"),
    )
    for pattern, flag in monitors:
        if isinstance(error, MisconfigurationException) and (found := pattern.search(str(error))):
            monitor, names = found.group(1), re.findall(r"'([^']*)'", found.group(2))
            logged = ", ".join(name for name in names if name.startswith("val/")) or ", ".join(names)
            return f"{flag} {monitor} is not a metric this model logs; choose one of: {logged}"
    if isinstance(error, MisconfigurationException):
        message = first_line(error, 1000)
        if "backend" in message or ("accelerator" in message.lower() and "not available" in message):
            message += " Use --trainer.accelerator cpu (or auto) on this machine."
        return message
    if isinstance(error, ArgumentError) or any(isinstance(c, ArgumentError) for c in causes):
        message = summarize_argument_error(str(error))
        # jsonargparse names a missing option by its key ('predict.input'), serve's and optimize's own
        # parsers by its bare name ('ckpt_path'); users type '--input', '--ckpt_path'.
        message = re.sub(
            r"(required: )(.*)$",
            lambda found: (
                found.group(1)
                + ", ".join(
                    f"--{name.removeprefix(f'{subcommand}.').lstrip('-')}" for name in found.group(2).split(", ")
                )
            ),
            message,
        )
        if re.search(r"required: .*--model\b", message):  # no --config at all: the model comes from one
            message += f"; start from a config, e.g. python train.py {subcommand} --config configs/circles.yaml"
        if 'expected "subcommand"' in message:  # no command at all: `fit` is only train.py's guess
            return f"{message} (see: python train.py --help)"
        return f"{message} (see: python train.py {subcommand} --help)"
    return None
