"""A real sweep: 12 TPE trials on the wave (configs/regression.yaml), 300 epochs each.

    python bench/sweep_figures.py    # ~3 min on 2 CPU cores; writes bench/results/sweep_regression.{md,json}

Runs, as a user would, in a scratch folder:

    python train.py sweep --config configs/regression.yaml --sweep.space configs/sweeps/regression.yaml \
        --sweep.n_trials 12 --sweep.sampler_seed 0 --trainer.max_epochs 300 \
        --trainer.check_val_every_n_epoch 50 --trainer.callbacks []

(TPE, median pruning from the 4th trial on, validation every 50 epochs), then copies the
study's table of trials, its best trial and the wall time of the whole command.
"""

import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.command_line import parse_no_options  # noqa: E402

RESULTS = ROOT / "bench" / "results"
FLAGS = [
    "--sweep.space",
    str(ROOT / "configs" / "sweeps" / "regression.yaml"),
    "--sweep.n_trials",
    "12",
    "--sweep.sampler_seed",
    "0",
    "--trainer.max_epochs",
    "300",
    "--trainer.check_val_every_n_epoch",
    "50",
    "--trainer.callbacks",
    "[]",
    "--trainer.enable_progress_bar",
    "false",
    "--trainer.enable_model_summary",
    "false",
]


def main() -> None:
    parse_no_options(__doc__)
    command = [sys.executable, str(ROOT / "train.py"), "sweep", "--config", str(ROOT / "configs" / "regression.yaml")]
    with tempfile.TemporaryDirectory() as scratch:
        start = time.perf_counter()
        done = subprocess.run([*command, *FLAGS], cwd=scratch, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            sys.exit(f"the sweep failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        folder = Path(scratch) / "lightning_logs" / "regression_sweep" / "study_0"
        with (folder / "trials.csv").open() as handle:
            rows = list(csv.DictReader(handle))
        table = (folder / "trials.md").read_text()
        best_line = next(line for line in done.stdout.splitlines() if line.startswith("Best: trial"))
        best_yaml = (folder / "best.yaml").read_text()
        plots = sorted(path.name for path in folder.glob("*.png"))
    shown = " ".join(["python train.py sweep --config configs/regression.yaml", *FLAGS]).replace(str(ROOT) + "/", "")
    states = {state: sum(row["state"] == state for row in rows) for state in ("complete", "pruned", "fail")}
    summary = (
        f"{len(rows)} trials ({states['complete']} complete, {states['pruned']} pruned, {states['fail']} failed) "
        f"in {seconds:.0f} s on this machine (2 CPU cores), the whole command included"
    )
    markdown = "\n".join(
        [
            "# A TPE sweep on the wave",
            "",
            f"`{shown}`",
            "",
            summary + ". `val/mse` is the best validation of each trial (every 50 epochs); `test/mse` is "
            "its best checkpoint on the test split; a pruned trial shows the best value it reported before "
            "it was stopped; `seconds` is wall time "
            "on 2 CPU cores shared with other jobs at the time, so it varies between trials of the same size.",
            "",
            table,
            best_line.replace(str(Path(tempfile.gettempdir())), "<scratch>"),
            "",
            f"Plots written: {', '.join(plots)}",
            "",
        ]
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "sweep_regression.md").write_text(markdown)
    record = {"command": shown, "seconds": round(seconds, 1), "trials": rows, "states": states, "plots": plots}
    record["best_config_head"] = best_yaml.splitlines()[:2]
    (RESULTS / "sweep_regression.json").write_text(json.dumps(record, indent=2) + "\n")
    print(markdown)


if __name__ == "__main__":
    main()
