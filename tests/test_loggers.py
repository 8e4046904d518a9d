"""Loggers other than TensorBoard: CSV, MLflow (local SQLite store, or a server) and W&B (offline).

For each: a short circles fit logs val/acc and train/lr at every validation (2 points for 4
epochs validated every 2), the last val/acc_best is the best score the checkpoint records,
hyperparameters and the resolved config are stored with the run, the decision boundary is a
real 600 x 500 PNG; `--ckpt_path last` goes on in the same tracker run (same id, the history
continues at the next steps); `--ckpt_path best`, test, predict and export find the run.
"""

import csv
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from src.checkpointing.runs import best_score
from tests.conftest import QUIET, ROOT, config, run_cli, run_train_py

LOGGERS = ROOT / "configs" / "loggers"
FIT = ["--config", config("circles"), *QUIET, "--trainer.max_epochs", "4", "--trainer.check_val_every_n_epoch", "2"]
RUN = Path("lightning_logs") / "circles" / "version_0"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def part(name: str) -> list[str]:
    return ["--config", str(LOGGERS / f"{name}.yaml")]


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height of a PNG (its IHDR chunk), after checking it is one and decodes."""
    from io import BytesIO

    from PIL import Image

    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    with Image.open(BytesIO(data)) as image:
        image.load()  # decodes every pixel: a truncated file fails here
        assert image.size == struct.unpack(">II", data[16:24])
        return image.size


def check_tools_find_the_run(in_tmp: Path, logger: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """test --ckpt_path best, predict and export with this logger's config find version_0."""
    best = best_score(in_tmp / RUN)[1]
    capsys.readouterr()
    assert run_cli("test", "--config", config("circles"), *logger, "--ckpt_path", "best", *QUIET) == 0
    assert f"Using the best checkpoint of {RUN}: {best}" in capsys.readouterr().out
    (in_tmp / "points.csv").write_text("x1,x2\n0.0,0.0\n1.0,0.0\n")
    assert (
        run_cli(
            "predict", "--config", config("circles"), *logger, "--ckpt_path", "best", "--input", "points.csv", *QUIET
        )
        == 0
    )
    assert len(list(csv.DictReader((in_tmp / "predictions.csv").open()))) == 2
    args = ["--config", config("circles"), *logger, "--ckpt_path", "last", "--formats", "[state_dict]"]
    assert run_cli("export", *args, *QUIET) == 0
    assert (in_tmp / RUN / "export" / "last" / "net_state_dict.pt").is_file()


def check_stored_config(text: str, class_path: str) -> None:
    stored = yaml.safe_load(text)
    logger = stored["trainer"]["logger"]
    logger = logger if isinstance(logger, list) else [logger]
    assert class_path in [entry["class_path"] for entry in logger]
    assert (
        stored["trainer"]["max_epochs"] in (4, 6)
        and stored["model"]["init_args"]["optimizer"]["init_args"]["lr"] == 0.01
    )


# --- CSV ------------------------------------------------------------------------------------------
def csv_series(run: Path, key: str) -> list[tuple[int, float]]:
    with (run / "metrics.csv").open(newline="") as handle:
        return [(int(row["step"]), float(row[key])) for row in csv.DictReader(handle) if row.get(key)]


def test_csv_logs_curves_config_figures_and_resumes_the_same_file(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli("fit", *FIT, *part("csv")) == 0
    run = in_tmp / RUN
    val, lr = csv_series(run, "val/acc"), csv_series(run, "train/lr")
    assert [step for step, _ in val] == [1, 3] and [step for step, _ in lr] == [1, 3]
    assert all(value == pytest.approx(0.01) for _, value in lr)
    score, best = best_score(run)
    assert max(value for _, value in val) == pytest.approx(score) == csv_series(run, "val/acc_best")[-1][1]
    hparams = yaml.unsafe_load((run / "hparams.yaml").read_text())  # it holds tuples
    assert hparams["net"]["init_args"]["hidden_sizes"] == [512, 512]
    check_stored_config((run / "config.yaml").read_text(), "src.loggers.CSV")
    assert png_size((run / "figures" / "val" / "decision_boundary" / "step_000004.png").read_bytes()) == (600, 500)
    assert png_size((run / "figures" / "test" / "decision_boundary" / "step_000004.png").read_bytes()) == (600, 500)

    assert run_cli("fit", *FIT, *part("csv"), "--trainer.max_epochs", "6", "--ckpt_path", "last") == 0
    assert [path.name for path in run.parent.iterdir()] == ["version_0"]
    assert [step for step, _ in csv_series(run, "val/acc")] == [1, 3, 5]  # the earlier rows kept
    assert [step for step, _ in csv_series(run, "train/lr")] == [1, 3, 5]
    assert csv_series(run, "val/acc_best")[-1][1] == pytest.approx(best_score(run)[0])
    assert (run / "figures" / "val" / "decision_boundary" / "step_000006.png").is_file()
    check_tools_find_the_run(in_tmp, part("csv"), capsys)


def test_lightning_csv_logger_class_path_is_ours_and_tracker_classes_are_refused(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli("fit", *FIT, "--trainer.max_epochs", "2", "--trainer.logger", "CSVLogger") == 0
    assert csv_series(in_tmp / RUN, "val/acc")  # the task name carried over
    capsys.readouterr()
    assert run_cli("fit", *FIT, "--trainer.logger", "lightning.pytorch.loggers.MLFlowLogger") == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "use src.loggers.MLflow" in error


def test_loggers_that_would_split_or_misplace_a_run_are_refused_in_one_line(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A flag that moves only the last logger of a list, TensorBoard's sub_dir, and a version other than
    the resumed run's would each leave the run's curves apart from its checkpoints: one line, no folder."""
    moved = ["--trainer.logger.init_args.save_dir", "elsewhere"]
    assert run_cli("fit", *FIT, *part("tensorboard_mlflow"), *moved) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "write to different folders" in error, error
    assert run_cli("fit", *FIT, "--trainer.logger.init_args.sub_dir", "s") == 2
    assert "leave sub_dir out" in capsys.readouterr().err.strip().splitlines()[-1]
    assert not (in_tmp / "lightning_logs").exists() and not (in_tmp / "elsewhere").exists()
    # A logger named by its module's full path is the same logger: its run is found and resumed in place.
    full_path = ["--trainer.logger", "src.loggers.run_loggers.CSV"]
    assert run_cli("fit", *FIT, *full_path, "--trainer.max_epochs", "2") == 0
    assert run_cli("fit", *FIT, *full_path, "--ckpt_path", "last") == 0
    assert [step for step, _ in csv_series(in_tmp / RUN, "val/acc")] == [1, 3]  # one run, both validations
    capsys.readouterr()
    again = ["--ckpt_path", "last", "--trainer.max_epochs", "6", "--trainer.logger.init_args.version", "7"]
    assert run_cli("fit", *FIT, *full_path, *again) == 2
    assert "continues its own run version_0" in capsys.readouterr().err.strip().splitlines()[-1]
    assert sorted(path.name for path in RUN.parent.iterdir()) == ["version_0"]


def test_a_run_with_checkpoints_elsewhere_resumes_in_its_own_folder(in_tmp: Path) -> None:
    """--checkpoint.dirpath keeps the checkpoints outside the run folder: each records its run, so
    `--ckpt_path last` goes on logging in that run, not in a new version_N. A copy of a checkpoint taken
    out of that folder starts a new run instead: its older state must never overwrite the run's last.ckpt."""
    kept = ["--trainer.logger", "CSVLogger", "--checkpoint.dirpath", "kept"]
    assert run_cli("fit", *FIT, *kept, "--trainer.max_epochs", "2") == 0
    shutil.copy(in_tmp / "kept" / "last.ckpt", in_tmp / "early.ckpt")
    assert run_cli("fit", *FIT, *kept, "--ckpt_path", "last") == 0
    assert sorted(path.name for path in RUN.parent.iterdir()) == ["version_0"]
    assert [step for step, _ in csv_series(in_tmp / RUN, "val/acc")] == [1, 3]
    assert (in_tmp / RUN / "config.resumed-1.yaml").is_file()
    last = (in_tmp / "kept" / "last.ckpt").read_bytes()
    assert run_cli("fit", *FIT, "--trainer.logger", "CSVLogger", "--ckpt_path", "early.ckpt") == 0
    assert sorted(path.name for path in RUN.parent.iterdir()) == ["version_0", "version_1"]
    assert (in_tmp / "kept" / "last.ckpt").read_bytes() == last


# --- MLflow ---------------------------------------------------------------------------------------
def mlflow_client(in_tmp: Path) -> object:
    from mlflow.tracking import MlflowClient

    return MlflowClient(f"sqlite:///{in_tmp / 'lightning_logs' / 'mlflow.db'}")


def test_mlflow_local_store_logs_everything_and_resumes_the_same_run(
    in_tmp: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert run_cli("fit", *FIT, *part("mlflow")) == 0
    run = in_tmp / RUN
    record = json.loads((run / "mlflow.json").read_text())
    client = mlflow_client(in_tmp)
    run_id = record["run_id"]
    assert client.get_experiment(record["experiment_id"]).name == "circles"
    val = [(m.step, m.value) for m in client.get_metric_history(run_id, "val/acc")]
    lr = [(m.step, m.value) for m in client.get_metric_history(run_id, "train/lr")]
    assert [step for step, _ in val] == [1, 3] and [step for step, _ in lr] == [1, 3]
    assert all(value == pytest.approx(0.01) for _, value in lr)
    score = best_score(run)[0]
    assert max(value for _, value in val) == pytest.approx(score)
    assert client.get_metric_history(run_id, "val/acc_best")[-1].value == pytest.approx(score)
    params = client.get_run(run_id).data.params
    assert params["net/init_args/hidden_sizes"] == "[512, 512]" and params["optimizer/init_args/lr"] == "0.01"
    check_stored_config(
        Path(client.download_artifacts(run_id, "config.yaml", str(in_tmp))).read_text(), "src.loggers.MLflow"
    )
    image = client.download_artifacts(run_id, "figures/val/decision_boundary/step_000004.png", str(in_tmp / "dl"))
    assert png_size(Path(image).read_bytes()) == (600, 500)
    assert (in_tmp / "lightning_logs" / "mlartifacts").is_dir()  # the artifacts live beside the store

    assert run_cli("fit", *FIT, *part("mlflow"), "--trainer.max_epochs", "6", "--ckpt_path", "last") == 0
    assert json.loads((run / "mlflow.json").read_text())["run_id"] == run_id
    assert len(client.search_runs([record["experiment_id"]])) == 1  # no second run
    assert [m.step for m in client.get_metric_history(run_id, "val/acc")] == [1, 3, 5]
    assert client.get_metric_history(run_id, "val/acc_best")[-1].value == pytest.approx(best_score(run)[0])
    assert "config.resumed-1.yaml" in [a.path for a in client.list_artifacts(run_id)]
    assert client.get_run(run_id).info.status == "FINISHED"
    check_tools_find_the_run(in_tmp, part("mlflow"), capsys)


def test_two_loggers_share_one_run_folder(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (in_tmp / "lightning_logs" / "circles" / "version_0").mkdir(parents=True)  # an earlier run: next is 1
    assert run_cli("fit", *FIT, *part("tensorboard_mlflow")) == 0
    run = in_tmp / "lightning_logs" / "circles" / "version_1"
    assert sorted(path.name for path in run.parent.iterdir()) == ["version_0", "version_1"]
    assert list(run.glob("events.out.tfevents.*")) and (run / "checkpoints" / "last.ckpt").is_file()
    run_id = json.loads((run / "mlflow.json").read_text())["run_id"]
    assert [m.step for m in mlflow_client(in_tmp).get_metric_history(run_id, "val/acc")] == [1, 3]
    assert mlflow_client(in_tmp).get_run(run_id).info.run_name == "circles/version_1"
    # the same folder spelled another way (absolute, for the last logger only) is one folder: one run
    same = ["--trainer.logger.init_args.save_dir", str(in_tmp / "lightning_logs"), "--trainer.max_epochs", "2"]
    assert run_cli("fit", *FIT, *part("tensorboard_mlflow"), *same) == 0
    assert sorted(path.name for path in run.parent.iterdir()) == ["version_0", "version_1", "version_2"]
    assert (run.parent / "version_2" / "mlflow.json").is_file() and list((run.parent / "version_2").glob("events.*"))


def folder_listing(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.mark.parametrize(
    ("record", "tracker", "logger_part"), [("mlflow.json", "MLflow", "mlflow"), ("wandb.json", "W&B", "wandb")]
)
def test_a_resume_without_the_runs_tracker_is_refused(
    in_tmp: Path, capsys: pytest.CaptureFixture[str], record: str, tracker: str, logger_part: str
) -> None:
    """A run logged to MLflow or W&B, resumed with only TensorBoard, would lose the rest of its curves
    to that tracker (whose run would look finished): refused in one line naming the config part."""
    assert run_cli("fit", *FIT, "--trainer.max_epochs", "2") == 0
    (in_tmp / RUN / record).write_text('{"run_id": "0123", "id": "0123"}\n')  # as that tracker's logger writes it
    before = folder_listing(in_tmp / "lightning_logs")
    capsys.readouterr()
    assert run_cli("fit", *FIT, "--ckpt_path", "last") == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1, error
    assert (
        f"{RUN} was logged to {tracker} ({RUN / record} holds its run id), and this fit has no {tracker} logger"
        in error
    )
    last = RUN / "checkpoints" / "last.ckpt"
    ways = f"resume with the run's own loggers (--config {RUN / 'config.yaml'} --ckpt_path {last}, "
    assert error.endswith(
        ways
        + f"or add --config configs/loggers/{logger_part}.yaml), or rename {RUN / record} to go on without {tracker}"
    ), error
    assert folder_listing(in_tmp / "lightning_logs") == before
    # A new run from its weights (a copy outside the run: a new version_N) continues nothing of that run.
    (in_tmp / "weights.ckpt").write_bytes((in_tmp / RUN / "checkpoints" / "last.ckpt").read_bytes())
    assert run_cli("fit", *FIT, "--trainer.max_epochs", "3", "--ckpt_path", "weights.ckpt") == 0
    assert (in_tmp / "lightning_logs" / "circles" / "version_1" / "checkpoints" / "last.ckpt").is_file()


def test_an_unmoved_store_is_not_taken_for_a_moved_one(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An artifact_location given later (MLflow keeps the experiment's first one) or written relative:
    the store never moved, so the fits go on."""
    pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    short = [*FIT, *part("mlflow"), "--trainer.max_epochs", "2"]
    assert run_cli("fit", *short) == 0
    for location in ("lightning_logs/mlartifacts", str(in_tmp / "elsewhere" / "mlartifacts")):
        assert run_cli("fit", *short, "--trainer.logger.init_args.artifact_location", location) == 0
    assert run_cli("fit", *short) == 0
    assert len(list((in_tmp / "lightning_logs" / "circles").glob("version_*"))) == 4


def test_a_moved_mlflow_store_is_never_written_at_its_old_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow keeps absolute artifact paths: after a project is moved, its local store would put new
    files back at the old place. New runs and resumes are refused, naming the store to log to instead;
    with it, both train and the old place stays gone."""
    pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    old, new = tmp_path / "project", tmp_path / "moved"
    old.mkdir()
    monkeypatch.chdir(old)
    assert run_cli("fit", *FIT, *part("mlflow"), "--trainer.max_epochs", "2") == 0
    assert "MLFLOW_TRACKING_URI" not in os.environ  # MLflow sets it: the next fit of this process would log there
    old.rename(new)
    monkeypatch.chdir(new)
    capsys.readouterr()
    assert run_cli("fit", *FIT, *part("mlflow"), "--trainer.max_epochs", "2") == 2
    error = capsys.readouterr().err.strip()
    moved_store = f"sqlite:///{new / 'lightning_logs' / 'mlflow-moved.db'}"
    assert f"was made in {old / 'lightning_logs'} and moved here" in error, error
    assert f"log to a new store with --trainer.logger.init_args.tracking_uri {moved_store}" in error
    assert run_cli("fit", *FIT, *part("mlflow"), "--trainer.max_epochs", "4", "--ckpt_path", "last") == 2
    error = capsys.readouterr().err.strip()
    assert (
        f"{RUN} was tracked in MLflow at sqlite:///{old / 'lightning_logs' / 'mlflow.db'}, which no longer exists"
        in error
    )
    assert not old.exists() and sorted(path.name for path in (new / "lightning_logs" / "circles").iterdir()) == [
        "version_0"
    ]

    flag = ["--trainer.logger.init_args.tracking_uri", moved_store]
    assert run_cli("fit", *FIT, *part("mlflow"), *flag, "--trainer.max_epochs", "2") == 0  # a new run: version_1
    assert (
        json.loads((new / "lightning_logs" / "circles" / "version_1" / "mlflow.json").read_text())["tracking_uri"]
        == moved_store
    )
    (new / RUN / "mlflow.json").rename(new / RUN / "mlflow.moved.json")
    assert (
        run_cli(
            "fit",
            *FIT,
            *part("mlflow"),
            *flag,
            "--trainer.max_epochs",
            "4",
            "--ckpt_path",
            str(new / RUN / "checkpoints" / "last.ckpt"),
        )
        == 0
    )
    assert json.loads((new / RUN / "mlflow.json").read_text())["tracking_uri"] == moved_store
    assert not old.exists()


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("http://127.0.0.1:9", "cannot reach the MLflow tracking server http://127.0.0.1:9"),
        ("sqlite:///{tmp}/a_file/mlflow.db", "cannot use the MLflow store"),
    ],
)
def test_bad_tracking_uri_is_one_line_and_harms_no_checkpoint(
    in_tmp: Path, capsys: pytest.CaptureFixture[str], uri: str, expected: str
) -> None:
    pytest.importorskip("mlflow")
    (in_tmp / "a_file").write_text("not a folder")
    last = in_tmp / RUN / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"an earlier run's checkpoint")
    flag = ["--trainer.logger.init_args.tracking_uri", uri.format(tmp=in_tmp)]
    assert run_cli("fit", *FIT, *part("mlflow"), *flag) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and expected in error, error
    assert last.read_bytes() == b"an earlier run's checkpoint"
    assert sorted(path.name for path in last.parent.iterdir()) == ["last.ckpt"]


def test_predict_and_export_need_no_tracker(in_tmp: Path) -> None:
    """They log nothing: a run logged to an MLflow server that is down now still predicts and exports."""
    pytest.importorskip("mlflow")
    assert run_cli("fit", *FIT, *part("mlflow")) == 0
    down = [*part("mlflow"), "--trainer.logger.init_args.tracking_uri", "http://127.0.0.1:9"]
    assert run_cli("fit", *FIT, *down, "--trainer.max_epochs", "6", "--ckpt_path", "last") == 2  # training needs it
    (in_tmp / "points.csv").write_text("x1,x2\n0.1,0.2\n0.9,-0.3\n")
    predict = ["--input", "points.csv", "--output", "predicted.csv"]
    assert run_cli("predict", *FIT, *down, "--ckpt_path", "last", *predict) == 0
    assert len((in_tmp / "predicted.csv").read_text().splitlines()) == 3
    assert run_cli("export", *FIT, *down, "--ckpt_path", "last", "--formats", "[state_dict]") == 0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_mlflow_server_on_localhost(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real `mlflow server`; the run and its figure reach it, resume continues its run."""
    pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{in_tmp / 'server.db'}", "--artifacts-destination", str(in_tmp / "art")],
        cwd=in_tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        uri = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None:
                    pytest.skip("mlflow server could not start here")
                time.sleep(0.5)
        else:
            pytest.skip("mlflow server did not answer within 60 s")
        flag = ["--trainer.logger.init_args.tracking_uri", uri]
        assert run_cli("fit", *FIT, *part("mlflow"), *flag) == 0
        from mlflow.tracking import MlflowClient

        client = MlflowClient(uri)
        run_id = json.loads((in_tmp / RUN / "mlflow.json").read_text())["run_id"]
        assert [m.step for m in client.get_metric_history(run_id, "val/acc")] == [1, 3]
        image = client.download_artifacts(run_id, "figures/val/decision_boundary/step_000004.png", str(in_tmp))
        assert png_size(Path(image).read_bytes()) == (600, 500)
        assert run_cli("fit", *FIT, *part("mlflow"), *flag, "--trainer.max_epochs", "6", "--ckpt_path", "last") == 0
        assert [m.step for m in client.get_metric_history(run_id, "val/acc")] == [1, 3, 5]
    finally:
        server.terminate()
        server.wait(timeout=30)


# --- Weights & Biases (offline only) ---------------------------------------------------------------
def wandb_records(path: Path) -> list[object]:
    """The protobuf records of an offline run's .wandb file (LevelDB-style log blocks)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    position, block, pending, records = 7, 32768, b"", []
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's tail too short for a header is padding
            position += block - position % block
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        chunk = data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind == 0 and length == 0:
            break
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):  # full, or last part of a record
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def finish_wandb(wandb: object, run: Path, timeout: float = 60) -> None:
    """Finish the run (a process does it at exit) and wait until W&B's service has written each
    offline run file to its end (the exit record): it writes them after finish() returns."""
    wandb.finish()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        folders = list(run.glob("wandb/offline-run-*"))
        files = [path for folder in folders for path in folder.glob("run-*.wandb")]
        if folders and len(files) == len(folders) and all(has_exit(path) for path in files):
            return
        time.sleep(0.5)
    raise AssertionError(f"W&B did not finish writing its offline files in {run} within {timeout} s")


def has_exit(path: Path) -> bool:
    try:
        return any(record.WhichOneof("record_type") == "exit" for record in wandb_records(path))
    except Exception:  # a file still being written
        return False


def wandb_history(run: Path, key: str) -> list[tuple[int, float]]:
    """(trainer/global_step, value) of `key` over all offline run folders of this run, in order."""
    series = []
    for path in sorted(run.glob("wandb/offline-run-*/run-*.wandb")):
        for record in wandb_records(path):
            if record.WhichOneof("record_type") != "history":
                continue
            items = {item.key or "/".join(item.nested_key): item.value_json for item in record.history.item}
            if key in items:
                series.append((int(float(items["trainer/global_step"])), float(items[key])))
    return series


def wandb_config(run: Path) -> dict[str, object]:
    values: dict[str, object] = {}
    for path in sorted(run.glob("wandb/offline-run-*/run-*.wandb")):
        for record in wandb_records(path):
            if record.WhichOneof("record_type") == "config":
                values.update({item.key: json.loads(item.value_json) for item in record.config.update})
    return values


@pytest.fixture
def wandb_offline(monkeypatch: pytest.MonkeyPatch) -> object:
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONSOLE", "off")  # no wrapping of the streams pytest captures
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    yield wandb
    wandb.finish()


def test_wandb_offline_logs_everything_and_resumes_the_same_run(
    in_tmp: Path, capsys: pytest.CaptureFixture[str], wandb_offline: object
) -> None:
    assert run_cli("fit", *FIT, *part("wandb")) == 0
    finish_wandb(wandb_offline, in_tmp / RUN)
    run = in_tmp / RUN
    run_id = json.loads((run / "wandb.json").read_text())["id"]
    (folder,) = run.glob(f"wandb/offline-run-*-{run_id}")
    val, lr = wandb_history(run, "val/acc"), wandb_history(run, "train/lr")
    assert [step for step, _ in val] == [1, 3] and [step for step, _ in lr] == [1, 3]
    assert all(value == pytest.approx(0.01) for _, value in lr)
    score = best_score(run)[0]
    assert max(value for _, value in val) == pytest.approx(score) == wandb_history(run, "val/acc_best")[-1][1]
    hyper = wandb_config(run)
    assert hyper["net"]["init_args"]["hidden_sizes"] == [512, 512]
    check_stored_config((folder / "files" / "lightning" / "config.yaml").read_text(), "src.loggers.Wandb")
    (image,) = folder.glob("files/media/images/val/decision_boundary_*.png")
    assert png_size(image.read_bytes()) == (600, 500)

    assert run_cli("fit", *FIT, *part("wandb"), "--trainer.max_epochs", "6", "--ckpt_path", "last") == 0
    finish_wandb(wandb_offline, in_tmp / RUN)
    assert json.loads((run / "wandb.json").read_text())["id"] == run_id
    folders = sorted(run.glob("wandb/offline-run-*"))
    assert len(folders) == 2 and all(path.name.endswith(f"-{run_id}") for path in folders)  # one run id
    assert [step for step, _ in wandb_history(run, "val/acc")] == [1, 3, 5]
    assert wandb_history(run, "val/acc_best")[-1][1] == pytest.approx(best_score(run)[0])
    check_tools_find_the_run(in_tmp, part("wandb"), capsys)


def test_wandb_and_csv_at_once_share_the_run_folder(in_tmp: Path, wandb_offline: object) -> None:
    loggers = (
        "[{class_path: src.loggers.CSV, init_args: {name: both}}, "
        "{class_path: src.loggers.Wandb, init_args: {name: both}}]"
    )
    assert run_cli("fit", *FIT, "--trainer.logger", loggers) == 0
    run = in_tmp / "lightning_logs" / "both" / "version_0"
    finish_wandb(wandb_offline, run)
    assert [path.name for path in run.parent.iterdir()] == ["version_0"]
    assert [step for step, _ in csv_series(run, "val/acc")] == [1, 3]
    assert [step for step, _ in wandb_history(run, "val/acc")] == [1, 3]
    assert (run / "figures" / "val" / "decision_boundary" / "step_000004.png").is_file()
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "wandb.json").is_file()


def test_wandb_without_login_online_is_one_line(in_tmp: Path) -> None:
    """As a user without an account would run it (a separate process: no login, no network)."""
    pytest.importorskip("wandb")
    env = {"WANDB_MODE": "online", "WANDB_API_KEY": "", "WANDB_SILENT": "true", "HOME": str(in_tmp)}
    result = run_train_py("fit", *FIT, *part("wandb"), cwd=in_tmp, env=env, timeout=240)
    assert result.returncode == 2, result.stderr[-2000:]
    error = result.stderr.strip().splitlines()
    assert error[-1].startswith("error: W&B could not start the run") and "WANDB_MODE=offline" in error[-1]
    assert not list((in_tmp / RUN / "checkpoints").glob("*.ckpt")) if (in_tmp / RUN).exists() else True


# --- the figure path alone, every logger at once (no training) -------------------------------------
def test_one_figure_reaches_every_logger_at_its_size(
    in_tmp: Path, wandb_offline: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 3 x 2 inch figure at 100 dpi is a 300 x 200 PNG in TensorBoard, the CSV folder, MLflow and W&B;
    the loggers share one version_N folder and the checkpoints go into it."""
    pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    import matplotlib.pyplot as plt
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from src.checkpointing import share_run_folder
    from src.loggers import CSV, MLflow, Wandb, log_figures

    (in_tmp / "lightning_logs" / "figs" / "version_0").mkdir(parents=True)
    loggers = [
        TensorBoardLogger("lightning_logs", name="figs"),
        CSV(name="figs"),
        MLflow(name="figs"),
        Wandb(name="figs"),
    ]

    class Holder:  # what share_run_folder reads of a Trainer
        checkpoint_callback = type("Checkpoint", (), {"dirpath": None})()
        is_global_zero = True

    holder = Holder()
    holder.loggers = loggers
    share_run_folder(holder)
    run = in_tmp / "lightning_logs" / "figs" / "version_1"
    assert [Path(logger.log_dir) for logger in loggers] == [run.relative_to(in_tmp)] * 4
    assert holder.checkpoint_callback.dirpath == str(run.relative_to(in_tmp) / "checkpoints")
    named = [
        CSV(name="figs", version="trial_3"),
        MLflow(name="figs", version="trial_3"),
        Wandb(name="figs", version="trial_3"),
    ]
    assert {logger.log_dir for logger in named} == {
        str(Path("lightning_logs") / "figs" / "trial_3")
    }  # as a sweep names runs
    figure, axes = plt.subplots(figsize=(3, 2), dpi=100)
    axes.plot([0, 1], [1, 0])
    log_figures(loggers, {"val/confusion_matrix": figure}, step=7)
    for logger in loggers:
        logger.finalize("success")
    finish_wandb(wandb_offline, run)

    events = EventAccumulator(str(run), size_guidance={"images": 0})
    events.Reload()
    (image,) = events.Images("val/confusion_matrix")
    assert image.step == 7 and png_size(image.encoded_image_string) == (300, 200)
    assert png_size((run / "figures" / "val" / "confusion_matrix" / "step_000007.png").read_bytes()) == (300, 200)
    client = mlflow_client(in_tmp)
    mlflow_run = json.loads((run / "mlflow.json").read_text())["run_id"]
    path = client.download_artifacts(mlflow_run, "figures/val/confusion_matrix/step_000007.png", str(in_tmp))
    assert png_size(Path(path).read_bytes()) == (300, 200)
    (wandb_image,) = run.glob("wandb/offline-run-*/files/media/images/val/confusion_matrix_*.png")
    assert png_size(wandb_image.read_bytes()) == (300, 200)
