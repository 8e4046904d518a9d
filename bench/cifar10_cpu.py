"""CIFAR-10 on this CPU: the data path's cost, and the cifar10_cpu.yaml recipe end to end.

    python -m zipfile -e ../shared/datasets/cifar10-train-jpeg.zip /tmp/cifar10   # or pass the zip
    python bench/cifar10_cpu.py --data_dir ../shared/datasets/cifar10-train-jpeg.zip

1. Data path: training images/s of the recipe's net through the Lightning Trainer, fed by
   the real data module (uint8 on the device, flip + translate + normalise per batch) and
   by batches already normalised in memory, 20 steps each after 3 warm-up steps,
   alternately three times; the ratio compares the medians.
2. The recipe: `fit` with configs/cifar10_cpu.yaml; training time (fit, validation
   included), best validation accuracy (held-out training images; the shared copy has no
   test split) and peak resident memory. Writes bench/results/cifar10_cpu.{json,md}.
"""

import argparse
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

from src.cli.template_cli import TemplateCLI
from src.datamodules.in_memory_loader import InMemoryLoader

RESULTS = Path(__file__).parent / "results"


class StepTimer(L.Callback):
    """Wall time of training steps after `warmup` steps, and the part of it spent between a
    batch's end and the next batch's start: fetching, moving and augmenting the batch."""

    def __init__(self, warmup: int = 3) -> None:
        self.warmup, self.start, self.steps, self.between, self.last_end = warmup, 0.0, 0, 0.0, None

    def on_train_batch_start(self, trainer: L.Trainer, *args: object) -> None:
        if trainer.global_step == self.warmup:
            self.start = time.perf_counter()
        elif trainer.global_step > self.warmup and self.last_end is not None:
            self.between += time.perf_counter() - self.last_end

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        self.last_end = time.perf_counter()
        if trainer.global_step > self.warmup:
            self.steps = trainer.global_step - self.warmup
            self.elapsed = self.last_end - self.start


class SyntheticBatches(L.LightningDataModule):
    """Batches already normalised and in memory: slices of one float tensor, nothing else."""

    def __init__(self, batch_size: int, steps: int) -> None:
        super().__init__()
        self.batch_size, self.steps = batch_size, steps

    def train_dataloader(self) -> InMemoryLoader:
        count = self.batch_size * self.steps
        return InMemoryLoader((torch.randn(count, 3, 32, 32), torch.randint(0, 10, (count,))), self.batch_size)


def images_per_second(cli: TemplateCLI, datamodule: L.LightningDataModule, steps: int = 23) -> tuple[float, float]:
    """Training images/s, and the share of each step spent getting its batch ready."""
    timer = StepTimer()
    trainer = L.Trainer(
        max_steps=steps,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
        accelerator="cpu",
    )
    trainer.fit(cli.model, datamodule=datamodule)
    return timer.steps * cli.datamodule.batch_size / timer.elapsed, timer.between / timer.elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data_dir", default="../shared/datasets/cifar10-train-jpeg.zip")
    parser.add_argument("--cache_dir", default="data/cache")
    parser.add_argument("--data_path_only", action="store_true", help="re-measure only part 1, keep part 2's figures")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as logs:
        base = [
            "--config",
            "configs/cifar10_cpu.yaml",
            "--data.data_dir",
            args.data_dir,
            "--data.cache_dir",
            args.cache_dir,
            "--trainer.logger.init_args.save_dir",
            logs,
            "--trainer.enable_progress_bar",
            "false",
        ]
        probe = TemplateCLI(args=base, run=False)
        probe.datamodule.prepare_data()
        # Alternate the two, three times, and compare medians: one timing varies by +-10% here.
        reals, synthetics = [], []
        for _ in range(3):
            reals.append(images_per_second(probe, probe.datamodule))
            synthetics.append(images_per_second(probe, SyntheticBatches(probe.datamodule.batch_size, 23)))
        if args.data_path_only:
            previous = json.loads((RESULTS / "cifar10_cpu.json").read_text())
            previous.pop("data_path_ratio", None)
            write_results({**previous, **data_path_figures(reals, synthetics)})
            return

        cli = TemplateCLI(args=base, run=False)
        start = time.perf_counter()
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        fit_seconds = time.perf_counter() - start
        best = float(cli.trainer.checkpoint_callback.best_model_score)
    result = {
        **data_path_figures(reals, synthetics),
        "epochs": cli.trainer.max_epochs,
        "fit_seconds": fit_seconds,
        "best_val_acc": best,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "torch_threads": torch.get_num_threads(),
    }
    write_results(result)


def data_path_figures(reals: list[tuple[float, float]], synthetics: list[tuple[float, float]]) -> dict:
    """Throughputs (medians) and the in-step data share: the real pipeline's share of each
    step spent readying batches, minus the synthetic one's (Lightning's own bookkeeping).
    The share is measured inside each step, so the machine's speed drifting between runs
    (+-20% here) does not enter it."""
    real = statistics.median(r for r, _ in reals)
    synthetic = statistics.median(r for r, _ in synthetics)
    real_share = statistics.median(s for _, s in reals)
    synthetic_share = statistics.median(s for _, s in synthetics)
    return {
        "train_images_per_s_real_data": real,
        "train_images_per_s_synthetic": synthetic,
        "throughput_ratio": real / synthetic,
        "data_share_of_step_real": real_share,
        "data_share_of_step_synthetic": synthetic_share,
        "data_path_cost": real_share - synthetic_share,
        "real_samples": reals,
        "synthetic_samples": synthetics,
    }


def write_results(result: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cifar10_cpu.json").write_text(json.dumps(result, indent=2))
    table = (
        "| epochs | fit time (s) | best val acc (TTA) | peak RSS (GiB) | img/s real data | img/s synthetic "
        "| data path's share of a step (real - synthetic) |\n"
        "|---|---|---|---|---|---|---|\n"
        f"| {result['epochs']} | {result['fit_seconds']:.0f} | {result['best_val_acc']:.4f} | "
        f"{result['peak_rss_gib']:.2f} | {result['train_images_per_s_real_data']:.0f} | "
        f"{result['train_images_per_s_synthetic']:.0f} | {100 * result['data_path_cost']:.1f}% "
        f"({100 * result['data_share_of_step_real']:.1f}% - {100 * result['data_share_of_step_synthetic']:.1f}%) |\n"
    )
    (RESULTS / "cifar10_cpu.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
