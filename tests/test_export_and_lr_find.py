"""`train.py export` files load without Lightning and agree with PyTorch; `lr_find` saves its plot."""

import json
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from PIL import Image

import src.tools.export
import src.tools.learning_rate_finder
from src.cli import TemplateCLI
from src.datamodules import RegressionDataModule
from src.datamodules.regression import wave_function
from src.modules.nets import MLP, AirbenchNet
from tests.conftest import QUIET, config, run_cli
from tests.test_cifar10 import image_tree, tiny_cifar_run
from tests.test_cli import wave_baselines
from tests.test_figures import EMPTY_FRAME_INK, ink


def exported(run: Path) -> Path:
    (folder,) = (run / "export").iterdir()
    return folder


def test_circles_export_loads_into_the_bare_net_and_all_formats_agree(in_tmp: Path) -> None:
    args = ["--config", config("circles"), "--trainer.max_epochs", "30", *QUIET]
    assert run_cli("fit", *args) == 0
    assert run_cli("export", *args, "--ckpt_path", "best") == 0
    folder = exported(in_tmp / "lightning_logs" / "circles" / "version_0")
    record = json.loads((folder / "model.json").read_text())
    assert record["net"] == {
        "class_path": "src.modules.nets.MLP",
        "args": [2, 1],
        "init_args": {"hidden_sizes": [512, 512], "activation": "relu", "batch_norm": False, "dropout": 0.0},
    }
    assert record["classes"] == ["0", "1"] and record["output"] == "logits"
    # As the PyTorch tutorials load a model: build the class, load the state_dict.
    net = MLP(2, 1, hidden_sizes=[512, 512], activation="relu")
    net.load_state_dict(torch.load(folder / "net_state_dict.pt", weights_only=True))
    net.eval()
    points = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, -0.7], [-1.0, 0.1], [0.3, 0.3]])
    with torch.no_grad():
        logits = net(points)
        scripted = torch.jit.load(str(folder / "model.torchscript.pt"))(points)
    assert ((logits.flatten() > 0).long().tolist()) == [1, 0, 1, 0, 1]  # inner circle is class 1
    assert torch.allclose(scripted, logits, atol=1e-5)
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    from_onnx = torch.from_numpy(session.run(None, {"input": points.numpy()})[0])  # batch 5: dynamic axis
    assert torch.allclose(from_onnx, logits, atol=1e-4, rtol=1e-4)
    assert max(record["max_abs_difference"].values()) <= 1e-4
    # A checkpoint outside a run's checkpoints/ folder exports beside itself.
    shipped = in_tmp / "shipped" / "model.ckpt"
    shipped.parent.mkdir()
    shutil.copy(next((in_tmp / "lightning_logs").rglob("last.ckpt")), shipped)
    assert run_cli("export", "--ckpt_path", str(shipped), "--formats", "[state_dict]") == 0
    assert (in_tmp / "shipped" / "export" / "model" / "net_state_dict.pt").is_file()


def test_regression_exports_take_raw_inputs(in_tmp: Path) -> None:
    args = ["--config", config("regression"), "--trainer.max_epochs", "200", *QUIET]
    assert run_cli("fit", *args) == 0
    out = in_tmp / "shipped"
    assert (
        run_cli("export", *args, "--ckpt_path", "last", "--output_dir", str(out), "--formats", "[torchscript, onnx]")
        == 0
    )
    record = json.loads((out / "model.json").read_text())
    assert set(record["files"]) == {"torchscript", "onnx"} and not (out / "net_state_dict.pt").exists()
    mean, std = record["input"]["standardization"]["mean"], record["input"]["standardization"]["std"]
    assert 9 < mean[0] < 11 and 5 < std[0] < 7  # x is uniform on [0, 20]
    # Raw x in, the wave out: the test split's raw inputs, scored against its noisy targets.
    data = RegressionDataModule(source="wave")  # configs/regression.yaml's data
    data.setup("fit")
    x, y = data.raw_inputs["test"], data.splits["test"][1]
    with torch.no_grad():
        scripted = torch.jit.load(str(out / "model.torchscript.pt"))(x)
    session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    from_onnx = torch.from_numpy(session.run(None, {"input": x.numpy()})[0])
    assert torch.allclose(from_onnx, scripted, atol=1e-4, rtol=1e-4)
    noise_floor, line_mse = wave_baselines("test")
    mse = torch.mean((scripted - y) ** 2).item()
    # 200 epochs reach 0.65 (1.4x the floor of 0.46); the best straight line scores 2.44.
    assert mse < 1.6 * noise_floor and mse < 0.3 * line_mse, (mse, noise_floor, line_mse)
    grid = torch.linspace(0, 20, 401).unsqueeze(1)
    with torch.no_grad():
        off_the_wave = torch.mean((torch.jit.load(str(out / "model.torchscript.pt"))(grid) - wave_function(grid)) ** 2)
    assert off_the_wave < 0.3  # measured 0.13 from the true function; a straight line is 1.9 off


def test_cifar_export_with_weight_averaging_matches_the_evaluated_net(in_tmp: Path, tmp_path: Path) -> None:
    tree = image_tree(tmp_path / "tree", per_class=4)
    args = [*tiny_cifar_run(tree, tmp_path), "--model.init_args.ema_decay", "0.9"]
    assert run_cli("fit", *args, "--trainer.max_epochs", "1") == 0
    assert run_cli("export", *args, "--ckpt_path", "best") == 0
    folder = exported(in_tmp / "lightning_logs" / "cifar10_cpu" / "version_0")
    record = json.loads((folder / "model.json").read_text())
    assert record["classes"][0] == "airplane" and record["input"]["units"] == "float32 RGB in [0, 1]"
    net = AirbenchNet(3, 10, widths=[8, 8, 8])
    net.load_state_dict(torch.load(folder / "net_state_dict.pt", weights_only=True))
    checkpoint = torch.load(next((folder.parents[1] / "checkpoints").glob("epoch=*.ckpt")), weights_only=True)
    averaged = {
        k.removeprefix("ema.module."): v for k, v in checkpoint["state_dict"].items() if k.startswith("ema.module.")
    }
    assert all(torch.equal(net.state_dict()[k], v) for k, v in averaged.items())  # the EMA weights, not the raw ones
    image = torch.from_numpy(__import__("numpy").asarray(Image.open(next(tree.glob("train/cat/*.png"))))).permute(
        2, 0, 1
    )
    pixels = image.float().unsqueeze(0) / 255
    mean, std = (torch.tensor(record["input"]["standardization"][k]).view(1, 3, 1, 1) for k in ("mean", "std"))
    with torch.no_grad():
        logits = net.eval()((pixels - mean) / std)
        scripted = torch.jit.load(str(folder / "model.torchscript.pt"))(pixels)
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    from_onnx = torch.from_numpy(session.run(None, {"input": pixels.numpy()})[0])
    assert torch.allclose(scripted, logits, atol=1e-5) and torch.allclose(from_onnx, logits, atol=1e-4, rtol=1e-4)


def test_an_export_that_disagrees_with_pytorch_is_deleted_and_fails(
    in_tmp: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One format off by more than the tolerance fails the export as a whole: nothing new is kept, and an
    earlier export in the folder stays exactly as it was, its files matching its model.json."""
    args = [
        "--config",
        config("circles"),
        "--trainer.max_epochs",
        "5",
        "--trainer.check_val_every_n_epoch",
        "5",
        *QUIET,
    ]
    assert run_cli("fit", *args) == 0
    out = in_tmp / "shipped"
    formats = ["--formats", "[state_dict, torchscript, onnx]"]
    assert run_cli("export", *args, "--ckpt_path", "last", "--output_dir", str(out), *formats) == 0
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    assert set(before) == {"net_state_dict.pt", "model.torchscript.pt", "model.onnx", "model.json"}
    left = out / ".export.tmp-999999999"  # the staging folder of an export killed by kill -9 (no such pid)
    left.mkdir()
    (left / "model.onnx").write_bytes(b"half")
    run_onnx = src.tools.export.run_onnx
    monkeypatch.setattr(
        src.tools.export, "run_onnx", lambda path, inputs: run_onnx(path, inputs) + 0.01
    )  # a broken runtime
    assert run_cli("export", *args, "--ckpt_path", "last", "--output_dir", str(out), *formats) == 2
    error = capsys.readouterr().err
    assert "the ONNX export differs from PyTorch by 0.01" in error and "model.onnx was not kept" in error
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before  # no mix of two exports
    assert not left.exists()  # the next export cleared it
    fresh = in_tmp / "fresh"
    assert run_cli("export", *args, "--ckpt_path", "last", "--output_dir", str(fresh), *formats) == 2
    assert not fresh.exists()  # the folder it made for nothing is gone too
    # Ctrl-C in the middle (as ONNX is checked): one line, exit 130, the earlier export still whole
    monkeypatch.setattr(src.tools.export, "run_onnx", lambda path, inputs: os.kill(os.getpid(), signal.SIGINT))
    assert run_cli("export", *args, "--ckpt_path", "last", "--output_dir", str(out), *formats) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"stopped: SIGINT received during export: {out} is as it was before this export"
    )
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before
    # SIGTERM as the checked files are moved in: that step ends first, then the command stops and says so
    monkeypatch.setattr(src.tools.export, "run_onnx", run_onnx)
    settle = src.tools.export.settle_earlier_export

    def signalled(*given: object) -> list[str]:
        os.kill(os.getpid(), signal.SIGTERM)
        return settle(*given)  # type: ignore[arg-type]

    monkeypatch.setattr(src.tools.export, "settle_earlier_export", signalled)
    assert run_cli("export", *args, "--ckpt_path", "last", "--output_dir", str(out), *formats) == 143
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"stopped: SIGTERM received: the export to {out} was completed first"
    )
    record = json.loads((out / "model.json").read_text())
    assert sorted(path.name for path in out.iterdir()) == sorted([*record["files"].values(), "model.json"])


@pytest.mark.parametrize("subcommand", ["export", "test", "validate"])
def test_a_command_without_a_checkpoint_fails_clearly(
    in_tmp: Path, capsys: pytest.CaptureFixture, subcommand: str
) -> None:
    """test and validate without one scored untrained weights (test/acc 0.5) in a new run folder."""
    assert run_cli(subcommand, "--config", config("circles"), *QUIET) == 2
    assert f"{subcommand} needs a trained model: add --ckpt_path" in capsys.readouterr().err
    assert not (in_tmp / "lightning_logs").exists()


def test_export_never_replaces_files_it_did_not_write(
    in_tmp: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The user's own files, another checkpoint's export and a checkpoints folder are refused before
    anything is written; exporting the same checkpoint again replaces its own files."""
    args = ["--config", config("circles"), "--trainer.max_epochs", "4", "--trainer.check_val_every_n_epoch", "1"]
    args += ["--checkpoint.save_top_k", "-1", *QUIET]
    assert run_cli("fit", *args) == 0
    checkpoints = in_tmp / "lightning_logs" / "circles" / "version_0" / "checkpoints"
    last, first = checkpoints / "last.ckpt", next(checkpoints.glob("epoch=0-*.ckpt"))
    mine = in_tmp / "mine"
    mine.mkdir()
    (mine / "model.onnx").write_text("my own model")
    (mine / "model.json").write_text("precious")
    capsys.readouterr()
    formats = ["--formats", "[onnx]"]
    assert run_cli("export", "--ckpt_path", str(last), "--output_dir", "mine", *formats) == 2
    line = capsys.readouterr().err.strip()
    assert "--output_dir mine already holds model.onnx, model.json" in line and "add --overwrite true to" in line, line
    assert (mine / "model.onnx").read_text() == "my own model" and (mine / "model.json").read_text() == "precious"
    assert run_cli("export", "--ckpt_path", str(last), "--output_dir", str(checkpoints), *formats) == 2
    assert "is a checkpoints folder, which export never writes to" in capsys.readouterr().err
    assert run_cli("export", "--ckpt_path", str(last), "--output_dir", "shipped", *formats) == 0
    assert run_cli("export", "--ckpt_path", str(last), "--output_dir", "shipped", *formats) == 0  # its own files
    assert run_cli("export", "--ckpt_path", str(first), "--output_dir", "shipped", *formats) == 2  # another's
    recorded = json.loads((in_tmp / "shipped" / "model.json").read_text())["checkpoint"]
    assert recorded == "../lightning_logs/circles/version_0/checkpoints/last.ckpt"  # from the export folder
    assert run_cli("export", "--ckpt_path", str(first), "--output_dir", "mine", *formats, "--overwrite", "true") == 0
    assert (mine / json.loads((mine / "model.json").read_text())["checkpoint"]).resolve() == first.resolve()
    # The same checkpoint named from another folder is still the export's own: it replaces its files.
    relative = ["--ckpt_path", str(last.relative_to(in_tmp)), "--output_dir", "again", *formats]
    assert run_cli("export", *relative) == 0
    monkeypatch.chdir(in_tmp / "lightning_logs")
    assert (
        run_cli(
            "export",
            "--ckpt_path",
            str(last.relative_to(in_tmp / "lightning_logs")),
            "--output_dir",
            "../again",
            *formats,
        )
        == 0
    )


def test_a_re_export_in_fewer_formats_keeps_or_removes_the_others_by_the_weights(
    in_tmp: Path, capsys: pytest.CaptureFixture
) -> None:
    """One format at a time from the same checkpoint adds up; after the checkpoint file changed (a resumed
    run's last.ckpt), the formats not written again are removed: they would disagree with model.json."""
    args = ["--config", config("circles"), "--trainer.max_epochs", "2", *QUIET]
    assert run_cli("fit", *args) == 0
    last = in_tmp / "lightning_logs" / "circles" / "version_0" / "checkpoints" / "last.ckpt"
    export = ["export", "--ckpt_path", str(last), "--output_dir", "shipped"]
    assert run_cli(*export, "--formats", "[onnx]") == 0
    assert run_cli(*export, "--formats", "[pt2]") == 0
    record = json.loads((in_tmp / "shipped" / "model.json").read_text())
    assert sorted(record["files"]) == ["onnx", "pt2"] and sorted(record["exporters"]) == ["onnx", "pt2"]
    assert run_cli("fit", *args, "--trainer.max_epochs", "4", "--ckpt_path", "last") == 0  # last.ckpt rewritten
    capsys.readouterr()
    assert run_cli(*export, "--formats", "[pt2]") == 0
    assert "Removed model.onnx from shipped: exported earlier from other weights" in capsys.readouterr().out
    record = json.loads((in_tmp / "shipped" / "model.json").read_text())
    assert list(record["files"]) == ["pt2"] and not (in_tmp / "shipped" / "model.onnx").exists()


@pytest.mark.parametrize("schedule", [[], ["--model.scheduler.name", "onecycle"], ["--model.scheduler.name", "cosine"]])
def test_lr_find_saves_plot_and_losses_and_suggests_a_rate(
    in_tmp: Path, capsys: pytest.CaptureFixture, schedule: list[str]
) -> None:
    """With the config's own schedule too: the finder swaps in a scheduler of its own."""
    assert run_cli("lr_find", "--config", config("circles"), "--num_training", "60", *QUIET, *schedule) == 0
    folder = in_tmp / "lightning_logs" / "circles"
    with Image.open(folder / "lr_find.png") as plot:
        assert plot.size == (640, 480)
        pixels = np.asarray(plot.convert("RGB"))
    assert pixels.std() > 0 and ink(pixels) > 1.2 * EMPTY_FRAME_INK  # a curve is drawn, not just the frame
    rows = (folder / "lr_find.csv").read_text().splitlines()
    assert rows[0] == "lr,loss" and 10 < len(rows) - 1 <= 60  # the test stops early once the loss diverges
    lrs = [float(row.split(",")[0]) for row in rows[1:]]
    assert lrs[0] == pytest.approx(1e-6, rel=0.2) and lrs == sorted(lrs)
    suggested = float(capsys.readouterr().out.split("Suggested learning rate: ")[1].split()[0])
    assert 1e-6 < suggested < 1.0
    assert sorted(p.name for p in folder.iterdir()) == ["lr_find.csv", "lr_find.png"]  # no run folder, no temp files
    assert not list(in_tmp.glob(".lr_find*"))


def test_lr_find_into_a_folder_it_cannot_write_stops_before_the_range_test(
    in_tmp: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    (in_tmp / "plots").write_text("a file where the folder should go")
    ran = []
    monkeypatch.setattr(src.tools.learning_rate_finder, "Tuner", lambda trainer: ran.append(trainer))
    args = ["--config", config("circles"), "--num_training", "60", "--output_dir", str(in_tmp / "plots"), *QUIET]
    assert run_cli("lr_find", *args) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"error: cannot write {in_tmp / 'plots'}") and "\n" not in error
    assert error.endswith("Choose another place with --output_dir") and not ran


class KeepsWeightsBeforeLRFind(TemplateCLI):
    """The CLI, keeping a copy of the model's weights before the LR range test runs, and noting
    whether the range test's forward passes saw them moved (the test swaps out callbacks, so a
    forward hook watches instead)."""

    def before_lr_find(self) -> None:
        self.weights_before = {key: value.detach().clone() for key, value in self.model.state_dict().items()}
        self.moved = False
        self.model.net.register_forward_pre_hook(lambda *_: self._note_moved())

    def _note_moved(self) -> None:
        now = self.model.state_dict()
        self.moved = self.moved or any(not torch.equal(now[key], value) for key, value in self.weights_before.items())


def test_lr_find_leaves_the_weights_untouched(in_tmp: Path) -> None:
    cli = KeepsWeightsBeforeLRFind(args=["lr_find", "--config", config("circles"), "--num_training", "30", *QUIET])
    assert cli.moved  # the range test trained the net...
    after = cli.model.state_dict()
    assert after.keys() == cli.weights_before.keys()
    changed = [key for key, value in cli.weights_before.items() if not torch.equal(after[key], value)]
    assert not changed, f"lr_find changed {changed}"  # ...and put every weight back
