"""`--model.compile true`: the net trains compiled, and every file still holds the plain net."""

import csv
from pathlib import Path

import pytest
import torch

from tests.conftest import QUIET, config, run_cli

pytestmark = pytest.mark.slow  # compiling on a CPU takes tens of seconds

ARGS = ["--config", config("circles"), "--trainer.check_val_every_n_epoch", "10", *QUIET]
RUN = Path("lightning_logs") / "circles" / "version_0"


def predictions(path: Path) -> list[dict[str, str]]:
    with path.open() as file:
        return list(csv.DictReader(file))


def test_compile_on_and_off_through_fit_resume_predict_and_export(in_tmp: Path, capsys: pytest.CaptureFixture) -> None:
    assert run_cli("fit", *ARGS, "--trainer.max_epochs", "20", "--model.compile", "true") == 0
    assert "torch.compile: the first step took" in capsys.readouterr().out
    last = torch.load(in_tmp / RUN / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 20 and not [key for key in last["state_dict"] if "_orig_mod" in key]
    # Resume with compile off, then on again: the same plain-net checkpoint serves both.
    assert run_cli("fit", *ARGS, "--trainer.max_epochs", "30", "--ckpt_path", "last") == 0
    assert "torch.compile:" not in capsys.readouterr().out  # the run's choice, not the checkpoint's
    assert run_cli("fit", *ARGS, "--trainer.max_epochs", "50", "--ckpt_path", "last", "--model.compile", "true") == 0
    assert "torch.compile: the first step took" in capsys.readouterr().out
    assert torch.load(in_tmp / RUN / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 50
    points = in_tmp / "points.csv"
    points.write_text("x1,x2\n0.0,0.0\n1.0,0.0\n0.3,-0.2\n")
    for flag in ("true", "false"):
        assert run_cli("predict", *ARGS, "--ckpt_path", "last", "--input", str(points), "--output", f"p_{flag}.csv",
                       "--model.compile", flag) == 0  # fmt: skip
    compiled, plain = predictions(in_tmp / "p_true.csv"), predictions(in_tmp / "p_false.csv")
    assert [row["class"] for row in compiled] == ["1", "0", "1"]  # the inner ring is class 1
    for a, b in zip(compiled, plain, strict=True):
        assert float(a["p_1"]) == pytest.approx(float(b["p_1"]), abs=1e-5)
    out = in_tmp / "shipped"
    export = ["--ckpt_path", "last", "--output_dir", str(out), "--formats", "[state_dict]", "--model.compile", "true"]
    assert run_cli("export", *ARGS, *export) == 0
    exported = torch.load(out / "net_state_dict.pt", weights_only=True)
    assert exported.keys() == {key.removeprefix("net.") for key in last["state_dict"] if key.startswith("net.")}
