"""One trial of a study: its values as flags, an ordinary `fit` per seed, what each measured.

The trial's first fit reports its validation metric to Optuna at every validation (step k for
its k-th validation) through PruneAtValidations, which stops the fit when the pruner says so. A
trial that fails by its values (divergence, values that do not go together, out of memory) is
recorded with its reason and the study goes on; a bug stops the study. A trial stopped by Ctrl-C
or SIGTERM is recorded as failed and queued to run again.
"""

import math
import signal
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities.exceptions import SIGTERMException

from src.cli.args_from_python import args_from_python
from src.cli.template_cli import TemplateCLI
from src.cli.user_errors import user_message
from src.errors import StoppedBySignal, UserInputError
from src.sweeps.experimental import experimental_optuna
from src.sweeps.space import Param, flag_value
from src.sweeps.study_storage import CONFIG_ATTR, RERUN_OF

# (save_dir, name, version) of the logger for a trial's run with a seed (None: the config's)
RunFolder = Callable[[optuna.Trial, int | None], tuple[Path, str, str]]


class TrialFailed(Exception):
    """A trial that could not give a metric (diverged, bad combination): recorded as failed, the study goes on."""


class ValidationHistory(Callback):
    """Records (epoch, value) of the monitored metric at every validation of a fit, sanity check aside."""

    def __init__(self, monitor: str) -> None:
        self.monitor = monitor
        self.values: list[tuple[int, float]] = []

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking and self.monitor in trainer.callback_metrics:
            self.values.append((trainer.current_epoch, float(trainer.callback_metrics[self.monitor])))


class PruneAtValidations(Callback):
    """Reports the monitored metric to the trial at each validation, numbered 0, 1, 2, ... (the k-th
    validation of every trial compared), and stops the fit when the pruner says so. Trials run on
    one device. optuna-integration's PyTorchLightningPruningCallback numbers reports by epoch, so
    with several validations an epoch (`val_check_interval`) only the first reached the pruner."""

    def __init__(self, trial: optuna.Trial, monitor: str) -> None:
        self.trial, self.monitor = trial, monitor
        self.reported = 0

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        score = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or score is None:  # a missing metric fails the trial (ValidationHistory)
            return
        step, self.reported = self.reported, self.reported + 1
        self.trial.report(float(score), step=step)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at validation {step}")


def run_fit(cli_class: type[TemplateCLI], args: list[str], callbacks: Sequence[Callback]) -> TemplateCLI:
    """One ordinary `fit` of the CLI (and its test of the best checkpoint), with `callbacks` added in order."""

    class TrialCLI(cli_class):  # type: ignore[misc,valid-type]
        def instantiate_trainer(self, **kwargs: Any) -> Any:
            trainer = super().instantiate_trainer(**kwargs)
            trainer.callbacks.extend(callbacks)
            return trainer

    with args_from_python():
        return TrialCLI(args=["fit", *args])


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
        stop_message: Callable[[optuna.Trial, str], str] | None = None,
    ) -> None:
        self.cli_class, self.fit_args, self.params = cli_class, fit_args, params
        self.metric, self.mode, self.run_folder, self.seeds, self.prune = metric, mode, run_folder, seeds, prune
        self.stop_message = stop_message  # (trial, signal name) -> how to go on; None: a study's
        self.flags_for = flags_for or (lambda values: [f for k, v in values.items() for f in (f"--{k}", flag_value(v))])

    def __call__(self, trial: optuna.Trial) -> float:
        runs: list[dict[str, Any]] = []
        try:
            return self.run_trial(trial, runs)
        except (StoppedBySignal, SIGTERMException, KeyboardInterrupt) as stop:  # in a fit or outside it
            raise self.stopped(trial, runs, stop) from None

    def run_trial(self, trial: optuna.Trial, runs: list[dict[str, Any]]) -> float:
        """The trial's fits, one per seed (what each measured goes into `runs`), and its record."""
        try:
            values = {param.key: param.suggest(trial) for param in self.params}
            print(f"\n=== trial {trial.number}: {', '.join(f'{k}={v}' for k, v in values.items())} ===", flush=True)
            for index, seed in enumerate(self.seeds):
                self.run_seed(trial, values, seed, runs, report=self.prune and index == 0)
        except optuna.TrialPruned:
            self.record(trial, runs, note=f"pruned: {self.pruned_at(runs)}")
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
        # Each trial's checkpoints in its own run folder, whatever dirpath a config names: one shared
        # folder would have trials overwrite (or refuse) each other's checkpoints.
        flags += ["--checkpoint.dirpath", str(Path(save_dir) / name / version / "checkpoints")]
        monitor = f"val/{self.metric}"
        history = ValidationHistory(monitor)  # first: it records the value the pruning callback may stop at
        callbacks: list[Callback] = [history]
        if report:
            callbacks.append(PruneAtValidations(trial, monitor))
        run: dict[str, Any] = {"seed": seed, "dir": str(Path(save_dir) / name / version)}
        runs.append(run)
        start = time.perf_counter()
        try:
            cli = run_fit(self.cli_class, [*self.fit_args, *flags], callbacks)
        finally:
            run["seconds"] = time.perf_counter() - start
            run["validations"] = history.values
        values_seen = [value for _, value in history.values if math.isfinite(value)]
        if not values_seen:
            raise UserInputError(
                f"no finite {monitor}: no validation ran, or it never logged the metric "
                "(lower --trainer.check_val_every_n_epoch or raise --trainer.max_epochs)"
            )
        run["best"] = max(values_seen) if self.mode == "max" else min(values_seen)
        test = cli.test_results[0] if cli.test_results else {}
        run["test"] = {key: float(value) for key, value in test.items()}
        run["final_lr"] = float(cli.trainer.optimizers[0].param_groups[0]["lr"]) if cli.trainer.optimizers else None
        if cli.trainer.log_dir is not None:
            run["dir"] = str(cli.trainer.log_dir)

    def stopped(self, trial: optuna.Trial, runs: list[dict[str, Any]], stop: BaseException) -> StoppedBySignal:
        """A trial stopped by Ctrl-C or SIGTERM: recorded as failed, its values queued to run again (from
        the start, as the next trial) when a worker of the study goes on; the stop says how to go on."""
        signum = getattr(stop, "signum", signal.SIGTERM if isinstance(stop, SIGTERMException) else signal.SIGINT)
        name = signal.Signals(signum).name
        study = trial.study
        # A second Ctrl-C or SIGTERM (the fit's handlers are gone) waits until the trial is written down.
        previous = {number: signal.signal(number, signal.SIG_IGN) for number in (signal.SIGINT, signal.SIGTERM)}
        try:
            study.enqueue_trial(trial.params, user_attrs={RERUN_OF: trial.number})
            self.record(trial, runs, note=f"stopped by {name}; queued to run again")
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)
        if self.stop_message is not None:
            return StoppedBySignal(signum, self.stop_message(trial, name))
        return StoppedBySignal(
            signum,
            f"{name} received: trial {trial.number} of study {study.study_name} was stopped and is queued to run "
            f"again; go on with the same command and --sweep.study_name {study.study_name}",
        )

    @staticmethod
    def rerun_note(trial: optuna.Trial) -> str:
        """'rerun of trial N' for a trial that runs again the values of one a signal stopped or whose worker died."""
        rerun_of = trial.user_attrs.get(RERUN_OF)
        return f"rerun of trial {rerun_of}" if rerun_of is not None else ""

    def pruned_at(self, runs: list[dict[str, Any]]) -> str:
        """Why a trial was stopped: its metric at the validation the pruner stopped it at."""
        validations = runs[0].get("validations") if runs else None
        if not validations:
            return "stopped by the pruner"
        epoch, value = validations[-1]
        return f"val/{self.metric} {value:.4g} at epoch {epoch} is worse than the median"

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
            "note": "; ".join(text for text in (note, self.rerun_note(trial)) if text),
        }
        for key in (f"test/{self.metric}", "test/loss"):
            tested = [run["test"][key] for run in runs if key in run.get("test", {})]
            attrs[key] = statistics.fmean(tested) if tested else float("nan")
        config_file = Path(runs[0]["dir"]) / "config.yaml" if runs and "best" in runs[0] else None
        if config_file is not None and config_file.is_file():  # for best.yaml, written by whichever worker reports
            attrs[CONFIG_ATTR] = config_file.read_text()
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
    """Runs trials of `objective` until `n_trials` or `timeout`; failed trials are kept, bugs raise."""
    logger = optuna.logging.get_logger("optuna")
    quiet = _QuietFailures()
    logger.addFilter(quiet)
    try:
        with experimental_optuna():  # the storage's heartbeat fails the trials of a worker that died
            study.optimize(objective, n_trials=n_trials, timeout=timeout, catch=(TrialFailed,), gc_after_trial=True)
    finally:
        logger.removeFilter(quiet)
