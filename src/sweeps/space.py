"""The search space of a sweep: which config keys to try, and the values to try for each.

A space file maps config keys (as flags take them) to what to try:

    model.optimizer.lr: {type: float, low: 1.0e-4, high: 0.1, log: true}
    model.net.hidden_sizes: [[32, 32], [128, 128]]           # a list: one of these values
    model.scheduler.name: {choices: [none, cosine, onecycle]}
    data.batch_size: {type: int, low: 32, high: 256, log: true, grid: [32, 256]}

`type` is float, int or categorical (without it: categorical given `choices`, int when low and
high are whole numbers, else float); `log` samples on a log scale, `step` quantises; `grid`
lists the values the grid sampler tries for a number.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml

from src.errors import UserInputError, first_line

GRID_LIMIT = 1000  # an int range with more values than this needs an explicit `grid` list


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
            count = round((self.high - self.low) / self.step)  # a whole number: parse_param checks it
            return [round(self.low + i * self.step, 12) for i in range(count + 1)]  # 0.3, not 0.30000000000000004
        raise UserInputError(
            f"the grid sampler needs the values of {self.key}: add `grid: [...]` (or choices) to it in the space"
        )


def _steps_fit(low: float, high: float, step: float) -> bool:
    """Whether [low, high] holds a whole number of steps (within float rounding: 0.1 steps from 0 to 1 do)."""
    count = (high - low) / step
    return abs(count - round(count)) < 1e-9 * max(1.0, count)


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
    if source.lstrip().startswith("{"):  # inline YAML (checked first: a long one is no file name)
        text = source
    elif path.is_file():
        text = path.read_text()
    else:
        raise UserInputError(
            f"--sweep.space {source}: no such file (give a YAML file such as configs/sweeps/circles.yaml)"
        )
    try:
        space = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise UserInputError(f"--sweep.space {source} is not valid YAML: {first_line(error)}") from None
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
    grid = spec.get("grid") or []
    if not isinstance(grid, list):
        raise UserInputError(f"{where}: grid must be a list of values to try, e.g. grid: [0.01, 0.1], not {grid!r}")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise UserInputError(f"{where}: a categorical value needs a non-empty list of choices")
        if outside := [value for value in grid if value not in choices]:
            raise UserInputError(f"{where}: grid value {outside[0]!r} is not one of the choices {choices}")
        return Param(key, kind, choices=tuple(choices), grid=tuple(grid))
    low, high = spec.get("low"), spec.get("high")
    if not all(_is_number(v) for v in (low, high)) or not low < high:
        raise UserInputError(
            f"{where}: a {kind} range needs numbers low < high, got low {low!r}, high {high!r}{_text_hint(low, high)}"
        )
    log, step = spec.get("log", False), spec.get("step")
    if not isinstance(log, bool):
        raise UserInputError(f"{where}: log must be true or false, not {log!r}")
    if step is not None and not (_is_number(step) and step > 0):
        raise UserInputError(f"{where}: step must be a number above 0, not {step!r}{_text_hint(step)}")
    if log and low <= 0:
        raise UserInputError(f"{where}: a log range needs low > 0, got {low}")
    if log and step is not None:
        raise UserInputError(f"{where}: choose log or step, not both")
    if kind == "int" and not all(float(v).is_integer() for v in (low, high, step or 1)):
        raise UserInputError(f"{where}: an int range needs whole numbers")
    if step is not None and not _steps_fit(low, high, step):
        raise UserInputError(
            f"{where}: high - low must be a whole number of steps (Optuna would move high, the grid pass it): "
            f"{high} - {low} is not a multiple of {step}"
        )
    for value in grid:
        if not (_is_number(value) and low <= value <= high) or (kind == "int" and not float(value).is_integer()):
            whole = "whole numbers " if kind == "int" else ""
            raise UserInputError(
                f"{where}: grid value {value!r} is outside the range: grid values must be {whole}from low {low} "
                f"to high {high}{' (a log range has no 0)' if log else ''}"
            )
    return Param(key, kind, float(low), float(high), log, step, grid=tuple(grid))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _text_hint(*values: Any) -> str:
    """YAML reads 1e-4 (no dot) as text: say so where a number came as text that reads as one."""
    for value in values:
        if isinstance(value, str):
            try:
                float(value)
            except ValueError:
                continue
            return f" (YAML reads {value} as text: write it with a dot, e.g. {float(value):.1e})"
    return ""


def parse_space(space: dict[str, Any]) -> list[Param]:
    """The Params of a space as read by `read_space`, in its order."""
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
