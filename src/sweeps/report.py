"""What a study leaves beside its trials: trials.csv and trials.md, best.yaml, Optuna's plots."""

import csv
import io
import math
from pathlib import Path
from typing import Any

import optuna
import yaml

from src.checkpointing.atomic_files import write_atomically
from src.errors import first_line
from src.sweeps.experimental import experimental_optuna
from src.sweeps.study_storage import CONFIG_ATTR


def report(
    study: optuna.Study, folder: Path, metric: str, seeds: int, logger: dict[str, Any], restored: dict[str, Any]
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
    best = write_best_config(study, folder / "best.yaml", logger, restored)
    if best is not None:
        print(
            f"Best: trial {study.best_trial.number}, val/{metric} {study.best_value:.4f}: "
            f"python train.py fit --config {best}"
        )
    elif any(trial.state == optuna.trial.TrialState.COMPLETE for trial in study.trials):
        print(
            f"Best: trial {study.best_trial.number}, val/{metric} {study.best_value:.4f}; its config is not "
            f"recorded in the study nor found here (run before the study kept configs?): no best.yaml"
        )
    else:
        print("No trial completed: no best.yaml.")
    for line in save_plots(study, folder):
        print(line)
    print(f"All trials side by side: tensorboard --logdir {folder}")


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
    """The rows as a Markdown table, cells as `format_cell` writes them."""
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(format_cell(row[key]) for key in header) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_best_config(study: optuna.Study, path: Path, logger: dict[str, Any], restored: dict[str, Any]) -> Path | None:
    """The best trial's resolved config (its config.yaml) as a file `fit --config` takes: its own
    run folder replaced by the experiment's (`logger`: save_dir, name, version), and the values a
    trial ran with in place of the user's put back (`restored`, by dotted key: the seed, the devices,
    since a trial runs on one and the best config may use them all, and the checkpoint folder, since
    a trial writes into its own)."""
    try:
        best = study.best_trial
    except ValueError:  # no completed trial
        return None
    text = best.user_attrs.get(CONFIG_ATTR)  # kept in the study: any worker, on any machine, can write it
    runs = best.user_attrs.get("runs") or []
    source = Path(runs[0]["dir"]) / "config.yaml" if runs else None
    if text is None and source is not None and source.is_file():
        text = source.read_text()
    if text is None:
        path.unlink(missing_ok=True)  # an earlier best's file would name a trial that is no longer the best
        return None
    config = yaml.safe_load(text)
    for dotted, value in restored.items():
        *sections, key = dotted.split(".")
        place = config
        for section in sections:
            place = place.setdefault(section, {})
        place[key] = value
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
            with experimental_optuna():
                axes = plot(study)
        except (ValueError, RuntimeError) as error:  # importances fail when every value is the same
            lines.append(f"{name} skipped: {first_line(error)}")
            continue
        figure = axes.figure
        figure.set_size_inches(8, 5)
        figure.tight_layout()
        figure.savefig(folder / name, dpi=100)
        plt.close(figure)
        lines.append(f"Plot: {folder / name}")
    return lines
