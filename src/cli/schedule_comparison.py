"""`python train.py compare_schedules --config ...`: train one task under each learning-rate
schedule, then print and save a table of their final metrics and times.

Every run is an ordinary `fit` (same config, seed and flags) with only the schedule changed;
the runs land side by side in lightning_logs/<name>_schedules/version_K/<schedule>/, so
`tensorboard --logdir` on that folder overlays their curves.
"""

import argparse
import csv
import io
import math
import time
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import TensorBoardLogger

from src.checkpointing.atomic_files import write_atomically
from src.checkpointing.runs import versions
from src.cli.template_cli import TemplateCLI
from src.errors import UserInputError

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
        choices=SCHEDULES,
        default=list(SCHEDULES),
        help="which schedules to compare (default: all five)",
    )
    try:
        options, fit_args = parser.parse_known_args(args)
    except argparse.ArgumentError as error:
        raise UserInputError(f"{error} (see: python train.py compare_schedules --help)") from None
    if "--ckpt_path" in fit_args:
        raise UserInputError("compare_schedules trains every schedule from scratch: drop --ckpt_path")
    return options, fit_args


def comparison_folder(cli: TemplateCLI) -> Path:
    """lightning_logs/<name>_schedules/version_K: a new K for every comparison."""
    if not isinstance(cli.trainer.logger, TensorBoardLogger):
        raise UserInputError("compare_schedules needs trainer.logger to be a TensorBoardLogger (as in configs/*.yaml)")
    parent = Path(f"{cli.trainer.experiment_dir()}_schedules")
    existing = versions(parent)  # newest first
    return parent / f"version_{int(existing[0].name.split('_')[1]) + 1 if existing else 0}"


def write_tables(folder: Path, rows: list[dict[str, Any]]) -> tuple[Path, Path]:
    """comparison.csv and comparison.md in `folder`."""
    header = list(rows[0])
    table = io.StringIO()
    writer = csv.DictWriter(table, header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    csv_path, markdown_path = folder / "comparison.csv", folder / "comparison.md"
    write_atomically(csv_path, table.getvalue().encode())
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(format_cell(row[key]) for key in header) + " |" for row in rows]
    write_atomically(markdown_path, ("\n".join(lines) + "\n").encode())
    return csv_path, markdown_path


def format_cell(value: Any) -> str:
    """Metrics with 4 decimals; '-' for one the run does not have (no test split)."""
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def compare_schedules(args: list[str]) -> list[dict[str, Any]]:
    """Run the comparison; returns one row per schedule."""
    options, fit_args = parse_options(args)
    base = TemplateCLI(args=fit_args, run=False)  # reads the config: epochs, LR, logger
    max_epochs, lr = (
        base.trainer.max_epochs,
        base.model.make_optimizer(base.model.net.parameters()).param_groups[0]["lr"],
    )
    metric = base.model.best_metric
    folder = comparison_folder(base)
    rows = []
    for schedule in options.schedules:
        print(f"\n=== {schedule} ===", flush=True)
        logger_flags = [
            "--trainer.logger.init_args.save_dir",
            str(folder.parent),
            "--trainer.logger.init_args.name",
            folder.name,
            "--trainer.logger.init_args.version",
            schedule,
        ]
        start = time.perf_counter()
        run = TemplateCLI(args=["fit", *fit_args, *schedule_flags(schedule, max_epochs, lr), *logger_flags])
        seconds = time.perf_counter() - start
        test = run.test_results[0] if run.test_results else {}
        best = run.trainer.checkpoint_callback.best_model_score
        rows.append(
            {
                "schedule": schedule,
                f"val/{metric}_best": float(best) if best is not None else float("nan"),
                f"test/{metric}": float(test.get(f"test/{metric}", float("nan"))),
                "test/loss": float(test.get("test/loss", float("nan"))),
                "final_lr": f"{run.trainer.optimizers[0].param_groups[0]['lr']:.3g}",
                "seconds": f"{seconds:.1f}",
            }
        )
    csv_path, markdown_path = write_tables(folder, rows)
    print(f"\nLR schedules on {folder} ({max_epochs} epochs, lr {lr}):")
    print(markdown_path.read_text(), end="")
    print(f"Saved: {csv_path} and {markdown_path}\nCurves side by side: tensorboard --logdir {folder}")
    return rows
