"""Which values a study tries next (its sampler) and when it stops a trial early (its pruner)."""

from collections.abc import Sequence

import optuna

from src.errors import UserInputError
from src.sweeps.space import Param

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "none")


def make_sampler(name: str, params: Sequence[Param], seed: int | None) -> optuna.samplers.BaseSampler:
    """TPE (Bayesian), random, or the grid of `params`' values (the grid needs each one's values)."""
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        return optuna.samplers.GridSampler({param.key: param.grid_values() for param in params}, seed=seed)
    raise UserInputError(f"--sweep.sampler {name!r}: choose one of {', '.join(SAMPLERS)}")


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    """Median: stop a trial whose validation metric is worse than the median of the earlier
    trials at the same validation (the k-th of each), once 3 trials have finished."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise UserInputError(f"--sweep.pruner {name!r}: choose one of {', '.join(PRUNERS)}")
