"""`train.py sweep`: an Optuna study whose trials are ordinary `fit` runs, shared through a database."""

import csv
import glob
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import torch
import yaml

from src.cli.template_cli import TemplateCLI
from src.cli.user_errors import user_message
from src.errors import UserInputError
from src.sweeps.fixed_settings import STUDY_ATTR, check_same_settings, fixed_settings
from src.sweeps.objective import Objective, ValidationHistory, optimize
from src.sweeps.options import SweepOptions, parse_options
from src.sweeps.space import Param, parse_space, read_space
from src.sweeps.study_storage import check_trial_folders_free, next_study_name, open_storage, open_study
from tests.conftest import QUIET, ROOT, config, run_cli

# Circles in a few full-batch epochs, validated twice; no figures.
SHORT = [
    "--trainer.max_epochs",
    "4",
    "--trainer.check_val_every_n_epoch",
    "2",
    "--trainer.callbacks",
    "[]",
    "--trainer.log_every_n_steps",
    "1",
    *QUIET,
]
SPACE = (
    "{model.optimizer.lr: {type: float, low: 1.0e-3, high: 0.05, log: true}, model.net.hidden_sizes: [[16], [32, 32]]}"
)


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_a_study_runs_fits_and_writes_its_table_best_config_and_plots(
    in_tmp: Path, capsys: pytest.CaptureFixture
) -> None:
    args = ["--config", config("circles"), *SHORT, "--sweep.space", SPACE, "--sweep.n_trials", "3"]
    assert run_cli("sweep", *args, "--sweep.sampler_seed", "0") == 0
    folder = in_tmp / "lightning_logs" / "circles_sweep" / "study_0"
    rows = read_rows(folder / "trials.csv")
    assert [row["trial"] for row in rows] == ["0", "1", "2"] and {row["state"] for row in rows} == {"complete"}
    assert list(rows[0])[:4] == ["trial", "state", "model.optimizer.lr", "model.net.hidden_sizes"]
    for row in rows:
        assert 1e-3 <= float(row["model.optimizer.lr"]) <= 0.05 and row["model.net.hidden_sizes"] in (
            "[16]",
            "[32, 32]",
        )
        assert 0.0 <= float(row["val/acc"]) <= 1.0 and 0.0 <= float(row["test/acc"]) <= 1.0
        assert float(row["seconds"]) > 0
        trial = folder / f"trial_{row['trial']}"  # a normal run: its config, curves and checkpoints
        assert (trial / "config.yaml").is_file() and glob.glob(str(trial / "events.out.tfevents.*"))
        assert (trial / "checkpoints" / "last.ckpt").is_file()
        trial_config = yaml.safe_load((trial / "config.yaml").read_text())
        assert trial_config["trainer"]["devices"] in (1, "1")  # one device a trial: never DDP from "auto"
    assert "| trial | state | model.optimizer.lr |" in (folder / "trials.md").read_text()
    assert (folder / "optimization_history.png").stat().st_size > 0
    assert (folder / "param_importances.png").stat().st_size > 0  # 3 trials, 2 parameters
    out = capsys.readouterr().out
    assert "Best: trial" in out and f"tensorboard --logdir {Path('lightning_logs/circles_sweep/study_0')}" in out

    study = optuna.load_study(study_name="study_0", storage="sqlite:///lightning_logs/circles_sweep/optuna.db")
    best = folder / "best.yaml"
    assert f"Best trial {study.best_trial.number} of study study_0" in best.read_text()
    assert yaml.safe_load(best.read_text())["trainer"]["devices"] == "auto"  # the user's devices, not the trial's
    assert run_cli("fit", "--config", str(best), "--trainer.max_epochs", "1", *QUIET) == 0
    assert (in_tmp / "lightning_logs" / "circles" / "version_0" / "checkpoints" / "last.ckpt").is_file()

    assert run_cli("sweep", *args[:-2], "--sweep.n_trials", "1") == 0  # a new study beside the first
    assert read_rows(in_tmp / "lightning_logs" / "circles_sweep" / "study_1" / "trials.csv")[0]["trial"] == "0"


def test_any_worker_writes_best_yaml_from_the_config_kept_in_the_study(
    in_tmp: Path, capsys: pytest.CaptureFixture
) -> None:
    """The best trial may have run on another machine (its run folder is not here): its config is in the
    study, so a report anywhere writes best.yaml."""
    args = ["--config", config("circles"), *SHORT, "--sweep.space", SPACE, "--sweep.study_name", "s"]
    assert run_cli("sweep", *args, "--sweep.n_trials", "1") == 0
    folder = in_tmp / "lightning_logs" / "circles_sweep" / "s"
    kept = (folder / "best.yaml").read_text()
    shutil.rmtree(folder)  # as on a machine where no trial of the study ran
    assert run_cli("sweep", *args, "--sweep.n_trials", "0") == 0
    assert (folder / "best.yaml").read_text() == kept and "Best: trial 0" in capsys.readouterr().out


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_trial_stopped_by_a_signal_is_failed_and_runs_again_when_the_study_goes_on(
    in_tmp: Path, capsys: pytest.CaptureFixture, signum: int, code: int
) -> None:
    """Not left 'running' for ever (Optuna marks only Ctrl-C, and heartbeats take minutes): the stop says
    how to go on, and the next worker of the study runs the stopped values first."""
    stop = f"[{{class_path: tests.helpers.SignalAtStep, init_args: {{step: 2, signum: {int(signum)}, once: stopped}}}}]"
    args = ["--config", config("circles"), *SHORT, "--sweep.space", SPACE, "--sweep.sampler_seed", "0"]
    args += ["--trainer.callbacks", stop]  # the first trial only: the study's every worker has the same callbacks
    assert run_cli("sweep", *args, "--sweep.n_trials", "3") == code
    name = signal.Signals(signum).name
    expected = f"stopped: {name} received: trial 0 of study study_0 was stopped and is queued to run again; "
    assert expected + "go on with the same command and --sweep.study_name study_0" in capsys.readouterr().err
    storage = "sqlite:///lightning_logs/circles_sweep/optuna.db"
    trials = optuna.load_study(study_name="study_0", storage=storage).trials
    assert [trial.state.name for trial in trials] == ["FAIL", "WAITING"]
    assert trials[0].user_attrs["note"] == f"stopped by {name}; queued to run again"

    assert run_cli("sweep", *args, "--sweep.n_trials", "2", "--sweep.study_name", "study_0") == 0
    rows = read_rows(in_tmp / "lightning_logs" / "circles_sweep" / "study_0" / "trials.csv")
    assert [(row["trial"], row["state"]) for row in rows] == [("0", "fail"), ("1", "complete"), ("2", "complete")]
    assert rows[1]["note"] == "rerun of trial 0"
    assert [rows[1][key] for key in ("model.optimizer.lr", "model.net.hidden_sizes")] == [
        rows[0][key] for key in ("model.optimizer.lr", "model.net.hidden_sizes")
    ]


def test_grid_with_seeds_records_a_failed_combination_and_goes_on(in_tmp: Path, capsys: pytest.CaptureFixture) -> None:
    space = "{model.scheduler.name: [none, onecycle], model.scheduler.warmup_epochs: [0, 1]}"
    # 6 epochs: one-cycle's warm-up of 25% is then 1.5 steps (exactly 1 step is refused, rightly).
    args = ["--config", config("circles"), *SHORT, "--trainer.max_epochs", "6", "--sweep.space", space]
    args += ["--sweep.sampler", "grid"]
    assert run_cli("sweep", *args, "--sweep.n_trials", "10", "--sweep.seeds", "2", "--sweep.pruner", "none") == 0
    folder = in_tmp / "lightning_logs" / "circles_sweep" / "study_0"
    rows = read_rows(folder / "trials.csv")
    assert len(rows) == 4  # the grid is done after its 4 points, though 10 trials were allowed
    combos = {(row["model.scheduler.name"], row["model.scheduler.warmup_epochs"]): row for row in rows}
    assert set(combos) == {("none", "0"), ("none", "1"), ("onecycle", "0"), ("onecycle", "1")}
    failed = combos[("onecycle", "1")]
    assert failed["state"] == "fail" and "has its own warm-up" in failed["note"]
    for key in [("none", "0"), ("none", "1"), ("onecycle", "0")]:
        row = combos[key]
        assert row["state"] == "complete" and float(row["val/acc_std"]) >= 0.0
        seeds = sorted(p.name for p in (folder / f"trial_{row['trial']}").iterdir())
        assert seeds == ["seed_42", "seed_43"]  # seed_everything 42 in base.yaml, then 43
    assert "failed: scheduler onecycle has its own warm-up" in capsys.readouterr().out
    # a report alone, without --sweep.seeds: the study's 2 seeds, not this command's default of 1
    (folder / "trials.csv").unlink()
    report_only = ["--config", config("circles"), *SHORT, "--sweep.space", space, "--sweep.study_name", "study_0"]
    assert run_cli("sweep", *report_only, "--sweep.n_trials", "0") == 0
    assert "val/acc_std" in read_rows(folder / "trials.csv")[0]
    assert "(mean over 2 seeds)" in capsys.readouterr().out


def test_each_trial_keeps_its_checkpoints_in_its_own_folder_whatever_dirpath_says(in_tmp: Path) -> None:
    """A config's --checkpoint.dirpath would put every trial's checkpoints in one folder (the second trial
    refused as an overwrite, or trials side by side overwriting each other): each trial gets its own."""
    args = ["--config", config("circles"), *SHORT, "--sweep.space", SPACE, "--sweep.n_trials", "2"]
    assert run_cli("sweep", *args, "--checkpoint.dirpath", "shared_checkpoints") == 0
    folder = in_tmp / "lightning_logs" / "circles_sweep" / "study_0"
    assert [row["state"] for row in read_rows(folder / "trials.csv")] == ["complete", "complete"]
    for trial in ("trial_0", "trial_1"):
        assert (folder / trial / "checkpoints" / "last.ckpt").is_file()
    assert not (in_tmp / "shared_checkpoints").exists()
    assert yaml.safe_load((folder / "best.yaml").read_text())["checkpoint"]["dirpath"] == "shared_checkpoints"


def test_a_sweep_whose_every_trial_failed_exits_2_in_one_line(in_tmp: Path, capsys: pytest.CaptureFixture) -> None:
    """One mistake in the config, repeated by every trial, is a failed command (scripts and job
    schedulers read the exit status), not a study that ran."""
    args = ["--config", config("circles"), *SHORT, "--sweep.space", "{model.scheduler.name: [onecycle]}"]
    args += ["--model.scheduler.warmup_epochs", "1", "--sweep.n_trials", "2", "--sweep.pruner", "none"]
    assert run_cli("sweep", *args) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("error: no trial of study study_0 completed (2 failed); trial 0 failed: scheduler onecycle")
    assert len(err.splitlines()) == 1 and "fix that and run the sweep again" in err
    rows = read_rows(in_tmp / "lightning_logs" / "circles_sweep" / "study_0" / "trials.csv")
    assert [row["state"] for row in rows] == ["fail", "fail"]  # the report is still written


class PruneAfterFirstReport(optuna.pruners.BasePruner):
    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return bool(trial.intermediate_values)


def one_trial(pruner: optuna.pruners.BasePruner, fit: list[str], logs: Path) -> optuna.trial.FrozenTrial:
    """One trial of an lr space on circles with `fit`'s flags, its runs in `logs`, judged by `pruner`."""
    study = optuna.create_study(direction="maximize", pruner=pruner)
    objective = Objective(
        TemplateCLI,
        fit,
        [Param("model.optimizer.lr", "float", 1e-3, 1e-2, log=True)],
        "acc",
        "max",
        run_folder=lambda trial, seed: (logs, "study", f"trial_{trial.number}"),
        seeds=[None],
    )
    optimize(study, objective, 1, None)
    return study.trials[0]


def test_a_trial_behind_is_pruned_at_a_validation(in_tmp: Path) -> None:
    trial = one_trial(PruneAfterFirstReport(), ["--config", config("circles"), *SHORT], in_tmp / "logs")
    assert trial.state == optuna.trial.TrialState.PRUNED and list(trial.intermediate_values) == [0]  # at epoch 2 of 4
    assert trial.user_attrs["note"].startswith("pruned: val/acc")
    assert not (in_tmp / "logs" / "study" / "trial_0" / "checkpoints" / "epoch=3-step=4.ckpt").exists()

    callback = ValidationHistory("val/acc")  # what every fit of a trial records, pruned or not
    trainer = SimpleNamespace(sanity_checking=False, callback_metrics={"val/acc": torch.tensor(0.5)}, current_epoch=3)
    callback.on_validation_end(trainer, None)  # type: ignore[arg-type]
    assert callback.values == [(3, 0.5)]


def test_every_validation_of_an_epoch_reaches_the_pruner(in_tmp: Path) -> None:
    """With two validations an epoch (val_check_interval 0.5), each is reported at a step of its own:
    numbered by epoch, the second of each epoch never reached the pruner."""
    fit = ["--config", config("circles"), *SHORT, "--data.batch_size", "100"]
    fit += ["--trainer.check_val_every_n_epoch", "1", "--trainer.val_check_interval", "0.5"]
    trial = one_trial(optuna.pruners.NopPruner(), fit, in_tmp / "logs")
    validations = trial.user_attrs["runs"][0]["validations"]
    assert [epoch for epoch, _ in validations] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert trial.intermediate_values == {step: value for step, (_, value) in enumerate(validations)}


def test_sweep_flags_are_split_from_fit_flags_in_any_form(tmp_path: Path) -> None:
    options_file = tmp_path / "sweep.yaml"
    options_file.write_text("space: configs/sweeps/circles.yaml\nn_trials: 4\n")
    args = ["--config", "c.yaml", "--sweep", str(options_file), "--trainer.max_epochs", "3", "--sweep.seeds=2"]
    options, fit_args = parse_options([*args, "--sweep.storage", "sqlite:///s.db", "--model.optimizer.lr", "0.1"])
    assert options == SweepOptions(space="configs/sweeps/circles.yaml", n_trials=4, seeds=2, storage="sqlite:///s.db")
    assert fit_args == ["--config", "c.yaml", "--trainer.max_epochs", "3", "--model.optimizer.lr", "0.1"]


@pytest.mark.parametrize(
    "flags, message",
    [
        (
            ["--sweep.space", "{model.optimizer.learning_rate: [0.1]}"],
            "unknown config key 'model.optimizer.learning_rate'",
        ),
        (["--sweep.space", "{}"], "is empty"),
        (["--sweep.space", "{model.optimizer.lr: [0.1]}", "--sweep.n_trials", "0"], "optuna.db holds no study yet"),
        (  # inline YAML longer than a file name may be
            ["--sweep.space", "{model.optimizer.learning_rate: [" + ", ".join(["0.001"] * 60) + "]}"],
            "unknown config key 'model.optimizer.learning_rate'",
        ),
        (["--sweep.space", "{model.optimizer.lr: [0.1]}", "--sweep.sampler", "bayes"], "--sweep.sampler 'bayes'"),
        (["--sweep.space", "{model.optimizer.lr: {type: float, low: 1, high: 0}}"], "low < high"),
        (["--sweep.space", "{model.optimizer.lr: {low: 0.1, high: 1}}", "--sweep.sampler", "grid"], "add `grid"),
        (
            ["--sweep.space", "{model.optimizer.lr: {low: 1.0e-4, high: 0.1, log: true, grid: [0.0]}}"],
            "grid value 0.0 is outside the range",
        ),
        (["--sweep.space", "{model.optimizer.lr: {low: 0.0, high: 1.0, step: 0}}"], "step must be a number above 0"),
        (
            ["--sweep.space", "{model.optimizer.lr: {low: 0.0, high: 1.0, step: 0.6}}"],
            "high - low must be a whole number of steps (Optuna would move high, the grid pass it): 1.0 - 0.0 is not",
        ),
        (
            ["--sweep.space", "{model.optimizer.lr: [0.1]}", "--trainer.logger.init_args.save_dir", "s3://bucket/logs"],
            "sweep keeps its study, tables and trials in a local folder; --trainer.logger.init_args.save_dir s3://",
        ),
        (["--sweep.space", "{model.optimizer.lr: [0.1]}", "--trainer.devices", "2"], "sweep runs each of its fits in"),
        (["--sweep.space", "{model.optimizer.lr: {low: 1e-4, high: 0.1}}"], "YAML reads 1e-4 as text"),
        (
            ["--sweep.space", "{model.optimizer.lr: [0.1]}", "--sweep.storage", "postgresql://nobody@127.0.0.1:1/none"],
            "cannot open --sweep.storage postgresql://nobody@127.0.0.1:1/none",
        ),
        (["--sweep.space", "{model.optimizer.lr: [0.1]}", "--sweep.trials", "3"], "unknown option --sweep.trials"),
        (["--sweep.space", "{model.optimizer.lr: [0.1]}", "--sweep.n_trials", "many"], "--sweep.n_trials: Expected"),
        (["--sweep.n_trials", "3"], "the following arguments are required: --sweep.space"),
    ],
)
def test_bad_sweep_input_is_one_line_and_exit_2(
    in_tmp: Path, capsys: pytest.CaptureFixture, flags: list[str], message: str
) -> None:
    assert run_cli("sweep", "--config", config("circles"), *flags) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1, err
    assert not list(in_tmp.glob("lightning_logs/*/study_*/trial_*"))
    if "--sweep.storage" not in flags:
        assert not list(in_tmp.glob("lightning_logs/*/optuna.db")), "a refused command made a study database"


def run_workers(cwd: Path, storage: list[str], study: str, url: str) -> list[optuna.trial.FrozenTrial]:
    """Two `train.py sweep` processes on one study at once; returns the study's trials."""
    workers = []
    for _ in range(2):
        args = ["sweep", "--config", config("circles"), *SHORT, "--sweep.space", SPACE, "--sweep.n_trials", "2"]
        workers.append(
            subprocess.Popen(
                [sys.executable, str(Path(__file__).parents[1] / "train.py"), *args, *storage]
                + ["--sweep.study_name", study],
                cwd=cwd,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    for worker in workers:
        out, _ = worker.communicate(timeout=400)
        assert worker.returncode == 0, out[-3000:]
    trials = optuna.load_study(study_name=study, storage=open_storage(url)).trials
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]  # the union: 2 each, no number twice
    assert {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}  # the 4th may fall behind the median
    folder = cwd / "lightning_logs" / "circles_sweep" / study
    assert sorted(p.name for p in folder.glob("trial_*")) == ["trial_0", "trial_1", "trial_2", "trial_3"]
    return trials


def test_two_workers_share_one_sqlite_study(tmp_path: Path) -> None:
    run_workers(tmp_path, [], "shared", f"sqlite:///{tmp_path / 'lightning_logs' / 'circles_sweep' / 'optuna.db'}")
    rows = read_rows(tmp_path / "lightning_logs" / "circles_sweep" / "shared" / "trials.csv")
    assert len(rows) >= 2  # each worker reports the study as it stands when it ends


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_workers_share_one_postgresql_study(tmp_path: Path) -> None:
    pytest.importorskip("psycopg2", reason="psycopg2 (pip install psycopg2-binary) is not installed")
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not binaries:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    bin_dir = Path(binaries[-1]).parent
    as_root = os.geteuid() == 0
    if as_root and not shutil.which("runuser"):
        pytest.skip("running as root without runuser: cannot start PostgreSQL as another user")
    # PostgreSQL refuses to run as root: as root, the server runs as `postgres` in a folder it can reach.
    data_root = Path(tempfile.mkdtemp(prefix="sweep-pg-")) if as_root else tmp_path
    user = "postgres" if as_root else None

    def as_server_user(*command: str) -> subprocess.CompletedProcess:
        full = ["runuser", "-u", user, "--", *command] if user else list(command)
        return subprocess.run(full, capture_output=True, text=True, timeout=120)

    if as_root:
        shutil.chown(data_root, user)
    data, port = data_root / "data", free_port()
    try:
        init = as_server_user(str(bin_dir / "initdb"), "-D", str(data), "-U", "sweep", "--auth=trust", "-E", "UTF8")
        assert init.returncode == 0, init.stderr
        options = f"-p {port} -k {data_root} -c listen_addresses=127.0.0.1"
        started = as_server_user(
            str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(data_root / "log"), "-w", "start"
        )
        assert started.returncode == 0, started.stderr + started.stdout
        url = f"postgresql://sweep@127.0.0.1:{port}/postgres"
        run_workers(tmp_path, ["--sweep.storage", url], "pg", url)
    finally:
        as_server_user(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        if as_root:
            shutil.rmtree(data_root, ignore_errors=True)


WORKER_THAT_HANGS = """
import sys, time
sys.path.insert(0, sys.argv[1])
import src.sweeps.objective as objective
objective.run_fit = lambda *args: time.sleep(600)  # the trial starts, then its worker dies in it
import train
train.main(sys.argv[2:])
"""


def test_the_trial_of_a_worker_that_died_runs_again(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """kill -9 (or a lost machine) leaves a trial 'running': once its
    heartbeat is older than the grace period, the next worker's trial fails it and runs its values."""
    import src.sweeps.study_storage as study_storage

    args = ["sweep", "--config", config("circles"), *SHORT, "--sweep.space", SPACE, "--sweep.study_name", "s"]
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER_THAT_HANGS, str(Path(__file__).parents[1]), *args, "--sweep.n_trials", "1"],
        cwd=in_tmp,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,
    )
    watchdog = threading.Timer(120, os.killpg, [worker.pid, signal.SIGKILL])
    watchdog.start()
    try:
        started = next((line for line in worker.stdout if line.startswith("=== trial 0:")), None)  # type: ignore[union-attr]
        assert started, "the worker ended before its trial"
    except ValueError:  # the watchdog closed the pipe
        raise AssertionError("the worker did not start its trial in 2 minutes") from None
    finally:
        time.sleep(1)  # its heartbeat is written as the trial starts
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
        watchdog.cancel()
    monkeypatch.setattr(study_storage, "HEARTBEAT_S", 1)
    monkeypatch.setattr(study_storage, "GRACE_PERIOD_S", 2)
    time.sleep(3)
    assert run_cli(*args, "--sweep.n_trials", "1") == 0
    rows = read_rows(in_tmp / "lightning_logs" / "circles_sweep" / "s" / "trials.csv")
    assert [(row["trial"], row["state"]) for row in rows] == [("0", "fail"), ("1", "complete")]
    assert rows[1]["note"] == "rerun of trial 0"
    assert rows[1]["model.optimizer.lr"] == rows[0]["model.optimizer.lr"] != ""


WORKER_SIGNALLED_AT = """
import os, signal, sys
sys.path.insert(0, sys.argv[1])
import src.sweeps.command as command
from src.cli.template_cli import TemplateCLI
from src.cli.user_errors import user_message
def signalled(method):
    def run(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # as a scheduler would, while no fit runs
        return method(*args, **kwargs)
    return run
if sys.argv[2] == "classes":  # the trial's classes are being built, before its fit
    TemplateCLI.instantiate_classes = signalled(TemplateCLI.instantiate_classes)
else:  # every trial has finished and the report is being written
    command.report = signalled(command.report)
import train
train.main(sys.argv[3:])
"""


@pytest.mark.parametrize("where", ["classes", "report"])
def test_a_sigterm_while_no_fit_runs_ends_the_sweep_in_one_line_and_queues_its_trial(in_tmp: Path, where: str) -> None:
    """Outside a fit, SIGTERM's default would end the worker silently and leave its trial 'running'
    until the heartbeat's grace period; it is a stop like any other: exit 143, the trial queued."""
    args = ["sweep", "--config", config("circles"), *SHORT, "--sweep.space", SPACE, "--sweep.study_name", "s"]
    args += ["--sweep.n_trials", "1"]
    worker = subprocess.run(
        [sys.executable, "-c", WORKER_SIGNALLED_AT, str(Path(__file__).parents[1]), where, *args],
        cwd=in_tmp,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert worker.returncode == 143, worker.stderr[-2000:]
    stop = worker.stderr.strip().splitlines()[-1]
    study = optuna.load_study(study_name="s", storage="sqlite:///lightning_logs/circles_sweep/optuna.db")
    states = [trial.state.name for trial in study.trials]
    if where == "classes":
        assert stop == (
            "stopped: SIGTERM received: trial 0 of study s was stopped and is queued to run again; "
            "go on with the same command and --sweep.study_name s"
        )
        assert states == ["FAIL", "WAITING"] and study.trials[0].user_attrs["note"].startswith("stopped by SIGTERM")
    else:
        assert stop == (
            "stopped: SIGTERM received during the sweep: the trials it finished are kept; "
            "go on with the same command and --sweep.study_name s"
        )
        assert states == ["COMPLETE"]


def test_a_worker_with_other_fixed_values_cannot_join_a_study(in_tmp: Path, capsys: pytest.CaptureFixture) -> None:
    """Trials with fewer epochs or another seed cannot be compared with the study's others: refused in
    one line naming the values (a key swept before and fixed now too); progress bars on are fine."""
    args = ["--config", config("circles"), *SHORT, "--sweep.space", SPACE]
    assert run_cli("sweep", *args, "--sweep.n_trials", "1", "--trainer.gradient_clip_val", "1.0") == 0  # study_0
    args += ["--trainer.gradient_clip_val", "1"]  # the same value as a YAML file's 1.0
    join = [*args, "--sweep.study_name", "study_0", "--sweep.n_trials", "1"]
    capsys.readouterr()
    assert run_cli("sweep", *join, "--trainer.max_epochs", "6", "--seed_everything", "7", "--sweep.seeds", "2") == 2
    error = capsys.readouterr().err.strip()
    assert error == (
        "error: study study_0 runs its trials with other fixed values than this command: seed_everything 42, "
        "here 7; sweep.seeds 1, here 2; trainer.max_epochs 4, here 6; give the values of the study to add trials "
        "to it, or another --sweep.study_name to start a new one"
    )
    assert run_cli("sweep", *join[:-2], "--trainer.max_epochs", "6", "--sweep.n_trials", "0") == 0  # a report only
    capsys.readouterr()
    report = [*args, "--sweep.n_trials", "0"]  # of an existing study only: a new empty one would take study_1
    assert run_cli("sweep", *report) == 2 and run_cli("sweep", *report, "--sweep.study_name", "study_9") == 2
    errors = capsys.readouterr().err.strip().splitlines()
    db = Path("lightning_logs/circles_sweep/optuna.db")
    assert errors == [
        f"error: --sweep.n_trials 0 writes the report of an existing study: give its --sweep.study_name ({db} holds "
        "study_0)",
        f"error: --sweep.n_trials 0 writes the report of an existing study: there is no study 'study_9' ({db} holds "
        "study_0)",
    ]
    assert run_cli("sweep", *join, "--sweep.space", "{model.optimizer.lr: [0.01, 0.02]}") == 2  # hidden_sizes now fixed
    assert (
        "other fixed values than this command: model.init_args.net.init_args.hidden_sizes (none), here [512, 512];"
        in (capsys.readouterr().err)
    )
    study = optuna.load_study(study_name="study_0", storage="sqlite:///lightning_logs/circles_sweep/optuna.db")
    kept = study.user_attrs["fixed_settings"]
    study.set_user_attr("fixed_settings", {k: v for k, v in kept.items() if not k.startswith("sweep.space.")})
    assert run_cli("sweep", *join) == 0  # a study kept before the space was: joined, and it takes this space
    assert optuna.load_study(study_name="study_0", storage=study._storage).user_attrs["fixed_settings"] == kept
    wider = SPACE.replace("high: 0.05", "high: 0.1")  # another range for the same key
    assert run_cli("sweep", *join, "--sweep.space", wider) == 2
    assert "other fixed values than this command: sweep.space.model.optimizer.lr.high 0.05, here 0.1; give" in (
        capsys.readouterr().err
    )
    assert (
        run_cli("sweep", *join, "--trainer.enable_progress_bar", "true", "--trainer.enable_model_summary", "true") == 0
    )


def test_sweeps_started_together_each_get_their_own_study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two sweeps without --sweep.study_name both pick study_0 before either has made it: the second to
    make it takes study_1 instead of running its trials in the first's study."""
    import src.sweeps.study_storage as study_storage

    storage = optuna.storages.InMemoryStorage()
    picked_before = iter(["study_0"])  # this command's pick, made before the other command created it
    real = study_storage.next_study_name
    monkeypatch.setattr(study_storage, "next_study_name", lambda *args: next(picked_before, None) or real(*args))
    optuna.create_study(storage=storage, study_name="study_0")  # the other command's, created in between
    study, created = open_study(
        storage, None, optuna.samplers.RandomSampler(), optuna.pruners.NopPruner(), "val/acc", "maximize", tmp_path
    )
    assert study.study_name == "study_1" and created
    assert [s.study_name for s in storage.get_all_studies()] == ["study_0", "study_1"]


def test_a_new_study_never_runs_its_trials_in_the_folders_of_one_whose_storage_is_gone(tmp_path: Path) -> None:
    """After optuna.db is deleted (or another --sweep.storage is given) the trial folders of the old
    study_0 remain: a new study takes the next free name, and one named like them is refused."""
    (tmp_path / "study_0" / "trial_0").mkdir(parents=True)
    storage = optuna.storages.InMemoryStorage()
    assert next_study_name(storage, tmp_path) == "study_1"
    with pytest.raises(UserInputError, match=r"study_0 holds the trial runs of a study that 'study_0' in this storage"):
        check_trial_folders_free(storage, "study_0", tmp_path / "study_0")
    assert storage.get_all_studies() == []  # refused before the study was created in the storage
    optuna.create_study(storage=storage, study_name="study_0")  # created, but it never ran a trial
    with pytest.raises(UserInputError, match="holds the trial runs"):
        check_trial_folders_free(storage, "study_0", tmp_path / "study_0")
    check_trial_folders_free(storage, "study_1", tmp_path / "study_1")
    ran = optuna.create_study(storage=storage, study_name="study_2")
    ran.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)
    (tmp_path / "study_2" / "trial_0").mkdir(parents=True)
    check_trial_folders_free(storage, "study_2", tmp_path / "study_2")  # its own trials: it goes on


@pytest.mark.parametrize("space", sorted((ROOT / "configs" / "sweeps").glob("*.yaml")), ids=lambda path: path.stem)
def test_every_shipped_space_gives_optuna_values_it_takes_with_either_sampler(space: Path) -> None:
    """A shipped space's grid values are ones its ranges allow (a log range with grid [0.0] failed
    the grid sampler's first trial)."""
    params = parse_space(read_space(str(space)))
    grid = {param.key: param.grid_values() for param in params}
    for sampler in (optuna.samplers.GridSampler(grid, seed=0), optuna.samplers.RandomSampler(seed=0)):
        study = optuna.create_study(sampler=sampler)
        for _ in range(3):
            trial = study.ask()
            values = {param.key: param.suggest(trial) for param in params}
            assert set(values) == set(grid)


def test_a_smoke_test_is_not_a_fixed_value_a_study_shares() -> None:
    """A worker joining with --trainer.fast_dev_run true would add trials measured on one batch."""

    def settings(**trainer: object) -> dict[str, str]:
        config = SimpleNamespace(as_dict=lambda: {"trainer": {"max_epochs": 4, **trainer}, "seed_everything": 42})
        return fixed_settings(config, [])

    assert settings(fast_dev_run=True) != settings(fast_dev_run=False)
    assert settings(enable_progress_bar=False) == settings(enable_progress_bar=True)  # only printed
    # a study kept before fast_dev_run was compared: joined as before, unless this worker is a smoke test
    study = optuna.create_study()
    older = {key: value for key, value in settings(fast_dev_run=False).items() if key != "trainer.fast_dev_run"}
    study.set_user_attr(STUDY_ATTR, older)
    check_same_settings(study, settings(fast_dev_run=False), created=False)
    with pytest.raises(UserInputError, match="trainer.fast_dev_run false, here true"):
        check_same_settings(study, settings(fast_dev_run=True), created=False)


def test_a_study_database_that_cannot_be_written_is_one_line() -> None:
    """Optuna opens an SQLite study read-only and fails at its first write with a message about column lengths:
    the user reads what the database said and what to do."""
    try:
        try:
            raise sqlite3.OperationalError("attempt to write a readonly database")
        except sqlite3.OperationalError as error:
            raise optuna.exceptions.StorageInternalError("An exception is raised during the commit.") from error
    except optuna.exceptions.StorageInternalError as error:
        message = user_message(error, "sweep")
    assert message == (
        "the sweep's study database could not be written (attempt to write a readonly database): make it and its "
        "folder writable, with space free, or give another --sweep.storage"
    )
