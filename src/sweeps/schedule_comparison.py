"""`python train.py compare_schedules --config ...`: train one task under each learning-rate
schedule, then print and save a table of their final metrics and times.

A grid sweep (src/sweeps/) over the schedule, without pruning: every run is an ordinary
`fit` (same config, seed and flags) with only the schedule changed; the runs land side by side
in lightning_logs/<name>_schedules/version_K/<schedule>/, so `tensorboard --logdir` on that
folder overlays their curves. A schedule that fails is reported and the others still run.
"""

import argparse
from pathlib import Path
from typing import Any

import optuna

from src.checkpointing import stop_on_signal
from src.checkpointing.run_folder import release_claim
from src.checkpointing.runs import claim_next_version
from src.cli.template_cli import TemplateCLI
from src.errors import StoppedBySignal, UserInputError
from src.sweeps.fit_config import check_one_device, logger_settings, model_metric, read_config, refuse_checkpoint
from src.sweeps.objective import Objective, optimize
from src.sweeps.report import write_tables
from src.sweeps.space import Param

SCHEDULES = ("constant", "step", "exponential", "cosine", "onecycle")


def schedule_flags(schedule: str, max_epochs: int, lr: float) -> list[str]:
    """CLI flags that switch a config to `schedule`, scaled to the run's length and LR:
    step drops the LR 10x every third of the epochs, exponential decays it 100x over the run."""
    key = "--model.init_args.scheduler"
    flags = [f"{key}.warmup_epochs", "0"]
    if schedule == "constant":
        return [*flags, f"{key}.name", "none"]
    if schedule == "step":
        return [*flags, f"{key}.name", "step", f"{key}.step_size", str(max(1, max_epochs // 3)), f"{key}.gamma", "0.1"]
    if schedule == "exponential":
        return [*flags, f"{key}.name", "exponential", f"{key}.final_lr", repr(lr / 100)]
    return [*flags, f"{key}.name", schedule]


def parse_options(args: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="train.py compare_schedules",
        description="Train the config under each LR schedule; all other options are `fit` options.",
        exit_on_error=False,
    )
    parser.add_argument(
        "--schedules",
        nargs="+",
        default=list(SCHEDULES),
        metavar="SCHEDULE",
        help=f"which schedules to compare, of {', '.join(SCHEDULES)}: `constant cosine`, `constant,cosine` "
        "or `[constant, cosine]` (default: all five)",
    )
    try:
        options, fit_args = parser.parse_known_args(args)
    except argparse.ArgumentError as error:
        raise UserInputError(f"{error} (see: python train.py compare_schedules --help)") from None
    options.schedules = schedule_names(options.schedules)
    refuse_checkpoint(fit_args, "compare_schedules")
    return options, fit_args


def schedule_names(given: list[str]) -> list[str]:
    """The schedules asked for, however the list is written: space- or comma-separated, or in brackets
    as a YAML list (as other list options of the CLI take it); each once, in the order given."""
    names = [name for token in given for name in token.replace(",", " ").strip("[] ").split()]
    names = [name.strip("[]'\"") for name in names]
    unknown = [name for name in names if name not in SCHEDULES]
    if unknown or not names:
        raise UserInputError(
            f"--schedules: {'invalid choice: ' + repr(unknown[0]) if unknown else 'no schedule given'}; choose "
            f"from {', '.join(SCHEDULES)} (see: python train.py compare_schedules --help)"
        )
    return list(dict.fromkeys(names))


def comparison_folder(config: Any) -> Path:
    """lightning_logs/<name>_schedules/version_K: a new K for every comparison, claimed at once (made
    empty here), so comparisons started side by side never share one."""
    logger = logger_settings(config, "compare_schedules")  # a local folder: refuses a remote save_dir
    parent = Path(logger["save_dir"]) / f"{logger['name']}_schedules"
    return parent / f"version_{claim_next_version(parent)}"


def compare_schedules(args: list[str]) -> list[dict[str, Any]]:
    """Run the comparison (a grid sweep over the schedule, in this order); returns one row per schedule."""
    options, fit_args = parse_options(args)
    config = read_config(fit_args)  # epochs, LR, logger, the model's metric
    check_one_device(config, "compare_schedules")
    fit_args = [*fit_args, "--trainer.devices", "1"]  # "auto" would start DDP on a machine with several GPUs
    max_epochs = config.trainer.max_epochs
    lr = float(config.model.init_args.optimizer.init_args.lr)
    metric, mode = model_metric(config)
    folder = comparison_folder(config)
    schedule = Param("schedule", "categorical", choices=tuple(options.schedules))
    study = optuna.create_study(
        sampler=optuna.samplers.GridSampler({"schedule": list(options.schedules)}),
        direction="maximize" if mode == "max" else "minimize",
    )
    for name in options.schedules:  # run them in the order asked, not the grid's shuffled order
        study.enqueue_trial({"schedule": name})
    objective = Objective(
        TemplateCLI,
        fit_args,
        [schedule],
        metric,
        mode,
        run_folder=lambda trial, seed: (folder.parent, folder.name, trial.params["schedule"]),
        seeds=[None],  # the config's seed, as `fit` would
        flags_for=lambda values: schedule_flags(values["schedule"], max_epochs, lr),
        prune=False,  # every schedule runs to its end: the point is to compare them whole
        stop_message=lambda trial, name: stopped_comparison(trial, name, folder, options.schedules),
    )
    try:
        with stop_on_signal("compare_schedules", f"the schedules that finished are in {folder}"):
            optimize(study, objective, len(options.schedules), None)
    except StoppedBySignal:
        finished = [trial for trial in study.trials if trial.state == optuna.trial.TrialState.COMPLETE]
        if finished:  # the schedules that ran to their end keep their table
            write_tables(folder, comparison_rows(finished, options.schedules, metric), "comparison")
        release_claim(folder)  # stopped before any trial wrote: no empty version_K left behind
        raise
    except BaseException:
        release_claim(folder)
        raise
    rows = comparison_rows(study.trials, options.schedules, metric)
    csv_path, markdown_path = write_tables(folder, rows, "comparison")
    print(f"\nLR schedules on {folder} ({max_epochs} epochs, lr {lr}):")
    print(markdown_path.read_text(), end="")
    print(f"Saved: {csv_path} and {markdown_path}\nCurves side by side: tensorboard --logdir {folder}")
    return rows


def stopped_comparison(trial: optuna.Trial, signal_name: str, folder: Path, schedules: list[str]) -> str:
    """What a signal that stopped the run of one schedule leaves, and the command for the rest."""
    schedule = trial.params["schedule"]
    done = [t.params["schedule"] for t in trial.study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    kept = f"the table of {', '.join(done)} is in {folder / 'comparison.csv'}; " if done else ""
    rest = " ".join(schedules[schedules.index(schedule) :])
    return (
        f"{signal_name} received: the {schedule} run was stopped; {kept}compare the rest with the same command "
        f"and --schedules {rest}"
    )


def comparison_rows(trials: list[optuna.trial.FrozenTrial], schedules: list[str], metric: str) -> list[dict[str, Any]]:
    """One row per schedule (in the order asked): its best validation, test metrics, final LR and time."""
    rows = []
    for trial in sorted(trials, key=lambda t: schedules.index(t.params["schedule"])):
        run = (trial.user_attrs.get("runs") or [{}])[0]
        test = run.get("test", {})
        rows.append(
            {
                "schedule": trial.params["schedule"],
                f"val/{metric}_best": float(run.get("best", float("nan"))),
                f"test/{metric}": float(test.get(f"test/{metric}", float("nan"))),
                "test/loss": float(test.get("test/loss", float("nan"))),
                "final_lr": f"{run['final_lr']:.3g}" if run.get("final_lr") is not None else "-",
                "seconds": f"{run['seconds']:.1f}" if "seconds" in run else "-",
            }
        )
        if trial.user_attrs.get("note"):
            print(f"{trial.params['schedule']}: {trial.user_attrs['note']}")
    return rows
