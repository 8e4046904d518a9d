"""Figures of the small tasks, and Lightning's cost against a plain PyTorch loop.

    python bench/template_figures.py            # writes bench/results/template_figures.{json,md}

For circles and the wave, the same net (same initial weights), optimizer, schedule, epochs
and full batches are trained by the Lightning Trainer with the task's default config
(validation, metrics, logging and checkpoints included) and by a tutorial-style loop
(zero_grad, forward, loss, backward, step), alternately, REPEATS times each in this
process. Only the training calls are timed; the ratio compares the fastest of each, since
timings on a shared 2-core machine vary by +-20% from one repetition to the next. Those
Lightning runs leave out the configs' figure callbacks (a plain loop draws nothing); one
more run with them gives the time a user of the default config sees.
"""

import copy
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.command_line import parse_no_options  # noqa: E402
from src.cli.template_cli import TemplateCLI  # noqa: E402
from src.modules.optimization import build_scheduler  # noqa: E402

RESULTS = Path(__file__).parent / "results"
REPEATS = 3


# The classic course's circles model: 2-10-10-1 ReLU MLP, SGD lr 0.1, 1,000 full-batch epochs.
COURSE_MODEL = [
    "--model.net.init_args.hidden_sizes",
    "[10, 10]",
    "--model.optimizer",
    "torch.optim.SGD",
    "--model.optimizer.lr",
    "0.1",
    "--trainer.max_epochs",
    "1000",
]
TASKS = {"circles_course": ("circles", COURSE_MODEL)}  # a name for a config plus flags


def build(config: str, log_dir: str, figures: bool = False) -> TemplateCLI:
    """The task's default config; without its figure callbacks unless `figures`, since a
    plain loop draws none (their cost is measured on its own)."""
    config, flags = TASKS.get(config, (config, []))
    args = [
        "--config",
        f"configs/{config}.yaml",
        "--trainer.logger.init_args.save_dir",
        log_dir,
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
        *([] if figures else ["--trainer.callbacks", "[]"]),
        *flags,
    ]
    return TemplateCLI(args=args, run=False)


def fit_seconds(cli: TemplateCLI) -> float:
    cli.datamodule.setup("fit")
    start = time.perf_counter()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    return time.perf_counter() - start


def plain_loop_seconds(cli: TemplateCLI, net: torch.nn.Module, loss_fn: Any) -> float:
    """Train `net` like the tutorials do, on the same full batches, and time it."""
    inputs, targets = cli.datamodule.splits["train"]
    optimizer = cli.model.make_optimizer(net.parameters())
    epochs = cli.trainer.max_epochs
    schedule = build_scheduler(optimizer, cli.model.scheduler_config, epochs, epochs)
    start = time.perf_counter()
    for _ in range(epochs):
        net.train()
        optimizer.zero_grad()
        loss = loss_fn(net(inputs), targets)
        loss.backward()
        optimizer.step()
        if schedule is not None:
            schedule["scheduler"].step()
    return time.perf_counter() - start


def run_task(config: str, log_dir: str, loss_fn: Any | None = None) -> dict[str, Any]:
    """Train `config` with Lightning (and the plain loop when `loss_fn` is given); return figures."""
    fit_times, plain_times = [], []
    for repeat in range(REPEATS if loss_fn is not None else 1):
        cli = build(config, str(Path(log_dir) / f"repeat_{repeat}"))
        initial_net = copy.deepcopy(cli.model.net)
        fit_times.append(fit_seconds(cli))
        if loss_fn is not None:
            plain_times.append(plain_loop_seconds(cli, initial_net, loss_fn))
    best = cli.trainer.checkpoint_callback.best_model_path
    metrics = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=best, verbose=False)[0]
    with_figures = fit_seconds(build(config, str(Path(log_dir) / "with_figures"), figures=True))
    result: dict[str, Any] = {
        "config": config,
        "epochs": cli.trainer.max_epochs,
        "lightning_fit_s": min(fit_times),
        "lightning_fit_with_figures_s": with_figures,
    }
    result.update({k: float(v) for k, v in metrics.items()})
    if loss_fn is not None:
        steps = cli.trainer.global_step
        result.update(
            steps=steps,
            lightning_ms_per_step=1000 * min(fit_times) / steps,
            plain_ms_per_step=1000 * min(plain_times) / steps,
            overhead_ms_per_step=1000 * (min(fit_times) - min(plain_times)) / steps,
            plain_loop_s=min(plain_times),
            lightning_over_plain=min(fit_times) / min(plain_times),
            lightning_fit_samples_s=fit_times,
            plain_loop_samples_s=plain_times,
        )
    result["cli"] = cli
    return result


def main() -> None:
    parse_no_options(__doc__)
    rows = []
    with tempfile.TemporaryDirectory() as log_dir:
        circles = run_task(
            "circles", log_dir, lambda out, y: F.binary_cross_entropy_with_logits(out.squeeze(1), y.float())
        )
        rows.append(circles)
        rows.append(
            run_task(
                "circles_course",
                log_dir,
                lambda out, y: F.binary_cross_entropy_with_logits(out.squeeze(1), y.float()),
            )
        )
        rows.append(run_task("blobs", log_dir))
        linear = run_task("regression_linear", log_dir)
        layer = linear["cli"].model.net.layers[0]
        linear.update(weight=layer.weight.item(), bias=layer.bias.item())
        rows.append(linear)
        wave = run_task("regression", log_dir, F.mse_loss)
        floor = wave["cli"].datamodule.noise_floor("test")
        wave.update(noise_floor_mse=floor, mse_over_floor=wave["test/mse"] / floor)
        rows.append(wave)
    for row in rows:
        row.pop("cli")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "template_figures.json").write_text(json.dumps(rows, indent=2))
    lines = [
        "| task | epochs | test metric | extra | Lightning fit (s) | plain loop (s) | ratio | fit with figures (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        metric = (
            f"acc {row['test/acc']:.4f}" if "test/acc" in row else f"MSE {row['test/mse']:.4g}, R2 {row['test/r2']:.4f}"
        )
        extra = ""
        if "weight" in row:
            extra = f"weight {row['weight']:.4f}, bias {row['bias']:.4f}"
        if "noise_floor_mse" in row:
            extra = f"noise floor {row['noise_floor_mse']:.4f} (x{row['mse_over_floor']:.3f})"
        plain = f"{row['plain_loop_s']:.2f}" if "plain_loop_s" in row else "-"
        ratio = f"{row['lightning_over_plain']:.2f}" if "lightning_over_plain" in row else "-"
        lines.append(
            f"| {row['config']} | {row['epochs']} | {metric} | {extra} "
            f"| {row['lightning_fit_s']:.2f} | {plain} | {ratio} "
            f"| {row['lightning_fit_with_figures_s']:.2f} |"
        )
    lines += [
        "",
        "| task | steps | Lightning ms/step | plain loop ms/step | overhead ms/step | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        if "steps" in row:
            lines.append(
                f"| {row['config']} | {row['steps']} | {row['lightning_ms_per_step']:.3f} "
                f"| {row['plain_ms_per_step']:.3f} | {row['overhead_ms_per_step']:.3f} "
                f"| {row['lightning_over_plain']:.2f} |"
            )
    table = "\n".join(lines)
    command = "Command: python bench/template_figures.py (make bench)\n\n"
    (RESULTS / "template_figures.md").write_text(command + table + "\n")
    print(table)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
