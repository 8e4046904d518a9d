"""`python train.py sweep --config CONFIG --sweep.space SPACE.yaml [--sweep.* ...] [fit options]`.

An Optuna study over the config's values: every trial is an ordinary `fit` of the config with
the trial's values as flags, in lightning_logs/<name>_sweep/<study>/trial_<n>/ (with
`--sweep.seeds K`, trial_<n>/seed_<s>/), so `tensorboard --logdir` on the study's folder shows
them side by side. The metric and its direction are the model's (`val/<best_metric>`, the best
validation of the run); a trial is pruned when its validation metric falls behind the median
of the earlier trials at the same validation. A trial that diverges or whose values do not go
together is recorded as failed, with its reason, and the study goes on.

The study lives in a database (SQLite file lightning_logs/<name>_sweep/optuna.db unless
`--sweep.storage URL`): start the same command with the same `--sweep.study_name` on as many
machines as you like and they share one study. At the end: trials.csv, trials.md, best.yaml
(the best trial's config, for `fit --config`) and Optuna's plots in the study's folder.
"""

from pathlib import Path
from typing import Any

import optuna

from src.checkpointing import stop_on_signal
from src.cli.template_cli import TemplateCLI
from src.errors import UserInputError
from src.sweeps.fit_config import check_one_device, logger_settings, model_metric, read_config
from src.sweeps.fixed_settings import STUDY_ATTR, check_same_settings, fixed_settings, space_settings
from src.sweeps.objective import Objective, optimize
from src.sweeps.options import parse_options
from src.sweeps.report import report
from src.sweeps.sampling import make_pruner, make_sampler
from src.sweeps.space import parse_space, read_space, resolve_key
from src.sweeps.study_storage import open_storage, open_study, without_password


def sweep(args: list[str], cli_class: type[TemplateCLI] = TemplateCLI) -> optuna.Study:
    """Run (or join) the study; returns it."""
    options, fit_args = parse_options(args)
    params = parse_space(read_space(options.space))
    config = read_config(fit_args, cli_class)
    check_one_device(config, "sweep")
    devices = config.trainer.get("devices") or "auto"  # what best.yaml gets back
    fit_args = [*fit_args, "--trainer.devices", "1"]  # "auto" would start DDP on a machine with several GPUs
    for param in params:
        resolve_key(param.key, config)  # an unknown key fails here, in one line
    metric, mode = model_metric(config)
    logger = logger_settings(config, "sweep")
    parent = Path(logger["save_dir"]) / f"{logger['name']}_sweep"
    sampler = make_sampler(options.sampler, params, options.sampler_seed)
    if options.n_trials == 0 and options.storage is None and not (parent / "optuna.db").is_file():
        check_study_to_report(None, options.study_name, where=str(parent / "optuna.db"))  # no database made for it
    storage = open_storage(options.storage or f"sqlite:///{parent / 'optuna.db'}")
    direction = "maximize" if mode == "max" else "minimize"
    pruner = make_pruner(options.pruner)
    if options.n_trials == 0:  # a report: of a study that exists, never of a new empty one
        check_study_to_report(storage, options.study_name, where=options.storage or f"{parent / 'optuna.db'}")
    study, created = open_study(storage, options.study_name, sampler, pruner, f"val/{metric}", direction, parent)
    study_name = study.study_name
    if options.n_trials != 0:  # a report alone adds no trial
        settings = fixed_settings(config, [resolve_key(param.key, config) for param in params])
        settings |= {"sweep.seeds": str(options.seeds), **space_settings(params)}
        check_same_settings(study, settings, created)
        study.set_user_attr("metric", f"val/{metric}")
    seeds: list[int | None] = [None] if options.seeds == 1 else [first_seed(config) + k for k in range(options.seeds)]

    def run_folder(trial: optuna.Trial, seed: int | None) -> tuple[Path, str, str]:
        version = f"trial_{trial.number}" + (f"/seed_{seed}" if seed is not None else "")
        return parent, study_name, version

    objective = Objective(cli_class, fit_args, params, metric, mode, run_folder, seeds, prune=options.pruner != "none")
    each = f", {options.seeds} seeds each" if options.seeds > 1 else ""
    where = without_password(options.storage) if options.storage else parent / "optuna.db"
    print(
        f"Study {study_name} in {where}: val/{metric} ({direction}), "
        f"{options.sampler} sampler, {options.n_trials} trials{each}"
    )
    # Outside a trial's fit (its flags parsed, its classes built, between trials, the report), a signal
    # still ends the sweep in one line: the trial it hits is queued to run again (Objective.stopped).
    go_on = f"the trials it finished are kept; go on with the same command and --sweep.study_name {study_name}"
    with stop_on_signal("the sweep", go_on):
        optimize(study, objective, options.n_trials, options.timeout)
        seeds_run = options.seeds if options.n_trials != 0 else recorded_seeds(study, options.seeds)
        restored = {
            "seed_everything": config.seed_everything,
            "trainer.devices": devices,
            "checkpoint.dirpath": (config.get("checkpoint") or {}).get("dirpath"),
        }
        report(study, parent / study_name, metric, seeds_run, logger, restored)
    if options.n_trials != 0:
        check_a_trial_completed(study)
    return study


def recorded_seeds(study: optuna.Study, given: int) -> int:
    """The seeds per trial the study's workers ran with (a report alone need not repeat
    `--sweep.seeds`); `given` for a study from before they were recorded."""
    recorded = (study.user_attrs.get(STUDY_ATTR) or {}).get("sweep.seeds")
    return int(recorded) if recorded is not None else given


def check_a_trial_completed(study: optuna.Study) -> None:
    """A study whose every trial failed ends as a failed command (most often one mistake in the
    config that each trial repeated), naming the first trial's reason."""
    if study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        return
    failed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))
    if failed:
        first = failed[0]
        raise UserInputError(
            f"no trial of study {study.study_name} completed ({len(failed)} failed); trial {first.number} "
            f"{first.user_attrs.get('note') or 'failed'}: fix that and run the sweep again"
        )


def check_study_to_report(storage: optuna.storages.BaseStorage | None, name: str | None, where: str) -> None:
    """`--sweep.n_trials 0` writes the report of a study the storage (None: none yet) holds: it needs
    that study's name."""
    names = [study.study_name for study in storage.get_all_studies()] if storage is not None else []
    if name in names:
        return
    where = without_password(where)
    held = f"{where} holds {', '.join(names)}" if names else f"{where} holds no study yet"
    asked = f"there is no study {name!r} ({held})" if name else f"give its --sweep.study_name ({held})"
    raise UserInputError(f"--sweep.n_trials 0 writes the report of an existing study: {asked}")


def first_seed(config: Any) -> int:
    """The config's seed_everything when it is a number (seeds s, s+1, ... follow it), else 0."""
    seed = config.seed_everything
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else 0
