"""kill -9 at random moments, checkpoint writes included: last.ckpt always loads, little is lost."""

import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from src.checkpointing.checkpoint_io import TEMP_MARK, verify_checkpoint
from tests.conftest import QUIET, ROOT, config

EVERY = 5  # last.ckpt every 5 steps: at most 5 steps may be lost


def start(tmp_path: Path, resume: bool) -> subprocess.Popen:
    printer = '[{"class_path": "tests.helpers.PrintStep"}]'
    args = [
        sys.executable,
        str(ROOT / "train.py"),
        "fit",
        "--config",
        config("circles"),
        "--data.batch_size",
        "50",
        "--model.net.init_args.hidden_sizes",
        "[64, 64]",
        "--trainer.max_epochs",
        "100000",
        "--trainer.check_val_every_n_epoch",
        "1",
        "--checkpoint.last_every_n_steps",
        str(EVERY),
        "--trainer.callbacks",
        printer,
        *QUIET,
    ]
    if resume:
        args += ["--ckpt_path", "last"]
    return subprocess.Popen(
        args,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )


def wait_for_training(process: subprocess.Popen, timeout: float = 60) -> int:
    """Block until the process prints its first finished step; return that step."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if match := re.match(r"step (\d+)", line):
            return int(match.group(1))
        if process.poll() is not None:
            raise AssertionError("training exited before its first step")
    raise AssertionError("training did not start in time")


@pytest.mark.slow
def test_ten_kills_at_random_moments(tmp_path: Path) -> None:
    rng = random.Random(20261123)
    checkpoints = tmp_path / "lightning_logs" / "circles" / "version_0" / "checkpoints"
    last_step = 0
    for kill in range(10):
        process = start(tmp_path, resume=kill > 0)
        first = wait_for_training(process)
        assert first >= last_step - EVERY + 1  # resumed at most EVERY steps back
        if kill > 0:  # the killed run's temp files were cleaned when this one started
            assert not [p for p in checkpoints.iterdir() if TEMP_MARK in p.name]
        time.sleep(rng.uniform(0.0, 1.5))
        process.send_signal(signal.SIGKILL)
        printed = [int(m.group(1)) for m in re.finditer(r"step (\d+)", process.communicate(timeout=30)[0])]
        reached = max([first, *printed])
        last = checkpoints / "last.ckpt"
        verify_checkpoint(last)
        saved = torch.load(last, weights_only=True)
        assert saved["global_step"] >= reached - EVERY, (kill, saved["global_step"], reached)
        assert len([p for p in checkpoints.iterdir() if TEMP_MARK in p.name]) <= 1
        last_step = saved["global_step"]
    assert last_step > 0
