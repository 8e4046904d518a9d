"""CIFAR-10 on a CUDA GPU: configs/cifar10.yaml as a user runs it, and the CPU recipe's levers
measured on the GPU (accuracy only), several runs at once.

    python bench/cifar10_gpu.py --data_dir ../shared/datasets/cifar10-train-jpeg.zip
    python bench/cifar10_gpu.py --data_dir <zip> --levers_budget_s 300 --parallel 6

1. The GPU config: `python train.py fit --config configs/cifar10.yaml --data.data_dir D`, each
   run its own process; the first starts on an empty cache folder, so its wall time includes
   the first-time decode. From its output: the decode time, and the validation curve with each
   epoch's time since the fit started. One run per seed in --seeds.
2. The CPU recipe's levers: `configs/cifar10_cpu.yaml` plus each variant's flags, on the GPU in
   full precision, `--parallel` processes at a time, until `--levers_budget_s` has passed. Their
   times mean nothing (they share the GPU); their best validation accuracies say which levers
   to time on the CPU. GPU runs are not bit-deterministic, so the base recipe runs on several
   seeds to show the spread. (The levers in bench/results/cifar10_gpu.md ran on the recipe
   before it took label smoothing 0.1 and airbench's BatchNorm and init: there, label
   smoothing 0.1 was the lever and 0.2 the base.)

Writes cifar10_gpu.{json,md} into --out (bench/results by default), after every finished run;
with --append, adds this invocation's runs to those already there.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.cifar10_cpu import config_args, fit_output  # noqa: E402

# name -> flags added to configs/cifar10_cpu.yaml. Each costs the same CPU time as the base
# recipe unless its name says otherwise; the base runs on three seeds for the spread.
LEVERS: list[tuple[str, list[str]]] = [
    ("base seed 1", ["--seed_everything", "1"]),
    ("base seed 2", ["--seed_everything", "2"]),
    ("base seed 3", ["--seed_everything", "3"]),
    ("ema 0.99", ["--model.ema_decay", "0.99"]),
    ("ema 0.995", ["--model.ema_decay", "0.995"]),
    ("label smoothing 0.2", ["--model.label_smoothing", "0.2"]),
    ("label smoothing 0.3", ["--model.label_smoothing", "0.3"]),
    ("lr 0.35", ["--model.optimizer.init_args.lr", "0.35"]),
    ("lr 0.7", ["--model.optimizer.init_args.lr", "0.7"]),
    ("momentum 0.9", ["--model.optimizer.init_args.momentum", "0.9"]),
    ("pct_start 0.15", ["--model.scheduler.pct_start", "0.15"]),
    ("pct_start 0.35", ["--model.scheduler.pct_start", "0.35"]),
    ("translate 1", ["--data.translate", "1"]),
    ("translate 3", ["--data.translate", "3"]),
    ("weight decay 3e-4", ["--model.optimizer.init_args.weight_decay", "0.0003"]),
    ("logit scale 1/6", ["--model.net.init_args.logit_scale", "0.1666667"]),
    ("logit scale 1/12", ["--model.net.init_args.logit_scale", "0.0833333"]),
    ("crop 3 of 12 epochs (costlier)", ["--data.crop_epochs", "3"]),
    ("crop 7 of 12 epochs (cheaper)", ["--data.crop_epochs", "7"]),
    ("crop 28px (costlier)", ["--data.crop_size", "28"]),
    ("widths 32/96/192 (the previous recipe's, 1.15x speed)", ["--model.net.init_args.widths", "[32,96,192]"]),
    ("widths 48/96/192", ["--model.net.init_args.widths", "[48,96,192]"]),
    ("widths 32/128/192", ["--model.net.init_args.widths", "[32,128,192]"]),
    ("widths 32/64/256", ["--model.net.init_args.widths", "[32,64,256]"]),
    ("batch 512 lr 0.7", ["--data.batch_size", "512", "--model.optimizer.init_args.lr", "0.7"]),
    ("batch 128 lr 0.35", ["--data.batch_size", "128", "--model.optimizer.init_args.lr", "0.35"]),
    ("14 epochs crop 7", ["--trainer.max_epochs", "14", "--data.crop_epochs", "7"]),
    ("16 epochs crop 8 (costlier)", ["--trainer.max_epochs", "16", "--data.crop_epochs", "8"]),
    ("20 epochs crop 8 (ceiling)", ["--trainer.max_epochs", "20", "--data.crop_epochs", "8"]),
    ("ema 0.99 seed 2", ["--model.ema_decay", "0.99", "--seed_everything", "2"]),
    ("label smoothing 0.2 seed 2", ["--model.label_smoothing", "0.2", "--seed_everything", "2"]),
    ("widths 32/96/256 seed 2", ["--model.net.init_args.widths", "[32,96,256]", "--seed_everything", "2"]),
    ("label smoothing 0.2 seed 3", ["--model.label_smoothing", "0.2", "--seed_everything", "3"]),
    ("widths 32/96/256 seed 3", ["--model.net.init_args.widths", "[32,96,256]", "--seed_everything", "3"]),
    ("crop 7 of 12 epochs seed 2", ["--data.crop_epochs", "7", "--seed_everything", "2"]),
    ("base seed 4", ["--seed_everything", "4"]),
]


def fit_command(config: str, data_dir: str, cache_dir: Path, logs: Path, extra: list[str]) -> list[str]:
    """`train.py fit` of a config on the data, its cache and logs in the bench's scratch folder."""
    command = [sys.executable, "train.py", "fit", *config_args(config, data_dir, cache_dir, logs)]
    return [*command, "--trainer.enable_progress_bar", "false", *extra]


def config_runs(data_dir: str, cache_dir: Path, scratch: Path, seeds: list[int]) -> list[dict[str, Any]]:
    """configs/cifar10.yaml as a user runs it, one process per seed: wall time and the curve."""
    runs = []
    for seed in seeds:
        command = fit_command(
            "configs/cifar10.yaml", data_dir, cache_dir, scratch / f"gpu_{seed}", ["--seed_everything", str(seed)]
        )
        start = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            print(done.stdout[-3000:], done.stderr[-3000:], flush=True)
        run = {"seed": seed, "returncode": done.returncode, "command_seconds": seconds}
        runs.append({**run, **fit_output(done.stdout)})
        print(json.dumps(runs[-1]), flush=True)
    return runs


def lever_runs(
    data_dir: str,
    cache_dir: Path,
    scratch: Path,
    parallel: int,
    budget_s: float,
    save: Callable[[list[dict[str, Any]]], None],
    names: list[str] | None,
) -> list[dict[str, Any]]:
    """The CPU recipe's variants, `parallel` at a time, none started after the budget."""
    pending, running, done_runs = [lever for lever in LEVERS if names is None or lever[0] in names], [], []
    start = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    while pending or running:
        while pending and len(running) < parallel and time.perf_counter() - start < budget_s:
            name, flags = pending.pop(0)
            logs = scratch / re.sub(r"[^a-z0-9]+", "_", name.lower())
            command = fit_command(
                "configs/cifar10_cpu.yaml",
                data_dir,
                cache_dir,
                logs,
                # the recipe validates once; a lever's curve is worth 4 validations on a GPU
                ["--trainer.accelerator", "gpu", "--trainer.check_val_every_n_epoch", "3", *flags],
            )
            output = (scratch / f"{logs.name}.log").open("w")
            process = subprocess.Popen(command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, text=True, env=env)
            running.append((name, flags, process, output, time.perf_counter()))
        if not running:
            break
        time.sleep(1)
        for entry in list(running):
            name, flags, process, output, started = entry
            if process.poll() is None:
                continue
            running.remove(entry)
            output.close()
            text = Path(output.name).read_text()
            if process.returncode != 0:
                print(f"{name} failed:\n{text[-2000:]}", flush=True)
            result = {"name": name, "flags": flags, "returncode": process.returncode, **fit_output(text)}
            result["seconds"] = time.perf_counter() - started
            done_runs.append(result)
            print(json.dumps({k: result[k] for k in ("name", "best_val_acc", "seconds")}), flush=True)
            save(done_runs)
    return done_runs


def write(out: Path, results: dict[str, Any]) -> None:
    """The results as cifar10_gpu.json (every field) and cifar10_gpu.md (the tables)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "cifar10_gpu.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [f"GPU: {results.get('device')}; torch {results.get('torch')}", ""]
    lines += [f"Command: `{command}`" for command in results.get("commands", [])] + [""]
    if results.get("note"):
        lines += [results["note"], ""]
    if results.get("config_runs"):
        lines += [
            "configs/cifar10.yaml (python train.py fit --config configs/cifar10.yaml --data.data_dir <zip>);"
            " the first run decodes the images, the others use its cache:",
            "",
            "| seed | command wall s | decode s | fit s (first epoch start to last validation) | best val acc |"
            " final val acc |",
            "|---|---|---|---|---|---|",
        ]
        for run in results["config_runs"]:
            decode = run["decode"]["seconds"] if run["decode"] else 0
            final = run["curve"][-1]["val_acc"] if run["curve"] else None
            lines.append(
                f"| {run['seed']} | {run['command_seconds']:.0f} | {decode} | {run['fit_seconds']} |"
                f" {run['best_val_acc']} | {final} |"
            )
        lines.append("")
    if results.get("lever_runs"):
        lines += [
            "configs/cifar10_cpu.yaml's levers, run on the GPU in full precision, several at once"
            " (accuracy only; their times say nothing). Base: seed 42 unless named.",
            "",
            "| variant | flags | best val acc | val acc by epoch |",
            "|---|---|---|---|",
        ]
        for run in results["lever_runs"]:
            curve = " ".join(f"{p['val_acc']:.4f}" for p in run["curve"])
            lines.append(f"| {run['name']} | `{' '.join(run['flags'])}` | {run['best_val_acc']} | {curve} |")
    (out / "cifar10_gpu.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--seeds", type=int, nargs="*", default=[42, 1])
    parser.add_argument("--parallel", type=int, default=6)
    parser.add_argument("--levers_budget_s", type=float, default=300.0)
    parser.add_argument("--levers", nargs="*", help="run only these variants (names as in LEVERS)")
    parser.add_argument("--append", action="store_true", help="add to the results already in --out")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    import torch

    results: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device",
        "torch": torch.__version__,
        "commands": ["python bench/cifar10_gpu.py " + " ".join(sys.argv[1:])],
    }
    earlier: dict[str, Any] = {"commands": [], "config_runs": [], "lever_runs": []}
    if args.append and (args.out / "cifar10_gpu.json").exists():
        earlier = {**earlier, **json.loads((args.out / "cifar10_gpu.json").read_text())}
    results["commands"] = earlier["commands"] + results["commands"]
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        cache_dir = scratch / "cache"
        results["config_runs"] = earlier["config_runs"] + config_runs(args.data_dir, cache_dir, scratch, args.seeds)
        write(args.out, results)

        def save(runs: list[dict[str, Any]]) -> None:
            results["lever_runs"] = earlier["lever_runs"] + runs
            write(args.out, results)

        if args.levers_budget_s > 0:
            lever_runs(args.data_dir, cache_dir, scratch, args.parallel, args.levers_budget_s, save, args.levers)


if __name__ == "__main__":
    main()
