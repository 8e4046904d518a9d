"""Whether OpenMP's thread settings or flushing denormals speed up the CPU recipe's training step.

    python bench/cifar10_thread_settings.py   # ~2 min; time it alone

OpenMP reads its settings when torch loads, so each setting runs in its own process: the
training step of `cifar10_step_speed.py` at the CPU recipe's widths (32/96/256, stem bias
frozen, batch 256, 32x32; that bench's net otherwise, e.g. BatchNorm scales learned), ROUNDS
rounds with the settings taking turns. Prints the images/s of every round and each setting's
median ratio to the default in the same round.

Writes bench/results/cifar10_thread_settings.{json,md}.
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.cifar10_step_speed import median_ratio, rounds_taking_turns, write_results  # noqa: E402
from bench.command_line import parse_no_options  # noqa: E402

ROUNDS = 3
RECIPE_STEP = {"widths": [32, 96, 256], "frozen_bias": True}
SETTINGS: dict[str, dict[str, str]] = {
    "torch's defaults": {},
    "OMP_PROC_BIND=close OMP_PLACES=cores": {"OMP_PROC_BIND": "close", "OMP_PLACES": "cores"},
    "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
    "torch.set_flush_denormal(True)": {"FLUSH_DENORMAL": "1"},
}


def one_process(environment: dict[str, str]) -> float:
    """Training images/s of the recipe's step in a fresh process with `environment` added."""
    code = (
        "import os, sys, torch\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "if os.environ.get('FLUSH_DENORMAL'): torch.set_flush_denormal(True)\n"
        "from bench.cifar10_step_speed import images_per_second\n"
        f"print(images_per_second({RECIPE_STEP!r}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **environment}, check=True, capture_output=True, text=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parse_no_options(__doc__)
    rounds = rounds_taking_turns(SETTINGS, one_process, ROUNDS)
    default = rounds["torch's defaults"]
    results = {
        name: {
            "rounds": values,
            "ratio_to_default_median": median_ratio(values, default),
        }
        for name, values in rounds.items()
    }
    lines = [
        f"Command: python bench/cifar10_thread_settings.py ({ROUNDS} rounds, a process per setting and round, "
        "the settings taking turns; the CPU recipe's step: widths 32/96/256, stem bias frozen, batch 256, 32x32)",
        "",
        "| setting | training images/s, each round | relative to the defaults (median of the per-round ratios) |",
        "|---|---|---|",
    ]
    for name, result in results.items():
        per_round = " / ".join(f"{v:.0f}" for v in result["rounds"])
        lines.append(f"| {name} | {per_round} | {result['ratio_to_default_median']:.2f} |")
    record = {"rounds": ROUNDS, "step": RECIPE_STEP, "settings": results}
    write_results("cifar10_thread_settings", record, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
