"""Choose the tabular classification recipe on tables that bench/tabular_figures.py does not test.

    python bench/tabular_recipe_search.py    # ~15 min on 2 CPU cores

writes bench/results/tabular_recipe_search.{md,json}. The figures in bench/tabular_figures.py
(breast cancer, wine, iris) must not steer the recipe they measure, and with 150 rows every
iris row is some split's test row, so the recipe is chosen on four other tables instead:

- digits: scikit-learn's 1,797 8x8 images as 64 pixel columns, 10 classes (real data);
- diabetes: scikit-learn's 442 patients, 10 columns, the disease-progression target cut at its
  median into text labels `low`/`high` (real data, a made-up task);
- two scikit-learn `make_classification` tables (synthetic): 300 rows, 8 columns, 3 classes,
  and 600 rows, 20 columns, 2 classes with 5% of the labels flipped.

Every candidate in CANDIDATES (one or two changes each from the config before this search,
BEFORE) is trained on SPLITS seeded stratified train/validation cuts of each table (80/20, no
test rows), once per learning rate in TEMPLATE_LRS; the run with the lowest validation loss is
kept, as bench/tabular_figures.py does, and its validation accuracy and loss at the best
checkpoint are the figures.
LogisticRegression, its C chosen as in bench/tabular_figures.py, is printed beside them on the
same cuts for scale. The rule, fixed before the run: the config takes the candidate with the
best mean validation accuracy (the mean over tables of each table's mean over its cuts), the
lower mean validation loss breaking a tie.
"""

import csv
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
from sklearn.datasets import load_diabetes, load_digits, make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.command_line import parse_no_options  # noqa: E402
from bench.tabular_figures import LOGREG_CS, TEMPLATE_LRS, fit_args  # noqa: E402
from src.cli import TemplateCLI  # noqa: E402
from src.datamodules import TabularDataModule  # noqa: E402

RESULTS = ROOT / "bench" / "results"
SPLITS = 5
VAL_FRACTION = 0.2
BEFORE = ["--model.optimizer.init_args.weight_decay", "0.01"]  # the config before this search: weight_decay 0.01
CONFIG_NOW = "hidden [64], dropout 0.3 (the config before this search)"
CANDIDATES: dict[str, list[str]] = {  # each on top of BEFORE, so a rerun repeats this search whatever the config says
    CONFIG_NOW: BEFORE,
    "dropout 0.1": [*BEFORE, "--model.net.init_args.dropout", "0.1"],
    "linear (no hidden layer)": [*BEFORE, "--model.net.init_args.hidden_sizes", "[]"],
    "hidden [64, 64]": [*BEFORE, "--model.net.init_args.hidden_sizes", "[64,64]"],
    "hidden [256], dropout 0.5": [
        *BEFORE,
        *("--model.net.init_args.hidden_sizes", "[256]"),
        *("--model.net.init_args.dropout", "0.5"),
    ],
    "weight_decay 0.1": [*BEFORE, "--model.optimizer.init_args.weight_decay", "0.1"],
    "500 epochs": [*BEFORE, "--trainer.max_epochs", "500"],
    "batch_size 64 (not one full batch)": [*BEFORE, "--data.batch_size", "64"],
}


def write_table(path: Path, features: np.ndarray, labels: list) -> Path:
    """`features` and a `label` column as a CSV file at `path`."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*(f"x{i}" for i in range(features.shape[1])), "label"])
        for row, label in zip(features, labels, strict=True):
            writer.writerow([*(f"{v:.6g}" for v in row), label])
    return path


def dev_tables(folder: Path) -> dict[str, Path]:
    """The four tables the recipe is chosen on, written as CSV files."""
    digits = load_digits()
    diabetes = load_diabetes()
    median = float(np.median(diabetes.target))
    small_x, small_y = make_classification(
        n_samples=300, n_features=8, n_informative=4, n_redundant=2, n_classes=3,
        n_clusters_per_class=1, random_state=0,
    )  # fmt: skip
    noisy_x, noisy_y = make_classification(
        n_samples=600, n_features=20, n_informative=6, n_classes=2, flip_y=0.05, random_state=1
    )
    return {
        "digits": write_table(folder / "digits.csv", digits.data, [int(t) for t in digits.target]),
        "diabetes high/low": write_table(
            folder / "diabetes.csv", diabetes.data, ["high" if t > median else "low" for t in diabetes.target]
        ),
        "synthetic 300x8, 3 classes": write_table(folder / "small.csv", small_x, [int(t) for t in small_y]),
        "synthetic 600x20, 5% flipped": write_table(folder / "noisy.csv", noisy_x, [int(t) for t in noisy_y]),
    }


def template_val(path: Path, overrides: list[str], lr: float, seed: int, folder: Path) -> dict:
    """One fit on a train/validation cut; validation accuracy and loss of its best checkpoint."""
    cut = ("--data.val_fraction", str(VAL_FRACTION), "--data.test_fraction", "0")
    cli = TemplateCLI(args=fit_args(path, lr, seed, folder, *cut, *overrides))
    metrics = cli.trainer.validate(cli.model, datamodule=cli.datamodule, ckpt_path="best", verbose=False)[0]
    return {"lr": lr, "val_acc": float(metrics["val/acc"]), "val_loss": float(metrics["val/loss"])}


def logistic_regression_val(path: Path, seed: int) -> float:
    """LogisticRegression's validation accuracy on a cut, C chosen as in bench/tabular_figures.py."""
    dm = TabularDataModule(path, "label", task="classification", seed=seed, val_fraction=VAL_FRACTION, test_fraction=0)
    dm.setup("fit")
    x = {split: dm.raw_inputs[split].numpy() for split in ("train", "val")}
    y = {split: dm.splits[split][1].numpy() for split in ("train", "val")}
    scores = []
    for c in LOGREG_CS:
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=10_000)).fit(x["train"], y["train"])
        loss = log_loss(y["val"], model.predict_proba(x["val"]), labels=np.arange(len(dm.class_names)))
        scores.append((accuracy_score(y["val"], model.predict(x["val"])), -loss))
    return float(max(scores)[0])


def search(tables: dict[str, Path], folder: Path) -> dict[str, dict[str, dict]]:
    """Per candidate and table: mean validation accuracy and loss over the SPLITS cuts, lr chosen per cut."""
    results: dict[str, dict[str, dict]] = {}
    for candidate, overrides in CANDIDATES.items():
        results[candidate] = {}
        for name, path in tables.items():
            chosen = []
            for seed in range(SPLITS):
                runs = [template_val(path, overrides, lr, seed, folder / "runs") for lr in TEMPLATE_LRS]
                chosen.append(min(runs, key=lambda r: r["val_loss"]))
            results[candidate][name] = {
                "val_acc": statistics.mean(r["val_acc"] for r in chosen),
                "val_loss": statistics.mean(r["val_loss"] for r in chosen),
                "val_acc_per_cut": [r["val_acc"] for r in chosen],
                "lrs": [r["lr"] for r in chosen],
            }
        print(candidate, {n: round(r["val_acc"], 4) for n, r in results[candidate].items()}, flush=True)
    return results


def main() -> None:
    parse_no_options(__doc__)
    os.environ.setdefault("PYTHONHASHSEED", "0")
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        os.chdir(folder)
        tables = dev_tables(folder)
        logreg = {n: statistics.mean(logistic_regression_val(p, s) for s in range(SPLITS)) for n, p in tables.items()}
        results = search(tables, folder)
    names = list(tables)

    def mean_of(candidate: str, key: str) -> float:
        return statistics.mean(results[candidate][n][key] for n in names)

    chosen = max(results, key=lambda c: (mean_of(c, "val_acc"), -mean_of(c, "val_loss")))
    lines = [
        "| recipe | " + " | ".join(f"{n}: val acc / val loss" for n in names) + " | mean val acc | mean val loss |",
        "|---|" + "---|" * (len(names) + 2),
    ]
    for candidate in results:
        cells = " | ".join(
            f"{results[candidate][n]['val_acc']:.4f} / {results[candidate][n]['val_loss']:.4f}" for n in names
        )
        label = f"**{candidate}** (chosen)" if candidate == chosen else candidate
        lines.append(
            f"| {label} | {cells} | {mean_of(candidate, 'val_acc'):.4f} | {mean_of(candidate, 'val_loss'):.4f} |"
        )
    lines.append(
        "| LogisticRegression (for scale) | "
        + " | ".join(f"{logreg[n]:.4f} / -" for n in names)
        + f" | {statistics.mean(logreg.values()):.4f} | - |"
    )
    note = (
        f"Validation accuracy / loss, mean of {SPLITS} stratified train/validation cuts "
        f"({100 - 100 * VAL_FRACTION:.0f}/{100 * VAL_FRACTION:.0f}, data seeds 0 to {SPLITS - 1}) of four tables "
        "that bench/tabular_figures.py does not use; on each cut the lr of "
        f"{', '.join(map(str, TEMPLATE_LRS))} with the lowest validation loss is kept. Rule: the best mean "
        "validation accuracy, then the lower mean validation loss.\n"
        "Command: python bench/tabular_recipe_search.py\n"
    )
    text = f"{note}\n" + "\n".join(lines) + f"\n\nChosen: {chosen}\n"
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "tabular_recipe_search.md").write_text(text)
    (RESULTS / "tabular_recipe_search.json").write_text(
        json.dumps({"template": results, "logistic_regression_val_acc": logreg, "chosen": chosen}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
