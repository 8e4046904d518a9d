"""The tabular template against scikit-learn's LogisticRegression on three real tables.

    python bench/tabular_figures.py    # ~4 min on 2 CPU cores; writes bench/results/tabular_figures.{md,json}

Breast cancer (text labels malignant/benign), wine (numeric labels 0/1/2, `task:
classification`) and iris (text labels) are written as CSV files, then for each:

- the template: `train.py fit --config configs/tabular_classification.yaml` (in-process,
  TemplateCLI), once per learning rate in TEMPLATE_LRS; the run with the lowest validation
  loss (the checkpoint's monitor) is kept and its test accuracy (best checkpoint) reported;
- LogisticRegression (StandardScaler, max_iter 10,000) on exactly the same training rows
  (TabularDataModule's stratified split), once per C in LOGREG_CS; the C with the best
  validation accuracy (ties: lower validation log-loss) is kept.

Each data set is split SEEDS times (seeds 0, 1, ...; stratified train/val/test 70/10/20) and
both sides run on every split: iris's test split has 30 rows, so one split moves a figure by
3.3 points, and the mean over several splits is the figure worth comparing. Hyperparameters
are chosen on each split's validation rows only; only the chosen model's test accuracy is
reported. The splits share rows (each iris row is a test row in about 4 of 20), so the
standard error of the mean difference is Nadeau and Bengio's corrected one,
sqrt((1 / SEEDS + test rows / training rows) * variance), not the naive sqrt(variance / SEEDS).
Times are time.perf_counter around each fit (the template's includes its test of the best
checkpoint and Lightning's start-up; LogisticRegression's is the fit alone).
"""

import csv
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer, load_iris, load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.command_line import parse_no_options  # noqa: E402
from src.cli import TemplateCLI  # noqa: E402
from src.datamodules import TabularDataModule  # noqa: E402

CONFIG = ROOT / "configs" / "tabular_classification.yaml"
RESULTS = ROOT / "bench" / "results"
TEMPLATE_LRS = (0.003, 0.01)
SEEDS = 20  # one iris split's test rows move its figure by 3.3 points; 20 splits: 600 test predictions
LOGREG_CS = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)


def write_tables(folder: Path) -> list[dict]:
    """The three data sets as CSV files: name, path, target column, task, text labels or not."""
    tables = []
    for name, loader, text_labels in (
        ("breast cancer", load_breast_cancer, True),
        ("wine", load_wine, False),
        ("iris", load_iris, True),
    ):
        data = loader()
        path = folder / f"{name.replace(' ', '_')}.csv"
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow([*(c.replace(" ", "_").replace("/", "_") for c in data.feature_names), "label"])
            for x, t in zip(data.data, data.target, strict=True):
                writer.writerow([*(f"{v:.6g}" for v in x), data.target_names[t] if text_labels else int(t)])
        tables.append({"name": name, "path": path, "rows": len(data.target), "classes": len(data.target_names)})
    return tables


def fit_args(path: Path, lr: float, seed: int, folder: Path, *overrides: str) -> list[str]:
    """`train.py fit` of the config on `path`'s split `seed` at learning rate `lr`, quiet, logged under `folder`."""
    return [
        "fit",
        *("--config", str(CONFIG)),
        *("--data.csv_path", str(path), "--data.target_column", "label", "--data.seed", str(seed)),
        *("--model.optimizer.init_args.lr", str(lr)),
        *("--trainer.logger.init_args.save_dir", str(folder)),
        *("--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"),
        *overrides,
    ]


def template_run(path: Path, lr: float, seed: int, folder: Path, overrides: tuple[str, ...] = ()) -> dict:
    """One fit of the config (plus `overrides`) on split `seed`; its best validation loss and test accuracy."""
    args = fit_args(path, lr, seed, folder, *overrides)
    start = time.perf_counter()
    cli = TemplateCLI(args=args)
    seconds = time.perf_counter() - start
    return {
        "lr": lr,
        "val_loss": float(cli.trainer.checkpoint_callback.best_model_score),
        "test_acc": float(cli.test_results[0]["test/acc"]),
        "seconds": seconds,
    }


def logistic_regression(path: Path, seed: int) -> dict:
    dm = TabularDataModule(path, "label", task="classification", seed=seed)
    dm.setup("fit")
    x = {split: dm.raw_inputs[split].numpy() for split in ("train", "val", "test")}
    y = {split: dm.splits[split][1].numpy() for split in ("train", "val", "test")}
    candidates = []
    for c in LOGREG_CS:
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=10_000))
        start = time.perf_counter()
        model.fit(x["train"], y["train"])
        seconds = time.perf_counter() - start
        val_acc = accuracy_score(y["val"], model.predict(x["val"]))
        val_loss = log_loss(y["val"], model.predict_proba(x["val"]), labels=np.arange(len(dm.class_names)))
        candidates.append({"C": c, "val_acc": val_acc, "val_loss": val_loss, "seconds": seconds, "model": model})
    chosen = max(candidates, key=lambda r: (r["val_acc"], -r["val_loss"]))
    test_acc = accuracy_score(y["test"], chosen.pop("model").predict(x["test"]))
    for candidate in candidates:
        candidate.pop("model", None)
    sizes = {split: len(y[split]) for split in y}
    return {**chosen, "test_acc": float(test_acc), "sizes": sizes, "candidates": candidates}


def compare_on_split(table: dict, seed: int, folder: Path) -> dict:
    """Both sides on one seeded split: the template's lr and LogisticRegression's C chosen on validation."""
    runs = [template_run(table["path"], lr, seed, folder / "runs") for lr in TEMPLATE_LRS]
    template = min(runs, key=lambda r: r["val_loss"])
    logreg = logistic_regression(table["path"], seed)
    return {
        "seed": seed,
        "split": logreg.pop("sizes"),
        "template": {**template, "candidates": runs},
        "logistic_regression": logreg,
    }


def corrected_standard_error(differences: list[float], sizes: dict[str, int]) -> float:
    """Standard error of the mean of per-split differences when the splits resample the same rows
    (Nadeau & Bengio, 2003): the naive one assumes independent splits and is too small."""
    factor = 1 / len(differences) + sizes["test"] / sizes["train"]
    return (factor * statistics.variance(differences)) ** 0.5


def points(difference: float) -> str:
    """An accuracy difference in percentage points, signed; no "-0.0" for a tie."""
    return f"{round(100 * difference, 1) + 0.0:+.1f}"


def main() -> None:
    parse_no_options(__doc__)
    os.environ.setdefault("PYTHONHASHSEED", "0")
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        os.chdir(folder)
        for table in write_tables(folder):
            splits = [compare_on_split(table, seed, folder) for seed in range(SEEDS)]
            template_accs = [s["template"]["test_acc"] for s in splits]
            logreg_accs = [s["logistic_regression"]["test_acc"] for s in splits]
            differences = [t - lr for t, lr in zip(template_accs, logreg_accs, strict=True)]
            results.append(
                {
                    "data": table["name"],
                    "rows": table["rows"],
                    "classes": table["classes"],
                    "split": splits[0]["split"],
                    "template_test_acc_mean": statistics.mean(template_accs),
                    "logistic_regression_test_acc_mean": statistics.mean(logreg_accs),
                    "difference_mean": statistics.mean(differences),
                    "difference_standard_error": corrected_standard_error(differences, splits[0]["split"]),
                    "difference_min": min(differences),
                    "difference_max": max(differences),
                    "template_seconds_mean": statistics.mean(s["template"]["seconds"] for s in splits),
                    "splits": splits,
                }
            )
    lines = [
        f"| data (rows, classes; train/val/test) | template test acc (mean of {SEEDS}) "
        "| LogisticRegression test acc (mean) | difference: mean ± corrected standard error (min to max over splits) "
        "| splits template ahead / tied / behind | template fit s (mean) |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        s = r["split"]
        # Lightning's accuracy is a float32: compare the two at the precision a count of test rows has.
        margins = [round(x["template"]["test_acc"] - x["logistic_regression"]["test_acc"], 6) for x in r["splits"]]
        ahead, behind = sum(m > 0 for m in margins), sum(m < 0 for m in margins)
        lines.append(
            f"| {r['data']} ({r['rows']}, {r['classes']}; {s['train']}/{s['val']}/{s['test']}) "
            f"| {r['template_test_acc_mean']:.4f} | {r['logistic_regression_test_acc_mean']:.4f} "
            f"| {points(r['difference_mean'])} ± {100 * r['difference_standard_error']:.1f} pt "
            f"({points(r['difference_min'])} to {points(r['difference_max'])}) "
            f"| {ahead} / {len(r['splits']) - ahead - behind} / {behind} | {r['template_seconds_mean']:.1f} |"
        )
    table = "\n".join(lines)
    note = (
        f"Test accuracy on {SEEDS} stratified splits of each table (data seeds 0 to {SEEDS - 1}), both sides on "
        "the same rows of every split. On each split the template's lr (of "
        f"{', '.join(map(str, TEMPLATE_LRS))}) is the one with the lowest validation loss and LogisticRegression's "
        "C the one with the best validation accuracy; only the chosen model's test accuracy counts. "
        "Standard error: Nadeau and Bengio's, corrected for splits that share rows. "
        "Template time: fit + test of the best checkpoint, in-process.\n"
        "Command: python bench/tabular_figures.py\n"
    )
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "tabular_figures.md").write_text(f"{note}\n{table}\n")
    (RESULTS / "tabular_figures.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
