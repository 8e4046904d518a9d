"""The sweep command's own flags, `--sweep.*`, parsed by jsonargparse; every other flag is `fit`'s.

jsonargparse parses whole command lines only (it has no parse_known_args, so that a typo never
passes unnoticed), so the `--sweep.*` flags are taken out of the command line first and the rest
goes to each trial's `fit`, which parses and checks it.
"""

import itertools
import re
from argparse import ArgumentError
from dataclasses import dataclass

from jsonargparse import ArgumentParser

from src.cli.user_errors import summarize_argument_error
from src.errors import UserInputError
from src.sweeps.fit_config import refuse_checkpoint
from src.sweeps.sampling import SAMPLERS, make_pruner

HELP = "(see: python train.py sweep --help)"


@dataclass(frozen=True)
class SweepOptions:
    """The study's options; every other option is a `fit` option of every trial (--config CONFIG first).

    Args:
        space: YAML file (or inline YAML) of config keys to sweep.
        n_trials: trials this worker runs (0: only the report of the study as it stands).
        timeout: seconds after which no new trial starts.
        sampler: tpe, random or grid.
        sampler_seed: seed of the sampler (default: random).
        pruner: median or none.
        seeds: fits per trial (seeds s, s+1, ...); the study optimises their mean.
        storage: database URL (default sqlite:///<save_dir>/<name>_sweep/optuna.db).
        study_name: join this study (default: a new study_K).
    """

    space: str
    n_trials: int = 20
    timeout: float | None = None
    sampler: str = "tpe"
    sampler_seed: int | None = None
    pruner: str = "median"
    seeds: int = 1
    storage: str | None = None
    study_name: str | None = None


def split_flags(args: list[str]) -> tuple[list[str], list[str]]:
    """The sweep's own flags (`--sweep.KEY VALUE`, `--sweep.KEY=VALUE`, `--sweep FILE`, `--help`)
    and the `fit` flags, each in the order given."""
    own, fit = [], []
    tokens = iter(args)
    for token in tokens:
        name = token.split("=", 1)[0]
        if name in ("-h", "--help"):
            own.append(token)
        elif name == "--sweep" or name.startswith("--sweep."):
            own.append(token)
            if "=" not in token:
                own.extend(itertools.islice(tokens, 1))  # its value
        else:
            fit.append(token)
    return own, fit


def parse_options(args: list[str]) -> tuple[SweepOptions, list[str]]:
    """The sweep's options and the `fit` arguments; every mistake in the sweep's is one line."""
    own, fit_args = split_flags(args)
    parser = ArgumentParser(
        prog="train.py sweep",
        description="An Optuna study over the config's values; every trial is a `fit` run of its own.",
        exit_on_error=False,
    )
    parser.add_class_arguments(SweepOptions, "sweep")
    try:
        parsed = parser.parse_args(own)
    except ArgumentError as error:
        raise UserInputError(f"{option_error(str(error))} {HELP}") from None
    options = SweepOptions(**{key: value for key, value in vars(parsed.sweep).items() if not key.startswith("__")})
    if options.n_trials < 0 or options.seeds < 1 or (options.timeout is not None and options.timeout <= 0):
        raise UserInputError("--sweep.n_trials must be >= 0, --sweep.seeds >= 1 and --sweep.timeout > 0")
    make_pruner(options.pruner)  # a bad name fails before anything is parsed or opened
    if options.sampler not in SAMPLERS:
        raise UserInputError(f"--sweep.sampler {options.sampler!r}: choose one of {', '.join(SAMPLERS)}")
    refuse_checkpoint(fit_args, "sweep")
    return options, fit_args


def option_error(text: str) -> str:
    """jsonargparse's report on the sweep's flags as one line that names each flag as typed."""
    if text.startswith("unrecognized arguments:"):
        return f"unknown option {text.split()[2].split('=')[0]}"
    return re.sub(r"(?<![-\w.])sweep(?=[.:])", "--sweep", summarize_argument_error(text))
