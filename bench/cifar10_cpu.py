"""CIFAR-10 on this CPU: the data path's cost, and the cifar10_cpu.yaml recipe end to end.

    python -m zipfile -e ../shared/datasets/cifar10-train-jpeg.zip /tmp/cifar10   # or pass the zip
    python bench/cifar10_cpu.py --data_dir ../shared/datasets/cifar10-train-jpeg.zip

1. Data path: training images/s of the recipe's net through the Lightning Trainer, fed by
   the real data module (uint8 on the device, flip + translate + normalise per batch) and
   by batches already normalised in memory, 20 steps each after 3 warm-up steps,
   alternately twice, best of each.
2. The recipe: `fit` with configs/cifar10_cpu.yaml; training time (fit, validation
   included), best validation accuracy (held-out training images; the shared copy has no
   test split) and peak resident memory. Writes bench/results/cifar10_cpu.{json,md}.
"""

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

from src.cli import TemplateCLI
from src.datamodules.in_memory_loader import InMemoryLoader

RESULTS = Path(__file__).parent / "results"


class StepTimer(L.Callback):
    """Wall time of training steps after `warmup` steps."""

    def __init__(self, warmup: int = 3) -> None:
        self.warmup, self.start, self.steps = warmup, 0.0, 0

    def on_train_batch_start(self, trainer: L.Trainer, *args: object) -> None:
        if trainer.global_step == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if trainer.global_step > self.warmup:
            self.steps = trainer.global_step - self.warmup
            self.elapsed = time.perf_counter() - self.start


class SyntheticBatches(L.LightningDataModule):
    """Batches already normalised and in memory: slices of one float tensor, nothing else."""

    def __init__(self, batch_size: int, steps: int) -> None:
        super().__init__()
        self.batch_size, self.steps = batch_size, steps

    def train_dataloader(self) -> InMemoryLoader:
        count = self.batch_size * self.steps
        return InMemoryLoader((torch.randn(count, 3, 32, 32), torch.randint(0, 10, (count,))), self.batch_size)


def images_per_second(cli: TemplateCLI, datamodule: L.LightningDataModule, steps: int = 23) -> float:
    timer = StepTimer()
    trainer = L.Trainer(
        max_steps=steps, limit_val_batches=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[timer], accelerator="cpu",
    )
    trainer.fit(cli.model, datamodule=datamodule)
    return timer.steps * cli.datamodule.batch_size / timer.elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data_dir", default="../shared/datasets/cifar10-train-jpeg.zip")
    parser.add_argument("--cache_dir", default="data/cache")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as logs:
        base = [
            "--config", "configs/cifar10_cpu.yaml", "--data.data_dir", args.data_dir, "--data.cache_dir", args.cache_dir,
            "--trainer.logger.init_args.save_dir", logs, "--trainer.enable_progress_bar", "false",
        ]
        probe = TemplateCLI(args=base, run=False)
        probe.datamodule.prepare_data()
        # Alternate the two, twice, and keep the best of each: single timings vary by ~5%.
        real, synthetic = 0.0, 0.0
        for _ in range(2):
            real = max(real, images_per_second(probe, probe.datamodule))
            synthetic = max(synthetic, images_per_second(probe, SyntheticBatches(probe.datamodule.batch_size, 23)))

        cli = TemplateCLI(args=base, run=False)
        start = time.perf_counter()
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        fit_seconds = time.perf_counter() - start
        best = float(cli.trainer.checkpoint_callback.best_model_score)
    result = {
        "train_images_per_s_real_data": real,
        "train_images_per_s_synthetic": synthetic,
        "data_path_ratio": real / synthetic,
        "epochs": cli.trainer.max_epochs,
        "fit_seconds": fit_seconds,
        "best_val_acc": best,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "torch_threads": torch.get_num_threads(),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cifar10_cpu.json").write_text(json.dumps(result, indent=2))
    table = (
        "| epochs | fit time (s) | best val acc (TTA) | peak RSS (GiB) | img/s real data | img/s synthetic | ratio |\n"
        "|---|---|---|---|---|---|---|\n"
        f"| {result['epochs']} | {fit_seconds:.0f} | {best:.4f} | {result['peak_rss_gib']:.2f} | {real:.0f} "
        f"| {synthetic:.0f} | {result['data_path_ratio']:.3f} |\n"
    )
    (RESULTS / "cifar10_cpu.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
