"""Choose the tabular classification recipe on train/validation rows, and check the choice nested.

    python bench/tabular_recipe_search.py    # ~20 min on 2 CPU cores (19 min measured)

writes bench/results/tabular_recipe_search.{md,json}. bench/tabular_figures.py reports test
accuracy on data seeds 0 to 4. For each data set and each of those seeds this script keeps only
the split's non-test rows (train + validation, written as a CSV of their own) and cuts them
again INNER times (seeds 0, 1, ...; stratified, the real run's train/validation sizes, no test
split). Every candidate in CANDIDATES (one or two changes each from the recipe before the
search) is trained on each cut once per learning rate in TEMPLATE_LRS; the run with the lowest
validation loss is kept, as bench/tabular_figures.py does, and its validation accuracy and loss
at the best checkpoint are the figures. LogisticRegression, its C chosen as in
bench/tabular_figures.py, is printed beside them on the same cuts for scale.

The config's recipe is the candidate with the best mean validation accuracy pooled over every
cut. Pooled, a row that is one split's test row is a training or validation row in the other
splits' cuts, so that choice is not independent of bench/tabular_figures.py's test rows. The
nested check is: for each split, the candidate ranked first by that split's own cuts alone is
trained on the split and tested once on its test rows, beside LogisticRegression.
"""

import csv
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.tabular_figures import (  # noqa: E402
    LOGREG_CS,
    SEEDS,
    TEMPLATE_LRS,
    fit_args,
    logistic_regression,
    points,
    template_run,
    write_tables,
)
from src.cli import TemplateCLI  # noqa: E402
from src.datamodules import TabularDataModule  # noqa: E402

RESULTS = ROOT / "bench" / "results"
INNER = 3
INNER_VAL_FRACTION = 0.125  # of the non-test rows: the real run's 10% of all rows
EARLIER = ["--model.net.init_args.dropout", "0.1"]  # the recipe before this search; each row changes one or two things
CANDIDATES: dict[str, list[str]] = {
    "hidden [64], dropout 0.1 (the earlier recipe)": EARLIER,
    "weight_decay 0.1": [*EARLIER, "--model.optimizer.init_args.weight_decay", "0.1"],
    "weight_decay 1.0": [*EARLIER, "--model.optimizer.init_args.weight_decay", "1.0"],
    "dropout 0.3 (the config now)": ["--model.net.init_args.dropout", "0.3"],
    "hidden [16]": [*EARLIER, "--model.net.init_args.hidden_sizes", "[16]"],
    "hidden [256], dropout 0.5": [
        *("--model.net.init_args.hidden_sizes", "[256]"),
        *("--model.net.init_args.dropout", "0.5"),
    ],
    "100 epochs": [*EARLIER, "--trainer.max_epochs", "100"],
    "500 epochs": [*EARLIER, "--trainer.max_epochs", "500"],
}


def non_test_table(path: Path, seed: int, folder: Path) -> Path:
    """The rows of `path` outside split `seed`'s test split, as a CSV of their own."""
    dm = TabularDataModule(path, "label", task="classification", seed=seed)
    parts = dm.split()
    keep = set(parts.train.tolist()) | set(parts.val.tolist())
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert len(rows) - 1 == len(dm.targets), "the split's indices must be the file's data rows"
    out = folder / f"{path.stem}-nontest-{seed}.csv"
    with out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(rows[0])
        writer.writerows(row for index, row in enumerate(rows[1:]) if index in keep)
    return out


def template_val(path: Path, overrides: list[str], lr: float, seed: int, folder: Path) -> dict:
    """One fit on an inner split; validation accuracy and loss of its best checkpoint."""
    inner = ("--data.val_fraction", str(INNER_VAL_FRACTION), "--data.test_fraction", "0")
    args = fit_args(path, lr, seed, folder, *inner, *overrides)
    cli = TemplateCLI(args=args)
    metrics = cli.trainer.validate(cli.model, datamodule=cli.datamodule, ckpt_path="best", verbose=False)[0]
    return {"lr": lr, "val_acc": float(metrics["val/acc"]), "val_loss": float(metrics["val/loss"])}


def logistic_regression_val(path: Path, seed: int) -> float:
    """LogisticRegression's validation accuracy on an inner split, C chosen as in tabular_figures."""
    dm = TabularDataModule(
        path, "label", task="classification", seed=seed, val_fraction=INNER_VAL_FRACTION, test_fraction=0
    )
    dm.setup("fit")
    x = {split: dm.raw_inputs[split].numpy() for split in ("train", "val")}
    y = {split: dm.splits[split][1].numpy() for split in ("train", "val")}
    scores = []
    for c in LOGREG_CS:
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=10_000)).fit(x["train"], y["train"])
        probabilities = model.predict_proba(x["val"])
        loss = log_loss(y["val"], probabilities, labels=np.arange(len(dm.class_names)))
        scores.append((accuracy_score(y["val"], model.predict(x["val"])), -loss))
    return float(max(scores)[0])


def search(inner_tables: dict[str, list[Path]], folder: Path) -> dict[str, dict[str, list[dict]]]:
    """Per candidate, data set and outer split: the mean validation accuracy and loss of its INNER cuts."""
    results: dict[str, dict[str, list[dict]]] = {}
    for candidate, overrides in CANDIDATES.items():
        results[candidate] = {}
        for name, paths in inner_tables.items():
            per_split = []
            for path in paths:
                chosen = []
                for seed in range(INNER):
                    runs = [template_val(path, overrides, lr, seed, folder / "runs") for lr in TEMPLATE_LRS]
                    chosen.append(min(runs, key=lambda r: r["val_loss"]))
                per_split.append(
                    {
                        "val_acc": statistics.mean(r["val_acc"] for r in chosen),
                        "val_loss": statistics.mean(r["val_loss"] for r in chosen),
                        "lrs": [r["lr"] for r in chosen],
                    }
                )
            results[candidate][name] = per_split
        pooled = {n: round(statistics.mean(r["val_acc"] for r in v), 4) for n, v in results[candidate].items()}
        print(candidate, pooled, flush=True)
    return results


def nested_check(table: dict, results: dict[str, dict[str, list[dict]]], folder: Path) -> list[dict]:
    """For each outer split: the candidate its own cuts rank first (validation accuracy, then loss),
    trained on that split as bench/tabular_figures.py does, and tested once on its test rows."""
    rows = []
    for seed in range(SEEDS):
        per = {c: results[c][table["name"]][seed] for c in CANDIDATES}
        best = max(per, key=lambda c: (per[c]["val_acc"], -per[c]["val_loss"]))
        overrides = tuple(CANDIDATES[best])
        runs = [template_run(table["path"], lr, seed, folder / "nested", overrides) for lr in TEMPLATE_LRS]
        template = min(runs, key=lambda r: r["val_loss"])
        logreg = logistic_regression(table["path"], seed)
        rows.append({"seed": seed, "recipe": best, "template": template["test_acc"], "logreg": logreg["test_acc"]})
    return rows


def main() -> None:
    os.environ.setdefault("PYTHONHASHSEED", "0")
    logreg: dict[str, float] = {}
    nested: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        os.chdir(folder)
        tables = write_tables(folder)
        inner_tables = {t["name"]: [non_test_table(t["path"], seed, folder) for seed in range(SEEDS)] for t in tables}
        for name, paths in inner_tables.items():
            logreg[name] = statistics.mean(logistic_regression_val(p, s) for p in paths for s in range(INNER))
        results = search(inner_tables, folder)
        for table in tables:
            nested[table["name"]] = nested_check(table, results, folder)
    names = list(logreg)

    def pooled(candidate: str, name: str, key: str) -> float:
        return statistics.mean(r[key] for r in results[candidate][name])

    lines = [
        "| recipe | " + " | ".join(f"{n}: val acc / val loss" for n in names) + " | mean val acc | mean val loss |",
        "|---|" + "---|" * (len(names) + 2),
    ]
    for candidate in results:
        cells = " | ".join(
            f"{pooled(candidate, n, 'val_acc'):.4f} / {pooled(candidate, n, 'val_loss'):.4f}" for n in names
        )
        mean_acc = statistics.mean(pooled(candidate, n, "val_acc") for n in names)
        mean_loss = statistics.mean(pooled(candidate, n, "val_loss") for n in names)
        lines.append(f"| {candidate} | {cells} | {mean_acc:.4f} | {mean_loss:.4f} |")
    lines.append(
        "| LogisticRegression (for scale) | "
        + " | ".join(f"{logreg[n]:.4f} / -" for n in names)
        + f" | {statistics.mean(logreg.values()):.4f} | - |"
    )
    nested_lines = [
        "| data | template test acc (mean of splits) | LogisticRegression test acc (mean) | difference | "
        "recipe chosen per split |",
        "|---|---|---|---|---|",
    ]
    for name, rows in nested.items():
        template = statistics.mean(r["template"] for r in rows)
        logreg_test = statistics.mean(r["logreg"] for r in rows)
        nested_lines.append(
            f"| {name} | {template:.4f} | {logreg_test:.4f} | {points(template - logreg_test)} pt | "
            + "; ".join(f"{r['seed']}: {r['recipe']}" for r in rows)
            + " |"
        )
    note = (
        f"Validation figures: {SEEDS} outer splits (data seeds 0 to {SEEDS - 1}, their test rows left out) x "
        f"{INNER} inner train/validation cuts of the remaining rows, per data set; on each cut the lr of "
        f"{', '.join(map(str, TEMPLATE_LRS))} with the lowest validation loss is kept. Pooled over the outer "
        "splits, a row that is one split's test row is a training or validation row in the other splits' cuts, "
        "so the pooled table is not independent of those test rows; the nested check below is: each split's "
        "recipe is chosen on that split's own cuts only, then tested once on that split's test rows.\n"
        "Command: python bench/tabular_recipe_search.py\n"
    )
    text = f"{note}\n" + "\n".join(lines) + "\n\nNested check (test rows):\n\n" + "\n".join(nested_lines) + "\n"
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "tabular_recipe_search.md").write_text(text)
    (RESULTS / "tabular_recipe_search.json").write_text(
        json.dumps({"template": results, "logistic_regression_val_acc": logreg, "nested": nested}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
