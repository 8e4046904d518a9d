"""Two-process CPU DDP end to end: every config trains, each rank trains on its own shard,
all ranks hold one model, and a signal or a NaN loss on one rank stops every rank at once.

DDP starts one process per rank, so every run here is `python train.py` in a subprocess of
its own session: a rank left behind (a hang) is killed and the test fails instead of waiting.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import QUIET, ROOT, config
from tests.test_cifar10 import image_tree
from tests.test_cli import scalars

DDP = ["--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"]
# Seconds for a whole two-process run, start-up included: the runs take 15-45 s on 2 shared cores
# (20-30 s of it starting two Pythons), so a run still alive after this is a hang.
TIMEOUT = 180
STOP_TIMEOUT = 120  # a stop by signal or NaN comes at step 3, seconds after start-up


def run_ddp(*args: str, cwd: Path, timeout: float = TIMEOUT) -> tuple[int, str]:
    """Run `python train.py ... <DDP flags>`; fail if any rank is still alive after `timeout`."""
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *args, *DDP],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # rank 1 is rank 0's child: one process group holds both
    )
    try:
        # Every rank holds the pipe open, so this returns only when all of them have exited.
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"a rank was still running after {timeout} s (a hang):\n{output[-4000:]}")
    return process.returncode, output


def callbacks(*specs: tuple[str, dict]) -> list[str]:
    """Test callbacks added to the config's own (PatchWhitening included): `+=` appends, `=` would replace."""
    return [f"--trainer.callbacks+={json.dumps({'class_path': c, 'init_args': a})}" for c, a in specs]


def record(folder: Path) -> tuple[str, dict]:
    return ("tests.helpers.RecordRankView", {"folder": str(folder)})


def assert_one_model_and_disjoint_complete_shards(folder: Path, epochs: int) -> None:
    ranks = [json.loads((folder / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["weights"] == ranks[1]["weights"], "the ranks ended with different weights"
    split = ranks[0]["train_split"]
    assert ranks[1]["train_split"] == split and len(set(split)) == len(split)  # same split, distinct samples
    assert sorted(int(e) for e in ranks[0]["batches"]) == list(range(epochs))
    for epoch in range(epochs):
        seen = [ranks[r]["batches"][str(epoch)] for r in (0, 1)]
        # An odd split is padded by repeating its first samples (as DistributedSampler does): one repeat.
        each, padding = -(-len(split) // 2), len(split) % 2
        assert len(seen[0]) == len(seen[1]) == each, f"epoch {epoch}: not half the split each"
        assert len(set(seen[0]) & set(seen[1])) == padding, f"epoch {epoch}: the ranks trained on the same samples"
        assert set(seen[0]) | set(seen[1]) == set(split), f"epoch {epoch}: the shards miss training samples"


# --- every shipped config trains under DDP ------------------------------------------------
# Toy configs: full batches, one step an epoch.
TOY_RUNS = {
    "circles": ["--trainer.max_epochs", "25"],  # also checks the accuracy the README promises
    "blobs": ["--trainer.max_epochs", "2"],
    "regression": ["--trainer.max_epochs", "8"],  # one-cycle needs 8 steps for its warm-up
    "regression_linear": ["--trainer.max_epochs", "2"],
}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=[] if n == "circles" else [pytest.mark.slow]) for n in TOY_RUNS]
)
def test_a_toy_config_trains_each_rank_on_its_own_shard(name: str, tmp_path: Path) -> None:
    epochs = int(TOY_RUNS[name][1])
    args = ["fit", "--config", config(name), *TOY_RUNS[name], *QUIET]
    if name != "circles":  # these validate every 20 or more epochs: validate this short run
        args += ["--trainer.check_val_every_n_epoch", "1"]
    rc, output = run_ddp(*args, *callbacks(record(tmp_path / "ranks")), cwd=tmp_path)
    assert rc == 0, output[-4000:]
    assert_one_model_and_disjoint_complete_shards(tmp_path / "ranks", epochs)
    run = tmp_path / "lightning_logs" / name / "version_0"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    if name == "circles":
        assert scalars(run)["test/acc"][-1][1] > 0.9


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return image_tree(tmp_path_factory.mktemp("cifar") / "tree", per_class=10)  # 80 training, 20 val


def image_args(name: str, tree: Path, tmp_path: Path) -> list[str]:
    args = ["fit", "--config", config(name), "--data.data_dir", str(tree), "--data.cache_dir", str(tmp_path / "cache")]
    args += ["--trainer.max_epochs", "2", "--trainer.check_val_every_n_epoch", "1", *QUIET]
    # 20 of the 100 training images held out: 40 a rank
    args += (
        ["--data.val_size", "0.2"] if name == "image_folder" else ["--data.val_size", "20", "--data.download", "false"]
    )
    if name != "cifar10_blitz":  # batches of 4: 10 steps an epoch, so one-cycle has its warm-up steps
        args += ["--data.batch_size", "4", "--model.net.init_args.widths", "[8, 8, 8]"]
    if name == "cifar10":
        args += ["--trainer.accelerator", "cpu", "--trainer.precision", "32"]  # the GPU config, on CPU
    return args


IMAGE_CASES = [
    pytest.param("cifar10_cpu", "0.9", id="cifar10_cpu-ema"),
    pytest.param("cifar10_cpu", None, id="cifar10_cpu", marks=pytest.mark.slow),
    pytest.param("cifar10", "0.9", id="cifar10-ema", marks=pytest.mark.slow),
    pytest.param("cifar10", None, id="cifar10", marks=pytest.mark.slow),
    pytest.param("cifar10_blitz", "0.9", id="cifar10_blitz-ema", marks=pytest.mark.slow),
    pytest.param("cifar10_blitz", None, id="cifar10_blitz", marks=pytest.mark.slow),
    pytest.param("image_folder", "0.9", id="image_folder-ema", marks=pytest.mark.slow),
    pytest.param("image_folder", None, id="image_folder", marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("name", "ema"), IMAGE_CASES)
def test_an_image_config_trains_each_rank_on_its_own_shard(
    name: str, ema: str | None, tree: Path, tmp_path: Path
) -> None:
    args = image_args(name, tree, tmp_path)
    args += ["--data.flip", "false", "--data.translate", "0", "--data.crop_epochs", "0"]  # samples as stored
    if ema is not None:
        args += ["--model.init_args.ema_decay", ema]
    extra = [record(tmp_path / "ranks")]
    if name == "cifar10_cpu":  # a second PatchWhitening (the config's stays), its bias freeze due in epoch 1:
        # DDP keeps training the bias, on every rank alike
        extra.append(("src.callbacks.PatchWhitening", {"bias_epochs": 1}))
    rc, output = run_ddp(*args, *callbacks(*extra), cwd=tmp_path)
    assert rc == 0, output[-4000:]
    if name == "cifar10_cpu":
        assert "the stem's bias keeps training under DDPStrategy" in output
    # One model on both ranks: the whitened stem (computed at fit start) and the EMA copy included.
    assert_one_model_and_disjoint_complete_shards(tmp_path / "ranks", epochs=2)
    run = tmp_path / "lightning_logs" / name / "version_0"
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert any(k.startswith("ema.") for k in state) == (ema is not None)
    if name != "cifar10_blitz":
        stem = state["net.stem.0.weight"]
        half = len(stem) // 2  # whitened: each filter with its negative (a default init has no such pairs)
        assert torch.isfinite(stem).all() and stem.abs().sum() > 0 and torch.equal(stem[half:], -stem[:half])


# Tables: one full-batch step an epoch; a text-labelled classification and a regression.
@pytest.mark.parametrize(
    ("name", "target"),
    [("tabular_classification", "diagnosis"), pytest.param("tabular_regression", "y", marks=pytest.mark.slow)],
)
def test_a_tabular_config_trains_each_rank_on_its_own_shard(name: str, target: str, tmp_path: Path) -> None:
    from tests.test_tabular import write_cancer, write_csv

    if name == "tabular_classification":
        table = write_cancer(tmp_path / "table.csv")
        extra = ["--data.id_columns", "[id]"]
    else:
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(200, 3, generator=generator)
        y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.1 * torch.randn(200, generator=generator)
        rows = [[*(f"{v:.5f}" for v in row), f"{t:.5f}"] for row, t in zip(x.tolist(), y.tolist(), strict=True)]
        table, extra = write_csv(tmp_path / "table.csv", ["a", "b", "c", "y"], rows), []
    args = ["fit", "--config", config(name), "--data.csv_path", str(table), "--data.target_column", target, *extra]
    args += ["--trainer.max_epochs", "2", "--trainer.check_val_every_n_epoch", "1", *QUIET]
    rc, output = run_ddp(*args, *callbacks(record(tmp_path / "ranks")), cwd=tmp_path)
    assert rc == 0, output[-4000:]
    assert_one_model_and_disjoint_complete_shards(tmp_path / "ranks", epochs=2)
    assert (tmp_path / "lightning_logs" / name / "version_0" / "checkpoints" / "last.ckpt").is_file()


# --- stopping: a signal or a NaN loss on one rank stops them all ----------------------------
# Circles has one full-batch step an epoch, so step N ends epoch N-1. Validation every epoch: a
# save before the first validation is refused today (the running best val/acc_best is -inf then).
STOP_ARGS = [
    "fit",
    "--config",
    config("circles"),
    "--trainer.max_epochs",
    "200",
    "--trainer.check_val_every_n_epoch",
    "1",
    *QUIET,
]


# Whichever rank gets the signal, the ranks agree on it at the end of the step and all stop there.
@pytest.mark.parametrize("rank", [1, pytest.param(0, marks=pytest.mark.slow)])
def test_sigterm_to_one_rank_saves_the_step_and_stops_every_rank(rank: int, tmp_path: Path) -> None:
    stop = callbacks(("tests.helpers.SignalRankAtStep", {"rank": rank, "step": 3, "signum": signal.SIGTERM}))
    rc, output = run_ddp(*STOP_ARGS, *stop, cwd=tmp_path, timeout=STOP_TIMEOUT)
    assert rc == 143, output[-4000:]
    saved = torch.load(tmp_path / "lightning_logs" / "circles" / "version_0" / "checkpoints" / "last.ckpt")
    assert saved["global_step"] == 3  # the step the signal came after, as in one process
    assert "--ckpt_path last" in output


def test_ctrl_c_to_every_rank_before_the_first_step_stops_them_all_and_leaves_no_run(tmp_path: Path) -> None:
    """A terminal's Ctrl-C reaches every rank at once, here while the fit is set up: each rank stops in
    one line, exit 130, no rank is left waiting for another, and the new run's folder is removed."""
    stop = callbacks(("tests.helpers.SignalGroupAtSetup", {"signum": signal.SIGINT}))
    rc, output = run_ddp(*STOP_ARGS, *stop, cwd=tmp_path, timeout=STOP_TIMEOUT)
    assert rc == 130, output[-4000:]
    assert output.count("SIGINT received before this run saved anything: start it again") == 2, output[-4000:]
    assert "Traceback" not in output, output[-4000:]
    assert not (tmp_path / "lightning_logs" / "circles" / "version_0").exists()


def test_a_nan_loss_on_one_rank_stops_every_rank_and_saves_nothing_non_finite(tmp_path: Path) -> None:
    nan = callbacks(("tests.helpers.NaNLossOnRank", {"rank": 1, "step": 3}))
    rc, output = run_ddp(*STOP_ARGS, *nan, cwd=tmp_path, timeout=STOP_TIMEOUT)
    assert rc == 2, output[-4000:]
    assert "training loss became nan" in output
    checkpoints = list((tmp_path / "lightning_logs" / "circles" / "version_0" / "checkpoints").glob("*.ckpt"))
    assert checkpoints  # steps 1-3 were saved before the NaN
    for checkpoint in checkpoints:
        state = torch.load(checkpoint, weights_only=True)
        assert state["global_step"] <= 3
        assert all(torch.isfinite(t).all() for t in state["state_dict"].values()), checkpoint


def test_a_failed_save_on_rank_0_stops_every_rank_with_one_line_each(tmp_path: Path) -> None:
    """Only rank 0 writes checkpoints: when its save fails (here the folder lies under a file), rank 1
    must not wait for it at the save's barrier; each rank ends with one line, no traceback, no hang."""
    (tmp_path / "a_file").write_text("not a folder")
    args = [*STOP_ARGS, "--trainer.max_epochs", "3", "--checkpoint.dirpath", str(tmp_path / "a_file" / "checkpoints")]
    rc, output = run_ddp(*args, cwd=tmp_path, timeout=STOP_TIMEOUT)
    assert rc == 2, output[-4000:]
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2, output[-4000:]
    assert any(line.startswith(f"error: cannot write {tmp_path / 'a_file'}") for line in errors), errors
    assert any("--checkpoint.dirpath" in line for line in errors), errors  # the setting that chose this folder
    assert any(line.startswith("error: rank 1 stopped because another rank of this DDP run ended") for line in errors)
    assert "Traceback" not in output, output[-4000:]
