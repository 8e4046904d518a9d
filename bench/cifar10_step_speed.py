"""What one training step of the CPU recipe's net costs under each speed lever: memory layout,
threads, batch size, width, image size (the crops of the first epochs) and the stem's bias
frozen (PatchWhitening's bias_epochs).

    python bench/cifar10_step_speed.py   # ~3 min; time it alone

A plain PyTorch step (forward, label-smoothed cross-entropy, backward, Nesterov SGD) on random
batches: the Trainer and the data path are left out, so the ratios show the levers alone. Each
setting runs ROUNDS rounds of STEPS timed steps after 2 warm-up steps, the settings taking turns
within a round (so a drift of the machine's speed spreads over all of them); the median round is
reported, as images/s and relative to the recipe's own setting measured in the same run.

Writes bench/results/cifar10_step_speed.{json,md}.
"""

import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.command_line import parse_no_options  # noqa: E402
from src.modules.nets import AirbenchNet  # noqa: E402

RESULTS = ROOT / "bench" / "results"
Setting = TypeVar("Setting")
ROUNDS = 5
STEPS = 6
RECIPE = {
    "channels_last": True,
    "threads": torch.get_num_threads(),
    "batch": 256,
    "widths": [32, 96, 192],
    "size": 32,
    "frozen_bias": False,
}
SETTINGS: dict[str, dict[str, Any]] = {
    "the recipe's net: channels-last, all threads, batch 256, widths 32/96/192, 32x32, stem bias trained": {},
    "channels-first (NCHW)": {"channels_last": False},
    "1 thread": {"threads": 1},
    "batch 128": {"batch": 128},
    "batch 512": {"batch": 512},
    "24x24 crops (crop_epochs)": {"size": 24},
    "widths 32/128/256": {"widths": [32, 128, 256]},
    "widths 32/96/256": {"widths": [32, 96, 256]},
    "stem bias frozen (after PatchWhitening's bias_epochs)": {"frozen_bias": True},
    "24x24 crops, stem bias frozen": {"size": 24, "frozen_bias": True},
}


def images_per_second(setting: dict[str, Any]) -> float:
    """Training images/s of STEPS steps of the net under `setting` (the recipe's values elsewhere)."""
    options = {**RECIPE, **setting}
    torch.set_num_threads(options["threads"])
    torch.manual_seed(0)
    net = AirbenchNet((3, 32, 32), 10, widths=options["widths"], channels_last=options["channels_last"])
    if options["frozen_bias"]:
        net.freeze_whitening_bias()
    optimizer = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1, momentum=0.85, nesterov=True)
    images = torch.randn(options["batch"], 3, options["size"], options["size"])
    labels = torch.randint(0, 10, (options["batch"],))

    def step() -> None:
        loss = F.cross_entropy(net(images), labels, label_smoothing=0.2)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(2):
        step()
    start = time.perf_counter()
    for _ in range(STEPS):
        step()
    seconds = time.perf_counter() - start
    torch.set_num_threads(RECIPE["threads"])
    return STEPS * options["batch"] / seconds


def rounds_taking_turns(
    settings: dict[str, Setting], measure: Callable[[Setting], float], rounds: int
) -> dict[str, list[float]]:
    """`measure` of every setting, `rounds` times, the order reversed every other round, so a drift
    of the machine's speed spreads over all settings."""
    measured: dict[str, list[float]] = {name: [] for name in settings}
    for index in range(rounds):
        for name in list(settings) if index % 2 == 0 else list(reversed(settings)):
            measured[name].append(measure(settings[name]))
    return measured


def median_ratio(values: list[float], reference: list[float]) -> float:
    """The median over rounds of each round's value divided by the reference's value in that round."""
    return statistics.median(v / r for v, r in zip(values, reference, strict=True))


def write_results(stem: str, record: Any, table: str) -> None:
    """bench/results/<stem>.json and .md; the table is printed too."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(record, indent=2) + "\n")
    (RESULTS / f"{stem}.md").write_text(table)
    print(table)


def main() -> None:
    parse_no_options(__doc__)
    rounds = rounds_taking_turns(SETTINGS, images_per_second, ROUNDS)
    recipe_name = next(iter(SETTINGS))
    # each round's ratio to the recipe's figure of the same round, then the median of those
    recipe_rounds = rounds[recipe_name]
    results = {
        name: {
            "images_per_s_median": statistics.median(values),
            "ratio_to_recipe_median": median_ratio(values, recipe_rounds),
            "rounds": values,
        }
        for name, values in rounds.items()
    }
    record = {"threads": RECIPE["threads"], "steps_per_round": STEPS, "settings": results}
    lines = [
        f"Command: python bench/cifar10_step_speed.py ({RECIPE['threads']} torch threads; {ROUNDS} rounds of "
        f"{STEPS} timed steps per setting, the settings taking turns; medians)",
        "",
        "| setting | training images/s | relative to the recipe (median of the per-round ratios) |",
        "|---|---|---|",
    ]
    for name, result in results.items():
        lines.append(f"| {name} | {result['images_per_s_median']:.0f} | {result['ratio_to_recipe_median']:.2f} |")
    write_results("cifar10_step_speed", record, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
