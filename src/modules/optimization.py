"""Learning-rate schedules whose length comes from the run, validated when the config is parsed.

The optimizer itself is any `torch.optim` class (or a third-party one) given by class path,
LightningCLI's `OptimizerCallable`; the schedules here add what a bare scheduler class cannot
know from the config alone: one-cycle's total steps, cosine's last epoch, exponential decay
to a final LR, warm-up.
"""

import math
from dataclasses import dataclass, fields
from typing import Any, Literal

import torch
from jsonargparse.typing import NonNegativeFloat, NonNegativeInt, OpenUnitInterval, PositiveFloat, PositiveInt
from torch.optim import lr_scheduler

from src.errors import UserInputError


class _PlainValues:
    """Turns jsonargparse's validated number types back into int/float after checking.

    Scheduler states keep these values, and checkpoints must hold only builtin types to
    load with `torch.load(weights_only=True)`.
    """

    def __post_init__(self) -> None:
        for field in fields(self):  # type: ignore[arg-type]
            value = getattr(self, field.name)
            if isinstance(value, bool) or value is None:
                continue
            if isinstance(value, int):
                object.__setattr__(self, field.name, int(value))
            elif isinstance(value, float):
                object.__setattr__(self, field.name, float(value))


@dataclass(frozen=True)
class SchedulerConfig(_PlainValues):
    """Which learning-rate schedule, counted in epochs (one-cycle is stepped every batch).

    - `step`: multiply the LR by `gamma` every `step_size` epochs.
    - `exponential`: multiply it by `gamma` every epoch; or, with `final_lr` set, derive gamma
      so that the LR decays from the optimizer's `lr` to `final_lr` over the run's epochs.
    - `cosine`: cosine annealing to `final_lr` (default 0), reached as the last epoch ends.
    - `onecycle`: rise from lr / `div_factor` to the optimizer's `lr` over `pct_start` of all
      steps, then fall to lr / `div_factor` / `final_div_factor`; both along a cosine
      (`anneal_strategy` "cos") or straight lines ("linear", as airbench's schedule). With
      `cycle_momentum` (torch's default) the momentum moves the other way, between 0.95 and
      0.85; without it, the optimizer's own momentum stays (airbench's choice).
    - `plateau`: multiply by `factor` when `monitor` has not improved for `patience` validations
      (it steps at the end of each epoch that validates: trainer.check_val_every_n_epoch);
      `mode` (min or max) defaults to the way the model's metric improves (`val/acc`: max).
    `warmup_epochs` > 0 ramps the LR up linearly before step, exponential or cosine.
    """

    name: Literal["none", "step", "exponential", "cosine", "onecycle", "plateau"] = "none"
    warmup_epochs: NonNegativeInt = 0
    step_size: PositiveInt = 10
    gamma: PositiveFloat = 0.1
    final_lr: NonNegativeFloat | None = None
    pct_start: OpenUnitInterval = 0.25
    div_factor: PositiveFloat = 25.0
    final_div_factor: PositiveFloat = 1e4
    anneal_strategy: Literal["cos", "linear"] = "cos"
    cycle_momentum: bool = True
    monitor: str = "val/loss"
    mode: Literal["min", "max"] | None = None
    factor: PositiveFloat = 0.1
    patience: NonNegativeInt = 10


# The fields of SchedulerConfig that each schedule reads (the others are ignored by it).
SCHEDULE_FIELDS: dict[str, tuple[str, ...]] = {
    "none": (),
    "step": ("warmup_epochs", "step_size", "gamma"),
    "exponential": ("warmup_epochs", "gamma", "final_lr"),
    "cosine": ("warmup_epochs", "final_lr"),
    "onecycle": ("pct_start", "div_factor", "final_div_factor", "anneal_strategy", "cycle_momentum"),
    "plateau": ("monitor", "mode", "factor", "patience"),
}


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    config: SchedulerConfig,
    max_epochs: int | None,
    total_steps: int | None,
    epochs_per_validation: int | None = 1,
) -> dict[str, Any] | None:
    """A Lightning `lr_scheduler` dict for `config`, or None for a constant LR.

    `max_epochs`, `total_steps` (None for a run without an end) and `epochs_per_validation`
    come from the Trainer; schedules that end at the run's last epoch or step need those,
    and `plateau` steps only on the epochs that validate, where its metric is fresh.
    """
    if config.name == "none":
        if config.warmup_epochs:
            return {"scheduler": _warmup(optimizer, config.warmup_epochs), "interval": "epoch"}
        return None
    if config.name == "onecycle":
        if config.warmup_epochs:
            raise UserInputError("scheduler onecycle has its own warm-up: set model.scheduler.warmup_epochs to 0")
        if total_steps is None:
            raise UserInputError(
                "the one-cycle schedule needs a run with an end: set trainer.max_epochs or trainer.max_steps"
            )
        # OneCycleLR divides by (warm-up steps - 1): exactly one warm-up step fails deep inside torch.
        if math.isclose(config.pct_start * total_steps, 1.0):
            raise UserInputError(
                f"the one-cycle schedule's warm-up (pct_start {config.pct_start}) is exactly one of this run's "
                f"{total_steps} optimizer steps (per process), which OneCycleLR cannot divide: raise "
                "trainer.max_epochs, lower data.batch_size, or change model.scheduler.pct_start"
            )
        base_lr = optimizer.param_groups[0]["lr"]
        scheduler = lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=base_lr,
            total_steps=total_steps,
            pct_start=config.pct_start,
            div_factor=config.div_factor,
            final_div_factor=config.final_div_factor,
            anneal_strategy=config.anneal_strategy,
            cycle_momentum=config.cycle_momentum,
        )
        return {"scheduler": scheduler, "interval": "step"}
    if config.name == "plateau":
        if config.warmup_epochs:
            raise UserInputError("scheduler plateau cannot follow a warm-up: set model.scheduler.warmup_epochs to 0")
        scheduler = lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=config.mode or "min", factor=config.factor, patience=config.patience
        )
        if epochs_per_validation is None:
            raise UserInputError(
                "scheduler plateau steps at the end of the epochs that validate: set "
                "trainer.check_val_every_n_epoch (not a val_check_interval in steps)"
            )
        # Stepped every `epochs_per_validation` epochs, at the ends of those that validate, where
        # its metric is fresh (a misspelled monitor still stops the run in one line).
        return {
            "scheduler": scheduler,
            "interval": "epoch",
            "frequency": epochs_per_validation,
            "monitor": config.monitor,
        }

    decay_epochs = None
    if max_epochs is not None and max_epochs > 0:
        decay_epochs = max_epochs - config.warmup_epochs
        if decay_epochs < 1:
            raise UserInputError(
                f"model.scheduler.warmup_epochs ({config.warmup_epochs}) must be below "
                f"trainer.max_epochs ({max_epochs})"
            )
    if config.name == "step":
        main: lr_scheduler.LRScheduler = lr_scheduler.StepLR(optimizer, config.step_size, config.gamma)
    elif config.name == "exponential":
        gamma = config.gamma
        if config.final_lr is not None:
            if decay_epochs is None:
                raise UserInputError("exponential decay to final_lr needs trainer.max_epochs to be set")
            if config.final_lr <= 0:
                raise UserInputError("model.scheduler.final_lr must be > 0 for exponential decay")
            gamma = (config.final_lr / optimizer.param_groups[0]["lr"]) ** (1 / decay_epochs)
        main = lr_scheduler.ExponentialLR(optimizer, gamma)
    else:
        if decay_epochs is None:
            raise UserInputError("cosine annealing needs trainer.max_epochs to be set")
        main = lr_scheduler.CosineAnnealingLR(optimizer, T_max=decay_epochs, eta_min=config.final_lr or 0.0)
    if config.warmup_epochs:
        warmup = _warmup(optimizer, config.warmup_epochs)
        main = lr_scheduler.SequentialLR(optimizer, [warmup, main], milestones=[config.warmup_epochs])
    return {"scheduler": main, "interval": "epoch"}


def _warmup(optimizer: torch.optim.Optimizer, epochs: int) -> lr_scheduler.LRScheduler:
    """Linear ramp from lr / (epochs + 1) up to lr over `epochs` epochs."""
    return lr_scheduler.LinearLR(optimizer, start_factor=1 / (epochs + 1), total_iters=epochs)


# What fixes a schedule's length in a scheduler's state: one-cycle's steps, cosine's decay epochs,
# the rate of an exponential decay to final_lr. A resumed scheduler takes these from its checkpoint.
PLAN_KEYS = ("total_steps", "T_max", "gamma")


def schedule_plan(state: dict[str, Any]) -> dict[str, Any]:
    """The length-fixing values of a scheduler's `state_dict()` (a warm-up's inner schedules included)."""
    plan = {key: state[key] for key in PLAN_KEYS if key in state}
    for inner in state.get("_schedulers", []):
        plan |= schedule_plan(inner)
    return plan


def check_resumed_plan(
    restored: dict[str, Any],
    planned: dict[str, Any],
    config: SchedulerConfig,
    max_epochs: int | None,
    steps: int | None,
) -> None:
    """Refuse a resume whose checkpoint holds a schedule planned for another run length than this
    run's: training past a one-cycle schedule fails, a cosine one rises again after its end, and a
    run that ends before its schedule does stops at a high learning rate, never annealed. Only the
    values both plans hold are compared (the LR finder swaps in a scheduler of its own)."""
    if all(restored[key] == planned[key] for key in restored.keys() & planned.keys()):
        return
    fresh = "or start a new run (--model.init_from <checkpoint> starts it from these weights)"
    if "total_steps" in restored and restored["total_steps"] != planned.get("total_steps") and steps is not None:
        old = restored["total_steps"]
        ending = "" if old < steps else " (it would end before the schedule does, its LR never annealed)"
        raise UserInputError(
            f"the checkpoint's one-cycle schedule was planned for {old} steps but this run has {steps}{ending}: "
            "resume with the run's original trainer.max_epochs and data.batch_size (and any other setting that "
            f"sizes an epoch), {fresh}"
        )
    if "T_max" in restored and max_epochs is not None:
        old = restored["T_max"] + config.warmup_epochs
        ending = (
            f" (its LR would rise again after epoch {old})"
            if old < max_epochs
            else " (it would end before the schedule does, its LR never annealed)"
        )
        raise UserInputError(
            f"the checkpoint's cosine schedule was planned for {old} epochs but this run has {max_epochs}{ending}: "
            f"resume with --trainer.max_epochs {old}, {fresh}"
        )
    raise UserInputError(
        f"the checkpoint's {config.name} schedule was planned for another trainer.max_epochs than this run's "
        f"({max_epochs}): its LR would not end at model.scheduler.final_lr. Resume with the run's original "
        f"trainer.max_epochs, {fresh}"
    )
