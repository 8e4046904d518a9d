"""CIFAR-10 on this CPU: configs/cifar10_cpu.yaml as a user runs it, the blitz baseline, and
what the data path costs.

    python bench/cifar10_cpu.py --data_dir ../shared/datasets/cifar10-train-jpeg.zip   # ~20 min
    python bench/cifar10_cpu.py --recipe_only   # part 1 alone (~17 min), parts 2 and 3 kept

1. The recipe: `python train.py fit --config configs/cifar10_cpu.yaml --data.data_dir D`, run
   as its own process with an empty cache folder, so that its wall time includes the
   first-time decode. Peak resident memory is that process's alone (GNU time's %M).
   From its output: the decode time (the data module prints it), and the validation accuracy
   with its time since the fit started (one PlainTextProgress line per validation).
   The config validates only after its last epoch, so the curve comes from a second, untimed
   run of the same command on the cache with `--trainer.check_val_every_n_epoch N`
   (`--curve_every`, 3): validating does not change the training (nothing in it draws random
   numbers), which the two runs' last accuracies check.
2. The blitz baseline: `configs/cifar10_blitz.yaml` the same way, on the cache that run 1 left.
3. The data path, in this process: training images/s of the recipe's net through the
   Lightning Trainer, fed once by the real data module (uint8 in memory, gathered, flipped,
   translated and normalised per batch) and once by batches already normalised in memory,
   each 20 timed steps after 3 warm-up steps, for ROUNDS rounds; the side that goes first
   alternates, and each pair of rounds (one of each order) gives one ratio, the geometric
   mean of its two. The mean of those and their range are reported, with the time the real
   data module spends per batch measured directly.

Writes bench/results/cifar10_cpu.{json,md}. Time it alone: two jobs on 2 cores time each other.
"""

import argparse
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from src.cli.template_cli import TemplateCLI  # noqa: E402
from src.datamodules.in_memory_loader import InMemoryLoader  # noqa: E402

RESULTS = ROOT / "bench" / "results"
CIFAR10_BLITZ = "configs/cifar10_blitz.yaml"
ROUNDS = 6  # even: as many rounds with each side first
EPOCH_LINE = re.compile(r"^epoch (\d+)/(\d+) .*val/acc ([0-9.]+) .* (\d+)s$")
DECODE_LINE = re.compile(r"^Decoded ([0-9,]+) images in ([0-9.]+) s")


def host_cpu() -> str:
    """The CPU this runs on (/proc/cpuinfo's model name, family and model, as lscpu shows them):
    the same config's time differs by host."""
    cpuinfo = Path("/proc/cpuinfo")
    fields: dict[str, str] = {}
    for line in (cpuinfo.read_text() if cpuinfo.exists() else "").splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name") or platform.processor() or platform.machine()
    family = f", family {fields['cpu family']} model {fields['model']}" if "cpu family" in fields else ""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()  # Linux only
    return f"{name}{family}, {usable} CPUs usable"


def config_args(config: str, data_dir: str, cache_dir: Path, logs: Path) -> list[str]:
    """A config on the data, with its cache and logs in the bench's scratch folder."""
    return [
        "--config",
        config,
        "--data.data_dir",
        data_dir,
        "--data.cache_dir",
        str(cache_dir),
        "--trainer.logger.init_args.save_dir",
        str(logs),
    ]


# --- 1 and 2: whole commands ----------------------------------------------------------------
def run_command(config: str, data_dir: str, cache_dir: Path, logs: Path, extra: list[str]) -> dict[str, Any]:
    """`train.py fit` as its own process: wall time, peak RSS, decode time and the curve."""
    rss_file = logs.parent / "peak_rss_kib"
    command = [
        "/usr/bin/time",  # GNU time: the peak resident memory of this one command
        "-f",
        "%M",
        "-o",
        str(rss_file),
        sys.executable,
        "train.py",
        "fit",
        *config_args(config, data_dir, cache_dir, logs),
        "--trainer.enable_progress_bar",
        "false",
        *extra,
    ]
    logs.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return {
        "command": " ".join(["python", *command[6:11], "<data_dir>"]),
        "command_seconds": seconds,
        "peak_rss_gib": int(rss_file.read_text().split()[-1]) / 2**20,
        "host": host_cpu(),
        **fit_output(done.stdout),
    }


def fit_output(stdout: str) -> dict[str, Any]:
    """The decode time and the validation curve (with each epoch's time) that a fit printed."""
    curve, decode = [], None
    for line in stdout.splitlines():
        if match := EPOCH_LINE.match(line.strip()):
            curve.append({"epoch": int(match[1]), "val_acc": float(match[3]), "seconds_since_fit_start": int(match[4])})
        elif match := DECODE_LINE.match(line.strip()):
            decode = {"images": int(match[1].replace(",", "")), "seconds": float(match[2])}
    return {
        "decode": decode,
        "fit_seconds": curve[-1]["seconds_since_fit_start"] if curve else None,
        "final_val_acc": curve[-1]["val_acc"] if curve else None,
        "best_val_acc": max(point["val_acc"] for point in curve) if curve else None,
        "curve": curve,
    }


# --- 3: the data path ------------------------------------------------------------------------
class StepTimer(L.Callback):
    """Wall time of the training steps after `warmup` steps."""

    def __init__(self, warmup: int = 3) -> None:
        self.warmup, self.start, self.steps, self.elapsed = warmup, 0.0, 0, 0.0

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
    """Training images/s over the timed steps."""
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
    return timer.steps * cli.datamodule.batch_size / timer.elapsed


def batch_preparation_seconds(datamodule: L.LightningDataModule, batches: int = 20) -> float:
    """Median time the real data module takes to hand over one training batch: the loader's
    gather plus `on_after_batch_transfer` (flip, translate, normalise), timed directly."""
    loader = datamodule.train_dataloader()
    datamodule.trainer = TrainingFlag()  # type: ignore[assignment]  # augment, as in fit
    times = []
    for index, batch in enumerate(loader):
        if index == batches:
            break
        start = time.perf_counter()
        datamodule.on_after_batch_transfer(batch, 0)
        times.append(time.perf_counter() - start)
    # the gather happens inside the loader's iteration: time it on its own
    iterator, gathers = iter(loader), []
    for _ in range(min(batches, len(loader))):
        start = time.perf_counter()
        next(iterator)
        gathers.append(time.perf_counter() - start)
    return statistics.median(times) + statistics.median(gathers)


class TrainingFlag:
    """A stand-in trainer whose `training` flag makes the data module augment, as in fit, in an
    odd epoch (the alternating flip mirrors the whole batch then: its costlier side)."""

    training = True
    current_epoch = 1


def data_path(data_dir: str, cache_dir: Path, logs: Path, round_count: int) -> dict[str, Any]:
    # full-size images on both sides: the recipe's first epochs train on crops
    args = [*config_args("configs/cifar10_cpu.yaml", data_dir, cache_dir, logs), "--data.crop_epochs", "0"]
    cli = TemplateCLI(args=args, run=False)
    cli.datamodule.prepare_data()
    synthetic_data = SyntheticBatches(cli.datamodule.batch_size, 23)
    rounds = []
    for index in range(round_count):
        order = ("real", "synthetic") if index % 2 == 0 else ("synthetic", "real")
        measured = {
            side: images_per_second(cli, cli.datamodule if side == "real" else synthetic_data) for side in order
        }
        rounds.append({**measured, "ratio": measured["real"] / measured["synthetic"], "first": order[0]})
    # Whichever side runs first in a round runs a few percent faster here, so each pair of rounds
    # (real first, then synthetic first) gives one ratio: the geometric mean of the two.
    pairs = [math.sqrt(a["ratio"] * b["ratio"]) for a, b in zip(rounds[::2], rounds[1::2], strict=True)]
    preparation = batch_preparation_seconds(cli.datamodule)
    synthetic = statistics.median(r["synthetic"] for r in rounds)
    step_seconds = cli.datamodule.batch_size / synthetic
    return {
        "rounds": rounds,
        "pair_ratios": pairs,
        "images_per_s_real_median": statistics.median(r["real"] for r in rounds),
        "images_per_s_synthetic_median": synthetic,
        "ratio_mean_of_pairs": statistics.mean(pairs),
        "ratio_min": min(pairs),
        "ratio_max": max(pairs),
        "batch_preparation_ms": 1000 * preparation,
        "step_ms_synthetic": 1000 * step_seconds,
        "batch_preparation_share": preparation / (step_seconds + preparation),
        "host": host_cpu(),
    }


def hosts_line(recipe: dict[str, Any], blitz: dict[str, Any], path: dict[str, Any]) -> str:
    """Which CPU measured each part: a part kept from an earlier run may come from another host."""
    parts = (("the recipe", recipe), ("the blitz baseline", blitz), ("the data path", path))
    recorded = [run.get("host") for _, run in parts]
    if None not in recorded and len(set(recorded)) == 1:
        return f"Host: {recorded[0]}"
    named = (f"{part} on {host or 'a host not recorded'}" for (part, _), host in zip(parts, recorded, strict=True))
    return "Hosts (compare times only between parts on the same host): " + "; ".join(named)


def write_results(result: dict[str, Any], folder: Path) -> None:
    folder.mkdir(exist_ok=True)
    (folder / "cifar10_cpu.json").write_text(json.dumps(result, indent=2) + "\n")
    recipe, blitz, path = result["recipe"], result["blitz"], result["data_path"]
    lines = [
        f"Command: python bench/cifar10_cpu.py --data_dir <the shared zip> ({result['torch_threads']} torch threads)"
        + ("; part 3 (the data path) re-measured later with --data_path_only" if result.get("data_path_only") else "")
        + (
            "; part 1 (the recipe) re-measured later with --recipe_only, parts 2 and 3 kept from earlier runs "
            "(their configs of then)"
            if result.get("recipe_only")
            else ""
        ),
        "",
        hosts_line(recipe, blitz, path),
        "",
        "| config | command wall s (first-time decode included) | decode s | command s without the decode "
        "| fit s (first epoch start to last validation) | best val acc | peak RSS of the command (GiB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, run in (("cifar10_cpu.yaml", recipe), ("cifar10_blitz.yaml", blitz)):
        decode = run["decode"]["seconds"] if run["decode"] else 0.0
        # --recipe_only keeps the blitz row from an earlier run, whose cache the recipe did not build
        cached = "cached, an earlier run of the bench" if result.get("recipe_only") else "cache of the run above"
        shown = f"{decode:.1f}" if run["decode"] else f"0 ({cached})"
        lines.append(
            f"| {name} | {run['command_seconds']:.0f} | {shown} | {run['command_seconds'] - decode:.0f} "
            f"| {run['fit_seconds']} | {run['best_val_acc']:.4f} | {run['peak_rss_gib']:.2f} |"
        )
    curve_run = recipe.get("curve_run")
    if curve_run:
        same = curve_run["final_val_acc"] == recipe["final_val_acc"]
        lines += [
            "",
            f"Validation curve of cifar10_cpu.yaml (accuracy on the 5,000 held-out training images, with the "
            f"config's test-time augmentation), from an untimed second run with "
            f"`--trainer.check_val_every_n_epoch {curve_run['every']}`; its last accuracy "
            f"{curve_run['final_val_acc']:.4f} {'equals' if same else 'DIFFERS FROM'} the timed run's "
            f"{recipe['final_val_acc']:.4f}:",
            "",
            "| epoch | " + " | ".join(str(p["epoch"]) for p in curve_run["curve"]) + " |",
            "|---|" + "---|" * len(curve_run["curve"]),
            "| val acc | " + " | ".join(f"{p['val_acc']:.4f}" for p in curve_run["curve"]) + " |",
        ]
    else:
        lines += [
            "",
            "Validation curve of cifar10_cpu.yaml (accuracy on the 5,000 held-out training images, with the "
            "config's test-time augmentation):",
            "",
            "| epoch | " + " | ".join(str(p["epoch"]) for p in recipe["curve"]) + " |",
            "|---|" + "---|" * len(recipe["curve"]),
            "| val acc | " + " | ".join(f"{p['val_acc']:.4f}" for p in recipe["curve"]) + " |",
            "| s since fit start | " + " | ".join(str(p["seconds_since_fit_start"]) for p in recipe["curve"]) + " |",
        ]
    lines += [
        "",
        f"Data path: {len(path['rounds'])} rounds of 20 timed training steps each side, the side that goes first "
        "alternating; one ratio per pair of rounds (geometric mean of the two):",
        "",
        "| img/s real data (median) | img/s synthetic (median) | real / synthetic: mean of pairs (min to max) "
        "| batch preparation, timed directly (ms) | its share of a step |",
        "|---|---|---|---|---|",
        f"| {path['images_per_s_real_median']:.0f} | {path['images_per_s_synthetic_median']:.0f} "
        f"| {path['ratio_mean_of_pairs']:.3f} ({path['ratio_min']:.3f} to {path['ratio_max']:.3f}) "
        f"| {path['batch_preparation_ms']:.1f} | {100 * path['batch_preparation_share']:.1f}% |",
    ]
    table = "\n".join(lines) + "\n"
    (folder / "cifar10_cpu.md").write_text(table)
    print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default="../shared/datasets/cifar10-train-jpeg.zip")
    parser.add_argument("--smoke", action="store_true", help="a quick check of this script; keeps no results")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--data_path_only", action="store_true", help="re-measure part 3, keep parts 1 and 2")
    only.add_argument("--recipe_only", action="store_true", help="re-measure part 1, keep parts 2 and 3")
    parser.add_argument("--curve_every", type=int, default=3, help="the curve run's validation interval (0: none)")
    args = parser.parse_args()
    sys.argv = sys.argv[:1]  # the in-process TemplateCLI below reads only its own arguments
    extra = ["--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "2"] if args.smoke else []
    data_dir = str(Path(args.data_dir).resolve())
    with tempfile.TemporaryDirectory() as scratch:
        cache, logs = Path(scratch) / "cache", Path(scratch) / "logs"
        keeps_some = args.data_path_only or args.recipe_only
        previous = json.loads((RESULTS / "cifar10_cpu.json").read_text()) if keeps_some else {}
        if args.data_path_only:
            recipe, blitz = previous["recipe"], previous["blitz"]
        else:
            recipe = run_command("configs/cifar10_cpu.yaml", data_dir, cache, logs, extra)
            if args.curve_every:
                every = ["--trainer.check_val_every_n_epoch", str(args.curve_every)]
                curve_run = run_command("configs/cifar10_cpu.yaml", data_dir, cache, logs, extra + every)
                recipe["curve_run"] = {
                    "every": args.curve_every,
                    "final_val_acc": curve_run["final_val_acc"],
                    "curve": curve_run["curve"],
                }
            blitz = previous["blitz"] if args.recipe_only else run_command(CIFAR10_BLITZ, data_dir, cache, logs, extra)
        if args.recipe_only:
            path = previous["data_path"]
        else:
            path = data_path(data_dir, cache, logs, round_count=2 if args.smoke else ROUNDS)
        result = {"recipe": recipe, "blitz": blitz, "data_path": path, "torch_threads": torch.get_num_threads()}
        # a part kept from an earlier run keeps the note of how it was measured
        result["data_path_only"] = args.data_path_only or bool(previous.get("data_path_only"))
        result["recipe_only"] = args.recipe_only
        write_results(result, Path(scratch) / "results" if args.smoke else RESULTS)


if __name__ == "__main__":
    main()
