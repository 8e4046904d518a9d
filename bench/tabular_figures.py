"""The tabular template against scikit-learn's LogisticRegression on three real tables.

    python bench/tabular_figures.py    # ~3 min on 2 CPU cores; writes bench/results/tabular_figures.{md,json}

Breast cancer (text labels malignant/benign), wine (numeric labels 0/1/2, `task:
classification`) and iris (text labels) are written as CSV files, then for each:

- the template: `train.py fit --config configs/tabular_classification.yaml` (in-process,
  TemplateCLI), once per learning rate in TEMPLATE_LRS; the run with the lowest validation
  loss (the checkpoint's monitor) is kept and its test accuracy (best checkpoint) reported;
- LogisticRegression (StandardScaler, max_iter 10,000) on exactly the same training rows
  (TabularDataModule's stratified split), once per C in LOGREG_CS; the C with the best
  validation accuracy (ties: lower validation log-loss) is kept.

Hyperparameters are chosen on the validation split only; the test split is read once per
chosen model. Times are time.perf_counter around each fit (the template's includes its
test of the best checkpoint and Lightning's start-up; LogisticRegression's is the fit alone).
"""

import csv
import json
import os
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

from src.cli import TemplateCLI  # noqa: E402
from src.datamodules import TabularDataModule  # noqa: E402

CONFIG = ROOT / "configs" / "tabular_classification.yaml"
RESULTS = ROOT / "bench" / "results"
TEMPLATE_LRS = (0.003, 0.01)
LOGREG_CS = (0.01, 0.1, 1.0, 10.0, 100.0)


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


def template_run(path: Path, lr: float, folder: Path) -> dict:
    args = [
        "fit",
        "--config",
        str(CONFIG),
        "--data.csv_path",
        str(path),
        "--data.target_column",
        "label",
        "--model.optimizer.init_args.lr",
        str(lr),
        "--trainer.logger.init_args.save_dir",
        str(folder),
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
    ]
    start = time.perf_counter()
    cli = TemplateCLI(args=args)
    seconds = time.perf_counter() - start
    return {
        "lr": lr,
        "val_loss": float(cli.trainer.checkpoint_callback.best_model_score),
        "test_acc": float(cli.test_results[0]["test/acc"]),
        "seconds": seconds,
    }


def logistic_regression(path: Path) -> dict:
    dm = TabularDataModule(path, "label", task="classification")
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


def main() -> None:
    os.environ.setdefault("PYTHONHASHSEED", "0")
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        os.chdir(folder)
        for table in write_tables(folder):
            runs = [template_run(table["path"], lr, folder / "runs") for lr in TEMPLATE_LRS]
            template = min(runs, key=lambda r: r["val_loss"])
            logreg = logistic_regression(table["path"])
            results.append(
                {
                    "data": table["name"],
                    "rows": table["rows"],
                    "classes": table["classes"],
                    "split": logreg["sizes"],
                    "template": {**template, "candidates": runs},
                    "logistic_regression": {k: v for k, v in logreg.items() if k != "sizes"},
                }
            )
    lines = [
        "| data (rows, classes; train/val/test) | template test acc | LogisticRegression test acc | difference "
        "| template lr (val loss) | LogReg C (val acc) | template fit s | LogReg fit s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        t, lr, s = r["template"], r["logistic_regression"], r["split"]
        lines.append(
            f"| {r['data']} ({r['rows']}, {r['classes']}; {s['train']}/{s['val']}/{s['test']}) | {t['test_acc']:.4f} "
            f"| {lr['test_acc']:.4f} | {100 * (t['test_acc'] - lr['test_acc']):+.1f} pt | {t['lr']} "
            f"({t['val_loss']:.4f}) | {lr['C']} ({lr['val_acc']:.4f}) | {t['seconds']:.1f} | {lr['seconds']:.3f} |"
        )
    table = "\n".join(lines)
    note = (
        "Test accuracy of the run chosen on the validation split (template: lr by lowest validation loss; "
        "LogisticRegression: C by validation accuracy), on the same stratified split (seed 42). Template time: "
        "fit + test of the best checkpoint, in-process; LogisticRegression: the fit of the chosen C.\n"
        "Command: python bench/tabular_figures.py\n"
    )
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "tabular_figures.md").write_text(f"{note}\n{table}\n")
    (RESULTS / "tabular_figures.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
