"""Shared helpers: run the real CLI in-process or as a user would, in a scratch folder."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # train.py lives at the root, beside the installed src package

import train  # noqa: E402


def config(name: str) -> str:
    return str(ROOT / "configs" / f"{name}.yaml")


QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
# Circles in mini-batches with SGD at lr 3: validation accuracy jumps around (0.75 at epoch 4,
# 0.44 at epoch 5, below 0.75 after), which tests of running bests and early stopping need.
JUMPY = [
    "--config",
    config("circles"),
    "--data.batch_size",
    "100",
    "--model.net.init_args.hidden_sizes",
    "[16]",
    "--model.optimizer",
    "torch.optim.SGD",
    "--model.optimizer.lr",
    "3.0",
    "--trainer.check_val_every_n_epoch",
    "1",
    *QUIET,
]


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run inside a scratch folder, so lightning_logs/ lands there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_cli(*args: str) -> int:
    """Run train.py's main in this process; return its exit status (0 when it returns)."""
    saved_argv = sys.argv
    sys.argv = ["train.py"]  # pytest's own arguments are not the CLI's
    try:
        train.main([*args])
    except SystemExit as exit_:
        return int(exit_.code or 0)
    finally:
        sys.argv = saved_argv
    return 0


def run_train_py(*args: str, cwd: Path, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python train.py ...` as a separate process, as a user would."""
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
