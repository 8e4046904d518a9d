"""Hyperparameter sweeps with Optuna: the search space, samplers, storage, pruning and the report.

Nothing here runs the command line; `src/cli/sweep.py` runs each trial as an ordinary `fit`
and uses these pieces. A space file maps config keys to what to try:

    model.optimizer.lr: {type: float, low: 1.0e-4, high: 0.1, log: true}
    model.net.hidden_sizes: [[32, 32], [128, 128]]           # a list: one of these values
    model.scheduler.name: {choices: [none, cosine, onecycle]}
    data.batch_size: {type: int, low: 32, high: 256, log: true, grid: [32, 256]}

`type` is float, int or categorical (without it: categorical given `choices`, int when low and
high are whole numbers, else float); `log` samples on a log scale, `step` quantises; `grid`
lists the values the grid sampler tries for a number.
"""

import csv
import importlib.util
import io
import json
import math
import re
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml
from lightning.pytorch import Callback, LightningModule, Trainer

from src.checkpointing.atomic_files import write_atomically
from src.errors import UserInputError

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "none")
GRID_LIMIT = 1000  # an int range with more values than this needs an explicit `grid` list

warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


class TrialFailed(Exception):
    """A trial that could not give a metric (diverged, bad combination): recorded as failed, the study goes on."""


@dataclass(frozen=True)
class Param:
    """One swept config value: `key` as the CLI takes it (`model.optimizer.lr`), what to try."""

    key: str
    kind: str  # float | int | categorical
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()
    grid: tuple[Any, ...] = ()

    def suggest(self, trial: optuna.Trial) -> Any:
        """The value for this trial, as Optuna stores it (lists and dicts as JSON text)."""
        if self.kind == "float":
            return trial.suggest_float(self.key, self.low, self.high, log=self.log, step=self.step)
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return trial.suggest_categorical(self.key, [stored_value(choice) for choice in self.choices])

    def grid_values(self) -> list[Any]:
        if self.grid:
            return [stored_value(value) for value in self.grid]
        if self.kind == "categorical":
            return [stored_value(choice) for choice in self.choices]
        if self.kind == "int" and not self.log:
            values = list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
            if len(values) <= GRID_LIMIT:
                return values
        if self.kind == "float" and self.step and not self.log:
            count = round((self.high - self.low) / self.step)
            return [self.low + i * self.step for i in range(count + 1)]
        raise UserInputError(
            f"the grid sampler needs the values of {self.key}: add `grid: [...]` (or choices) to it in the space"
        )


def stored_value(value: Any) -> Any:
    """Optuna's categorical choices must be None, bool, int, float or str: lists go in as JSON text."""
    return value if value is None or isinstance(value, bool | int | float | str) else json.dumps(value)


def flag_value(value: Any) -> str:
    """The text a CLI flag takes for `value` (YAML: null, true, [32, 32], 0.001)."""
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return repr(value)
    return json.dumps(value)


def read_space(source: str) -> dict[str, Any]:
    """The space from a YAML file, or inline YAML (`{model.optimizer.lr: {low: ...}}`)."""
    path = Path(source)
    if path.is_file():
        text = path.read_text()
    elif source.lstrip().startswith("{"):
        text = source
    else:
        raise UserInputError(
            f"--sweep.space {source}: no such file (give a YAML file such as configs/sweeps/circles.yaml)"
        )
    try:
        space = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise UserInputError(f"--sweep.space {source} is not valid YAML: {str(error).splitlines()[0]}") from None
    if not space:
        raise UserInputError(f"--sweep.space {source} is empty: name at least one config key to sweep")
    if not isinstance(space, dict):
        raise UserInputError(
            f"--sweep.space {source} must map config keys to what to try, e.g. model.optimizer.lr: ..."
        )
    return space


def parse_param(key: str, spec: Any) -> Param:
    """A Param from one entry of the space, with every mistake named in one line."""
    where = f"sweep space: {key}"
    if isinstance(spec, list):
        spec = {"choices": spec}
    if not isinstance(spec, dict):
        raise UserInputError(f"{where}: give {{type: float, low: ..., high: ...}} or {{choices: [...]}}, not {spec!r}")
    known = {"type", "low", "high", "log", "step", "choices", "grid"}
    if unknown := sorted(set(spec) - known):
        raise UserInputError(f"{where}: unknown field {unknown[0]!r} (fields: {', '.join(sorted(known))})")
    kind = spec.get("type")
    if kind is None and "choices" in spec:
        kind = "categorical"
    elif kind is None and "low" in spec:  # {low: 16, high: 256} is an int range, {low: 0.1, high: 1} a float one
        kind = "int" if all(isinstance(spec.get(k), int) for k in ("low", "high")) else "float"
    if kind not in ("float", "int", "categorical"):
        raise UserInputError(f"{where}: type must be float, int or categorical (with choices), not {kind!r}")
    grid = tuple(spec.get("grid") or ())
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise UserInputError(f"{where}: a categorical value needs a non-empty list of choices")
        return Param(key, kind, choices=tuple(choices), grid=grid)
    low, high = spec.get("low"), spec.get("high")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high)) or not low < high:
        raise UserInputError(f"{where}: a {kind} range needs numbers low < high, got low {low!r}, high {high!r}")
    log, step = bool(spec.get("log", False)), spec.get("step")
    if log and low <= 0:
        raise UserInputError(f"{where}: a log range needs low > 0, got {low}")
    if log and step is not None:
        raise UserInputError(f"{where}: choose log or step, not both")
    if kind == "int" and not all(float(v).is_integer() for v in (low, high, step or 1)):
        raise UserInputError(f"{where}: an int range needs whole numbers")
    return Param(key, kind, float(low), float(high), log, step, grid=grid)


def parse_space(space: dict[str, Any]) -> list[Param]:
    return [parse_param(str(key), spec) for key, spec in space.items()]


def resolve_key(key: str, config: Any) -> str:
    """The full config key (`model.init_args.optimizer.init_args.lr`) of a key as a user writes it
    (`model.optimizer.lr`); a key the config does not have is a UserInputError."""
    node, full = config, []
    for part in key.split("."):
        if _has(node, part):
            full.append(part)
        elif _has(node, "init_args") and _has(node.init_args, part):
            full += ["init_args", part]
            node = node.init_args
        else:
            where = ".".join(full) or "the config"
            options = sorted(k for k in vars(getattr(node, "init_args", node)) if not k.startswith("_"))
            hint = f" (keys under {where}: {', '.join(options)})" if options and _is_namespace(node) else ""
            raise UserInputError(f"sweep space: unknown config key {key!r}: {where} has no {part!r}{hint}")
        node = getattr(node, part)
    return ".".join(full)


def _is_namespace(node: Any) -> bool:
    return hasattr(node, "__dict__") and not isinstance(node, str | int | float | list | tuple)


def _has(node: Any, part: str) -> bool:
    return _is_namespace(node) and part in vars(node)


# --- samplers, pruners, storage --------------------------------------------------------
def make_sampler(name: str, params: Sequence[Param], seed: int | None) -> optuna.samplers.BaseSampler:
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        return optuna.samplers.GridSampler({param.key: param.grid_values() for param in params}, seed=seed)
    raise UserInputError(f"--sweep.sampler {name!r}: choose one of {', '.join(SAMPLERS)}")


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    """Median: stop a trial whose validation metric is worse than the median of the earlier
    trials at the same epoch (after 3 finished trials, never at the first validation)."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise UserInputError(f"--sweep.pruner {name!r}: choose one of {', '.join(PRUNERS)}")


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """Optuna's database storage for `url` (sqlite:///file.db, postgresql://user@host:port/db, ...).

    Workers on other machines share a study through it; a heartbeat marks the trials of a worker
    that died as failed. SQLite waits up to a minute for a lock held by another worker.
    """
    engine_kwargs: dict[str, Any] = {}
    shown = re.sub(r"://([^:/@]+):[^@/]*@", r"://\1:***@", url)  # never print a password
    url = postgres_driver(url)
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs["connect_args"] = {"timeout": 60}
    else:
        engine_kwargs["pool_pre_ping"] = True
    last_error: Exception | None = None
    for _ in range(10):  # workers creating the same new database at once collide on its tables
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=60, grace_period=180)
        except ImportError as error:
            hint = "; pip install psycopg2-binary" if url.startswith("postgres") else ""
            raise UserInputError(
                f"--sweep.storage {shown}: its database driver is not installed ({error.__cause__ or error}{hint})"
            ) from None
        except Exception as error:  # sqlalchemy's errors: bad URL, refused connection, wrong password
            last_error = error
            if not any(text in str(error) for text in ("already exists", "locked", "UNIQUE", "duplicate key")):
                break
            time.sleep(0.5)
    reason = str(last_error).strip().splitlines()[0] if last_error else "unknown error"
    raise UserInputError(f"cannot open --sweep.storage {shown}: {reason}")


def postgres_driver(url: str) -> str:
    """SQLAlchemy 2.1 reads postgresql:// as psycopg 3; with only psycopg2 installed, use that."""
    if not url.startswith(("postgresql://", "postgres://")) or importlib.util.find_spec("psycopg"):
        return url
    if importlib.util.find_spec("psycopg2"):
        return "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


def next_study_name(storage: optuna.storages.BaseStorage) -> str:
    """study_0, study_1, ...: the first name this storage does not hold yet."""
    taken = {study.study_name for study in storage.get_all_studies()}
    return next(f"study_{k}" for k in range(len(taken) + 1) if f"study_{k}" not in taken)


# --- reporting to the trial -------------------------------------------------------------
class ReportToTrial(Callback):
    """Records the validation metric at every validation and, given a trial, reports it to
    Optuna (step = epoch) and raises `optuna.TrialPruned` when the pruner says so."""

    def __init__(self, monitor: str, trial: optuna.Trial | None = None) -> None:
        self.monitor = monitor
        self.trial = trial
        self.values: list[tuple[int, float]] = []  # (epoch, value) of every validation

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        value, epoch = float(trainer.callback_metrics[self.monitor]), trainer.current_epoch
        self.values.append((epoch, value))
        if self.trial is None or not math.isfinite(value):
            return
        self.trial.report(value, epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"{self.monitor} {value:.4g} at epoch {epoch} is worse than the median")


# --- the report ---------------------------------------------------------------------------
def trial_rows(study: optuna.Study, metric: str, seeds: int) -> list[dict[str, Any]]:
    """One row per trial of the study (every worker's): number, state, values, metric, time."""
    names = list(dict.fromkeys(name for trial in study.trials for name in trial.params))
    rows = []
    for trial in sorted(study.trials, key=lambda t: t.number):
        attrs = trial.user_attrs
        row: dict[str, Any] = {"trial": trial.number, "state": trial.state.name.lower()}
        row.update({name: trial.params.get(name, "") for name in names})
        value = attrs.get("value", trial.value)  # a pruned trial: the best it reached before it stopped
        row[f"val/{metric}"] = float(value) if value is not None else float("nan")
        if seeds > 1:
            row[f"val/{metric}_std"] = float(attrs.get("std", float("nan")))
        row[f"test/{metric}"] = float(attrs.get(f"test/{metric}", float("nan")))
        row["seconds"] = f"{attrs['seconds']:.1f}" if "seconds" in attrs else "-"
        row["note"] = attrs.get("note", "")
        rows.append(row)
    return rows


def format_cell(value: Any) -> str:
    """Metrics with 4 decimals, other floats in 3 significant digits; '-' for a missing value."""
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.4f}" if 1e-3 <= abs(value) < 1e4 or value == 0 else f"{value:.3g}"
    return str(value).replace("|", "\\|")


def write_tables(folder: Path, rows: list[dict[str, Any]], stem: str) -> tuple[Path, Path]:
    """<stem>.csv and <stem>.md in `folder`, written atomically (workers may write at once)."""
    header = list(rows[0])
    table = io.StringIO()
    writer = csv.DictWriter(table, header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    csv_path, markdown_path = folder / f"{stem}.csv", folder / f"{stem}.md"
    folder.mkdir(parents=True, exist_ok=True)
    write_atomically(csv_path, table.getvalue().encode())
    write_atomically(markdown_path, markdown_table(rows).encode())
    return csv_path, markdown_path


def markdown_table(rows: list[dict[str, Any]]) -> str:
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(format_cell(row[key]) for key in header) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_best_config(study: optuna.Study, path: Path, logger: dict[str, Any], seed: Any, devices: Any) -> Path | None:
    """The best trial's resolved config (its config.yaml) as a file `fit --config` takes: its own
    run folder replaced by the experiment's (`logger`: save_dir, name, version), the seed and the
    devices restored (a trial runs on one device; the best config may use them all)."""
    try:
        best = study.best_trial
    except ValueError:  # no completed trial
        return None
    runs = best.user_attrs.get("runs") or []
    source = Path(runs[0]["dir"]) / "config.yaml" if runs else None
    if source is None or not source.is_file():
        return None
    config = yaml.safe_load(source.read_text())
    config["seed_everything"] = seed
    config.setdefault("trainer", {})["devices"] = devices
    config.get("trainer", {}).get("logger", {}).setdefault("init_args", {}).update(logger)
    config.pop("ckpt_path", None)
    header = (
        f"# Best trial {best.number} of study {study.study_name}: {study.user_attrs.get('metric', 'value')} "
        f"{best.value:.6g}\n#   python train.py fit --config {path}\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, (header + yaml.safe_dump(config, sort_keys=False)).encode())
    return path


def save_plots(study: optuna.Study, folder: Path) -> list[str]:
    """Optuna's optimisation history and parameter importances as PNGs; a line for each one skipped."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    names = {name for trial in done for name in trial.params}
    lines = []
    figures = {"optimization_history.png": plots.plot_optimization_history}
    if len(done) >= 2 and len(names) > 1:
        figures["param_importances.png"] = plots.plot_param_importances
    else:
        lines.append(
            f"param_importances.png skipped: needs 2 completed trials and 2 parameters "
            f"({len(done)} completed, {len(names)} parameter{'s' * (len(names) != 1)})"
        )
    if not done:
        return ["no completed trial: no plots"]
    for name, plot in figures.items():
        try:
            axes = plot(study)
        except (ValueError, RuntimeError) as error:  # importances fail when every value is the same
            lines.append(f"{name} skipped: {str(error).splitlines()[0]}")
            continue
        figure = axes.figure
        figure.set_size_inches(8, 5)
        figure.tight_layout()
        figure.savefig(folder / name, dpi=100)
        plt.close(figure)
        lines.append(f"Plot: {folder / name}")
    return lines
