"""`python train.py sweep --config CONFIG --sweep.space SPACE.yaml [--sweep.* ...] [fit options]`.

An Optuna study over the config's values: every trial is an ordinary `fit` of the config with
the trial's values as flags, in lightning_logs/<name>_sweep/<study>/trial_<n>/ (with
`--sweep.seeds K`, trial_<n>/seed_<s>/), so `tensorboard --logdir` on the study's folder shows
them side by side. The metric and its direction are the model's (`val/<best_metric>`, the best
validation of the run); a trial is pruned when its validation metric falls behind the median
of the earlier trials at the same epoch. A trial that diverges or whose values do not go
together is recorded as failed, with its reason, and the study goes on.

The study lives in a database (SQLite file lightning_logs/<name>_sweep/optuna.db unless
`--sweep.storage URL`): start the same command with the same `--sweep.study_name` on as many
machines as you like and they share one study. At the end: trials.csv, trials.md, best.yaml
(the best trial's config, for `fit --config`) and Optuna's plots in the study's folder.
"""

import argparse
import importlib
import inspect
import math
import re
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import torch

from src.cli.template_cli import TemplateCLI
from src.cli.user_errors import user_message
from src.errors import UserInputError
from src.tools.sweep import (
    PRUNERS,
    SAMPLERS,
    Param,
    ReportToTrial,
    TrialFailed,
    flag_value,
    make_pruner,
    make_sampler,
    markdown_table,
    next_study_name,
    open_storage,
    parse_space,
    read_space,
    resolve_key,
    save_plots,
    trial_rows,
    write_best_config,
    write_tables,
)

# Trials are CLI runs started from Python, on purpose.
warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended to run from within Python")

# (save_dir, name, version) of the logger for a trial's run with a seed (None: the config's)
RunFolder = Callable[[optuna.Trial, int | None], tuple[Path, str, str]]


class _Parsed(Exception):
    def __init__(self, config: Any) -> None:
        self.config = config


def read_config(fit_args: list[str], cli_class: type[TemplateCLI] = TemplateCLI) -> Any:
    """The fully resolved `fit` config of these arguments (base.yaml, --config files, flags),
    parsed and validated as `fit` would, but with nothing instantiated or run."""

    class ParseOnly(cli_class):  # type: ignore[misc,valid-type]
        def before_instantiate_classes(self) -> None:
            super().before_instantiate_classes()
            raise _Parsed(self.config[self.subcommand])

    try:
        ParseOnly(args=["fit", *fit_args])
    except _Parsed as parsed:
        return parsed.config
    raise AssertionError("the config was not parsed")  # pragma: no cover


def model_metric(config: Any) -> tuple[str, str]:
    """The model class's own best metric and its mode: ('acc', 'max'), ('mse', 'min')."""
    module_name, _, class_name = config.model.class_path.rpartition(".")
    model_class = getattr(importlib.import_module(module_name), class_name)
    return model_class.best_metric, model_class.best_mode


def logger_settings(config: Any, command: str) -> dict[str, Any]:
    """The configured logger's save_dir and name; a sweep moves each run by these and `version`."""
    logger = config.trainer.logger
    class_path = getattr(logger, "class_path", None)
    if not class_path:
        raise UserInputError(
            f"{command} needs one trainer.logger (as in configs/base.yaml) to give each trial a folder"
        )
    module_name, _, class_name = class_path.rpartition(".")
    parameters = inspect.signature(getattr(importlib.import_module(module_name), class_name)).parameters
    if not {"save_dir", "name", "version"} <= set(parameters):
        raise UserInputError(
            f"{command} gives each trial its own folder through the logger's save_dir, name and version, "
            f"which {class_name} does not take: use TensorBoardLogger or CSVLogger"
        )
    return {"save_dir": logger.init_args.save_dir, "name": logger.init_args.name or "", "version": None}


def refuse_checkpoint(fit_args: list[str], command: str) -> None:
    if any(arg == "--ckpt_path" or arg.startswith("--ckpt_path=") for arg in fit_args):
        raise UserInputError(f"{command} trains every trial from scratch: drop --ckpt_path")


# --- running trials -------------------------------------------------------------------------
def run_fit(cli_class: type[TemplateCLI], args: list[str], callback: ReportToTrial) -> tuple[TemplateCLI, float]:
    """One ordinary `fit` of the CLI (and its test of the best checkpoint), with `callback` added."""

    class TrialCLI(cli_class):  # type: ignore[misc,valid-type]
        def instantiate_trainer(self, **kwargs: Any) -> Any:
            trainer = super().instantiate_trainer(**kwargs)
            trainer.callbacks.append(callback)
            return trainer

    start = time.perf_counter()
    cli = TrialCLI(args=["fit", *args])
    return cli, time.perf_counter() - start


def failure_reason(error: BaseException) -> str | None:
    """One line for a trial that failed by its values (None: a bug, which stops the sweep)."""
    if isinstance(error, torch.OutOfMemoryError):
        return "out of memory (lower data.batch_size or the net's size)"
    return user_message(error, "fit")  # UserInputError (NaN loss included), bad values, misconfiguration


class Objective:
    """Runs a trial: its values as flags, one `fit` per seed; returns the mean of their metric."""

    def __init__(
        self,
        cli_class: type[TemplateCLI],
        fit_args: list[str],
        params: list[Param],
        metric: str,
        mode: str,
        run_folder: RunFolder,
        seeds: list[int | None],
        flags_for: Callable[[dict[str, Any]], list[str]] | None = None,
        prune: bool = True,
    ) -> None:
        self.cli_class, self.fit_args, self.params = cli_class, fit_args, params
        self.metric, self.mode, self.run_folder, self.seeds, self.prune = metric, mode, run_folder, seeds, prune
        self.flags_for = flags_for or (lambda values: [f for k, v in values.items() for f in (f"--{k}", flag_value(v))])

    def __call__(self, trial: optuna.Trial) -> float:
        values = {param.key: param.suggest(trial) for param in self.params}
        print(f"\n=== trial {trial.number}: {', '.join(f'{k}={v}' for k, v in values.items())} ===", flush=True)
        runs: list[dict[str, Any]] = []
        try:
            for index, seed in enumerate(self.seeds):
                self.run_seed(trial, values, seed, runs, report=self.prune and index == 0)
        except optuna.TrialPruned as pruned:
            self.record(trial, runs, note=f"pruned: {pruned}")
            raise
        except Exception as error:
            reason = failure_reason(error)
            if reason is None:
                raise  # a bug: keep the traceback
            self.record(trial, runs, note=f"failed: {reason}")
            print(f"trial {trial.number} failed: {reason}", flush=True)
            raise TrialFailed(reason) from None
        return self.record(trial, runs)

    def run_seed(
        self, trial: optuna.Trial, values: dict[str, Any], seed: int | None, runs: list[dict[str, Any]], report: bool
    ) -> None:
        """One `fit` with this seed; what it measured is added to `runs`, even when it fails."""
        save_dir, name, version = self.run_folder(trial, seed)
        flags = [*self.flags_for(values), *(["--seed_everything", str(seed)] if seed is not None else [])]
        flags += ["--trainer.logger.init_args.save_dir", str(save_dir), "--trainer.logger.init_args.name", name]
        flags += ["--trainer.logger.init_args.version", version]
        callback = ReportToTrial(f"val/{self.metric}", trial if report else None)
        run: dict[str, Any] = {"seed": seed, "dir": str(Path(save_dir) / name / version)}
        runs.append(run)
        start = time.perf_counter()
        try:
            cli, seconds = run_fit(self.cli_class, [*self.fit_args, *flags], callback)
        finally:
            run["seconds"] = time.perf_counter() - start
            run["validations"] = callback.values
        values_seen = [value for _, value in callback.values if math.isfinite(value)]
        if not values_seen:
            raise UserInputError(
                f"no finite val/{self.metric}: no validation ran, or it never logged the metric "
                "(lower --trainer.check_val_every_n_epoch or raise --trainer.max_epochs)"
            )
        run["best"] = max(values_seen) if self.mode == "max" else min(values_seen)
        test = cli.test_results[0] if cli.test_results else {}
        run["test"] = {key: float(value) for key, value in test.items()}
        run["final_lr"] = float(cli.trainer.optimizers[0].param_groups[0]["lr"]) if cli.trainer.optimizers else None
        if cli.trainer.log_dir is not None:
            run["dir"] = str(cli.trainer.log_dir)

    def record(self, trial: optuna.Trial, runs: list[dict[str, Any]], note: str = "") -> float:
        """Keeps what the runs measured in the trial (every worker's report reads it from the storage)."""
        bests = [run["best"] for run in runs if "best" in run]
        value = statistics.fmean(bests) if bests else float("nan")
        if note.startswith("pruned") and runs and runs[0].get("validations"):  # the best it reached
            seen = [v for _, v in runs[0]["validations"] if math.isfinite(v)]
            value = (max(seen) if self.mode == "max" else min(seen)) if seen else value
        attrs: dict[str, Any] = {
            "runs": runs,
            "seconds": sum(run["seconds"] for run in runs),
            "value": value,
            "std": statistics.stdev(bests) if len(bests) > 1 else (0.0 if bests else float("nan")),
            "note": note,
        }
        for key in (f"test/{self.metric}", "test/loss"):
            tested = [run["test"][key] for run in runs if key in run.get("test", {})]
            attrs[key] = statistics.fmean(tested) if tested else float("nan")
        for key, attr in attrs.items():
            trial.set_user_attr(key, attr)
        return value


class _QuietFailures:
    """Optuna logs a trial that raised with its traceback; a failed trial's reason is enough."""

    def filter(self, record: Any) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], TrialFailed):
            record.exc_info = None
        return not record.getMessage().endswith("failed with value None.")  # said just before


def optimize(study: optuna.Study, objective: Objective, n_trials: int | None, timeout: float | None) -> None:
    logger = optuna.logging.get_logger("optuna")
    quiet = _QuietFailures()
    logger.addFilter(quiet)
    try:
        study.optimize(objective, n_trials=n_trials, timeout=timeout, catch=(TrialFailed,), gc_after_trial=True)
    finally:
        logger.removeFilter(quiet)


# --- the command ----------------------------------------------------------------------------
def parse_options(args: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="train.py sweep",
        description="An Optuna study over the config's values; every other option is a `fit` option "
        "(--config CONFIG first). Every trial is a `fit` run of its own.",
        exit_on_error=False,
    )
    add = parser.add_argument
    add("--sweep.space", dest="space", required=True, help="YAML file (or inline YAML) of config keys to sweep")
    add("--sweep.n_trials", dest="n_trials", type=int, default=20, help="trials this worker runs (20; 0: report only)")
    add("--sweep.timeout", dest="timeout", type=float, help="seconds after which no new trial starts")
    add("--sweep.sampler", dest="sampler", default="tpe", help=f"{' | '.join(SAMPLERS)} (default tpe)")
    add("--sweep.sampler_seed", dest="sampler_seed", type=int, help="seed of the sampler (default: random)")
    add("--sweep.pruner", dest="pruner", default="median", help=f"{' | '.join(PRUNERS)} (default median)")
    add("--sweep.seeds", dest="seeds", type=int, default=1, help="fits per trial (seeds s, s+1, ...); mean optimised")
    add("--sweep.storage", dest="storage", help="database URL (default sqlite:///<save_dir>/<name>_sweep/optuna.db)")
    add("--sweep.study_name", dest="study_name", help="join this study (default: a new study_K)")
    try:
        options, fit_args = parser.parse_known_args(args)
    except argparse.ArgumentError as error:
        raise UserInputError(f"{error} (see: python train.py sweep --help)") from None
    if unknown := [arg for arg in fit_args if arg.startswith("--sweep.")]:
        raise UserInputError(f"unknown option {unknown[0].split('=')[0]} (see: python train.py sweep --help)")
    if options.n_trials < 0 or options.seeds < 1 or (options.timeout is not None and options.timeout <= 0):
        raise UserInputError("--sweep.n_trials must be >= 0, --sweep.seeds >= 1 and --sweep.timeout > 0")
    make_pruner(options.pruner)  # a bad name fails before anything is parsed or opened
    if options.sampler not in SAMPLERS:
        raise UserInputError(f"--sweep.sampler {options.sampler!r}: choose one of {', '.join(SAMPLERS)}")
    refuse_checkpoint(fit_args, "sweep")
    return options, fit_args


def sweep(args: list[str], cli_class: type[TemplateCLI] = TemplateCLI) -> optuna.Study:
    """Run (or join) the study; returns it."""
    options, fit_args = parse_options(args)
    params = parse_space(read_space(options.space))
    config = read_config(fit_args, cli_class)
    if (config.trainer.get("num_nodes") or 1) > 1 or config.trainer.get("devices") not in ("auto", 1, "1", None):
        raise UserInputError(
            "sweep runs each trial in this one process: drop --trainer.devices/--trainer.num_nodes "
            "(start several sweep workers with the same --sweep.study_name instead)"
        )
    devices = config.trainer.get("devices") or "auto"  # what best.yaml gets back
    fit_args = [*fit_args, "--trainer.devices", "1"]  # "auto" would start DDP on a machine with several GPUs
    for param in params:
        resolve_key(param.key, config)  # an unknown key fails here, in one line
    metric, mode = model_metric(config)
    logger = logger_settings(config, "sweep")
    parent = Path(logger["save_dir"]) / f"{logger['name']}_sweep"
    sampler = make_sampler(options.sampler, params, options.sampler_seed)
    storage = open_storage(options.storage or f"sqlite:///{parent / 'optuna.db'}")
    study_name = options.study_name or next_study_name(storage)
    direction = "maximize" if mode == "max" else "minimize"
    study = optuna.create_study(
        storage=storage,
        sampler=sampler,
        pruner=make_pruner(options.pruner),
        study_name=study_name,
        direction=direction,
        load_if_exists=True,
    )
    if study.direction.name.lower() != direction:
        raise UserInputError(
            f"study {study_name} {study.direction.name.lower()}s; this config's val/{metric} needs to {direction}"
        )
    study.set_user_attr("metric", f"val/{metric}")
    folder = parent / study_name
    base_seed = (
        config.seed_everything
        if isinstance(config.seed_everything, int) and not isinstance(config.seed_everything, bool)
        else 0
    )
    seeds: list[int | None] = [None] if options.seeds == 1 else [base_seed + k for k in range(options.seeds)]

    def run_folder(trial: optuna.Trial, seed: int | None) -> tuple[Path, str, str]:
        version = f"trial_{trial.number}" + (f"/seed_{seed}" if seed is not None else "")
        return parent, study_name, version

    objective = Objective(cli_class, fit_args, params, metric, mode, run_folder, seeds, prune=options.pruner != "none")
    each = f", {options.seeds} seeds each" if options.seeds > 1 else ""
    print(
        f"Study {study_name} in {storage_label(options.storage, parent)}: val/{metric} ({direction}), "
        f"{options.sampler} sampler, {options.n_trials} trials{each}"
    )
    optimize(study, objective, options.n_trials, options.timeout)
    report(study, folder, metric, options.seeds, logger, config.seed_everything, devices)
    return study


def storage_label(url: str | None, parent: Path) -> str:
    if url is None:
        return str(parent / "optuna.db")
    return re.sub(r"://([^:/@]+):[^@/]*@", r"://\1:***@", url)  # never print a password


def report(
    study: optuna.Study, folder: Path, metric: str, seeds: int, logger: dict[str, Any], seed: Any, devices: Any
) -> None:
    """Tables of every trial, the best trial's config and Optuna's plots, in the study's folder."""
    rows = trial_rows(study, metric, seeds)
    if not rows:
        print(f"Study {study.study_name} has no trials yet.")
        return
    csv_path, markdown_path = write_tables(folder, rows, "trials")
    print(
        f"\nStudy {study.study_name}: {len(rows)} trials, val/{metric} "
        f"{'(mean over ' + str(seeds) + ' seeds) ' if seeds > 1 else ''}{study.direction.name.lower()}d"
    )
    print(markdown_table(rows), end="")
    print(f"Saved: {csv_path} and {markdown_path}")
    best = write_best_config(study, folder / "best.yaml", logger, seed, devices)
    if best is not None:
        print(
            f"Best: trial {study.best_trial.number}, val/{metric} {study.best_value:.4f}: "
            f"python train.py fit --config {best}"
        )
    else:
        print("No trial completed: no best.yaml.")
    for line in save_plots(study, folder):
        print(line)
    print(f"All trials side by side: tensorboard --logdir {folder}")
