"""Fine-tuning from your own checkpoint vs training from scratch, on CIFAR-10 classes a net never saw.

    python bench/finetune_figures.py --data_dir ../shared/datasets/cifar10-train-jpeg.zip

1. Base task: 7 CIFAR-10 classes (airplane, automobile, bird, deer, frog, ship, truck),
   `--base_per_class` training images each (10% held out for validation), trained with
   configs/image_folder.yaml (AirbenchNet with a whitened stem, one-cycle Nesterov SGD,
   label smoothing 0.2, flip + translate, batch 128) for `--base_epochs` epochs; widths
   16/32/64 (`--widths`; the config's are 32/64/128) keep the whole bench to minutes on 2
   shared CPU cores.
2. New task: the other 3 classes (cat, dog, horse). Of each class's 5,000 images the last
   1,000 (by file name) are the held-out test split; of the other 4,000 only 10% (the first
   400) are given to train on (10% of those held out for validation). Two runs with the same
   recipe, seed and epochs: from scratch (the stem whitened from the new images), and
   fine-tuned from the base run's best checkpoint (`init_from`: every tensor but the 7-class
   head, which starts fresh with 3 outputs; the stem comes from the checkpoint). A third run
   fine-tunes with the backbone frozen for the first `--unfreeze_at` epochs
   (UnfreezeBackbone, backbone at 0.1x the head's LR once unfrozen).
Accuracy is the best-validation checkpoint's on the same held-out test split; times are the
wall time of each `fit` (validation and the final test included; images decoded beforehand).
Writes bench/results/finetune_figures.{md,json}.
"""

import argparse
import json
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the bench's InitFrom callback is named by class path below

import torch  # noqa: E402
from lightning.pytorch import Callback, LightningModule, Trainer  # noqa: E402

from src.cli.template_cli import TemplateCLI  # noqa: E402
from src.datamodules import ImageFolderDataModule  # noqa: E402
from src.modules.task import load_net_weights  # noqa: E402

RESULTS = ROOT / "bench" / "results"
BASE_CLASSES = ("airplane", "automobile", "bird", "deer", "frog", "ship", "truck")
NEW_CLASSES = ("cat", "dog", "horse")
CONFIG = "configs/image_folder.yaml"


class InitFrom(Callback):
    """What `model.init_from` does, as a callback given on the command line: loads the checkpoint's
    net with the same function, before the first training step."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit":
            print(load_net_weights(pl_module.net, self.path))


def write_tree(archive: zipfile.ZipFile, root: Path, picks: dict[str, dict[str, list[str]]]) -> int:
    """Extract the chosen members as root/<split>/<class>/<file>."""
    count = 0
    for split, classes in picks.items():
        for label, names in classes.items():
            folder = root / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for name in names:
                (folder / Path(name).name).write_bytes(archive.read(name))
                count += 1
    return count


def fit(args: list[str]) -> tuple[TemplateCLI, float]:
    start = time.perf_counter()
    cli = TemplateCLI(args=["fit", *args])
    return cli, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", type=Path, default=ROOT.parent / "shared/datasets/cifar10-train-jpeg.zip")
    parser.add_argument("--base_per_class", type=int, default=1000)
    parser.add_argument("--base_epochs", type=int, default=3)
    parser.add_argument("--new_epochs", type=int, default=10)
    parser.add_argument("--unfreeze_at", type=int, default=3)
    parser.add_argument("--widths", default="16,32,64", help="AirbenchNet's widths (the config's: 32,64,128)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: steady on cores shared with other jobs)"
    )
    options = parser.parse_args()
    torch.set_num_threads(options.threads)  # two threads on two busy cores were 5x slower than one
    work = Path(tempfile.mkdtemp(prefix="finetune_figures_"))
    try:
        run_all(options, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_all(options: argparse.Namespace, work: Path) -> None:
    started = time.perf_counter()

    with zipfile.ZipFile(options.data_dir) as archive:
        members: dict[str, list[str]] = {}
        for name in sorted(archive.namelist()):
            parts = name.split("/")
            if len(parts) == 3 and parts[0] == "train" and parts[2]:
                members.setdefault(parts[1], []).append(name)
        base = {"train": {c: members[c][: options.base_per_class] for c in BASE_CLASSES}}
        pools = {c: members[c][: len(members[c]) * 4 // 5] for c in NEW_CLASSES}  # the rest is the test split
        new = {
            "train": {c: pool[: len(pool) // 10] for c, pool in pools.items()},
            "test": {c: members[c][len(pools[c]) :] for c in NEW_CLASSES},
        }
        write_tree(archive, work / "base", base)
        write_tree(archive, work / "new", new)
    counts = {
        "base_train": sum(len(v) for v in base["train"].values()),
        "new_train": sum(len(v) for v in new["train"].values()),
        "new_test": sum(len(v) for v in new["test"].values()),
    }
    common = [
        "--config",
        str(ROOT / "configs" / "image_folder.yaml"),
        "--data.cache_dir",
        str(work / "cache"),
        "--trainer.logger.init_args.save_dir",
        str(work / "logs"),
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
        "--model.net.init_args.widths",
        f"[{options.widths}]",
    ]
    for tree in ("base", "new"):  # decode once, outside the timed fits
        ImageFolderDataModule(work / tree, cache_dir=work / "cache").prepare_data()

    whitening = '[{"class_path": "src.callbacks.PatchWhitening"}]'
    base_cli, base_time = fit(
        [
            *common,
            "--data.data_dir",
            str(work / "base"),
            "--trainer.max_epochs",
            str(options.base_epochs),
            "--trainer.callbacks",
            whitening,
            "--trainer.logger.init_args.name",
            "base7",
        ]
    )
    checkpoint = base_cli.trainer.checkpoint_callback.best_model_path
    base_val = float(base_cli.trainer.checkpoint_callback.best_model_score)

    def new_task(name: str, callbacks: list[dict[str, object]]) -> dict[str, object]:
        cli, seconds = fit(
            [
                *common,
                "--data.data_dir",
                str(work / "new"),
                "--trainer.max_epochs",
                str(options.new_epochs),
                "--trainer.callbacks",
                json.dumps(callbacks),
                "--trainer.logger.init_args.name",
                name,
            ]
        )
        return {"test_acc": float(cli.test_results[0]["test/acc"]), "fit_seconds": round(seconds, 1)}

    init = {"class_path": "bench.finetune_figures.InitFrom", "init_args": {"path": checkpoint}}
    unfreeze = {"class_path": "src.callbacks.UnfreezeBackbone", "init_args": {"unfreeze_at_epoch": options.unfreeze_at}}
    runs = {
        "from scratch": new_task("new3_scratch", [{"class_path": "src.callbacks.PatchWhitening"}]),
        "fine-tuned from the 7-class checkpoint": new_task("new3_finetuned", [init]),
        f"fine-tuned, backbone frozen for {options.unfreeze_at} epoch(s)": new_task("new3_frozen", [init, unfreeze]),
    }
    record = {
        "command": "python bench/finetune_figures.py --data_dir ../shared/datasets/cifar10-train-jpeg.zip",
        "settings": {
            **vars(options),
            "data_dir": str(options.data_dir),
            **counts,
            "config": "configs/image_folder.yaml",
        },
        "machine": {"torch_threads": torch.get_num_threads(), "device": "cpu"},
        "total_seconds": round(time.perf_counter() - started, 1),
        "base": {"classes": BASE_CLASSES, "best_val_acc": round(base_val, 4), "fit_seconds": round(base_time, 1)},
        "new_task": {"classes": NEW_CLASSES, "runs": runs},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "finetune_figures.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [
        f"New task: {', '.join(NEW_CLASSES)} with {counts['new_train']} training images (10% of the 12,000; 10% of "
        f"them held out for validation); accuracy on the same {counts['new_test']} held-out images; "
        f"{options.new_epochs} epochs of {CONFIG} (AirbenchNet widths {options.widths}) each, CPU, "
        f"{torch.get_num_threads()} threads.",
        "",
        "| run | test accuracy (3 classes) | fit time (s) |",
        "|---|---|---|",
        *(f"| {name} | {run['test_acc']:.4f} | {run['fit_seconds']} |" for name, run in runs.items()),
        "",
        f"Base checkpoint: {', '.join(BASE_CLASSES)}, {counts['base_train']} training images (10% held out), "
        f"{options.base_epochs} epochs: best val accuracy {base_val:.4f} in {base_time:.0f} s.",
        "",
        "One seed, one trial per row; times are on CPU cores shared with other jobs and vary from run to run.",
        "",
        f"Command: `{record['command']}` ({record['total_seconds']:.0f} s in all, extracting and decoding included).",
    ]
    (RESULTS / "finetune_figures.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
