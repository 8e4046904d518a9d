"""Bad input, as a table: each ends with one line that says what to fix, exit 2, no traceback."""

import datetime
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from src.cli.user_errors import user_message
from src.modules.nets import MLP
from tests.conftest import QUIET, ROOT, config, run_cli
from tests.test_image_folder import food_run, small_food

# Each base validates its one epoch, so that it would write checkpoints: a row's "no checkpoint
# was written" then says its mistake stopped the run (test_the_rows_fail_for_their_bad_input_alone).
VALIDATE = ["--trainer.check_val_every_n_epoch", "1"]
CIRCLES = ["fit", "--config", config("circles"), "--trainer.max_epochs", "1", *VALIDATE, *QUIET]
REGRESSION = ["fit", "--config", config("regression"), "--trainer.max_epochs", "1", *VALIDATE, *QUIET]
TABULAR = [
    "fit",
    "--config",
    config("tabular_regression"),
    "--data.target_column",
    "y",
    "--trainer.max_epochs",
    "1",
    *VALIDATE,
    *QUIET,
]


def write_files(folder: Path) -> None:
    (folder / "empty.csv").write_text("")
    (folder / "cols.csv").write_text("a,b\n1,2\n3,4\n")
    (folder / "text.csv").write_text("a,b\n1,2\n3,four\n")
    (folder / "notes.ckpt").write_text("not a checkpoint")
    torch.save({"saved_on": datetime.date(2026, 1, 2)}, folder / "dated.ckpt")  # an object torch.load will not run
    torch.save({"weights": torch.ones(2)}, folder / "foreign.ckpt")
    torch.save({"state_dict": {"net.weight": torch.ones(2)}}, folder / "weights.ckpt")  # saved by hand
    (folder / "a_folder").mkdir()
    # Files a spreadsheet or another system may hand over instead of a UTF-8 CSV.
    (folder / "latin1.csv").write_bytes("a,b,y\n1,2,3\n4,5,6\ncafé,7,8\n".encode("latin-1"))
    (folder / "utf16.csv").write_bytes("a,b,y\n1,2,3\n4,5,6\n".encode("utf-16"))
    with zipfile.ZipFile(folder / "sheet.xlsx", "w") as workbook:  # an .xlsx is a zip of XML files
        workbook.writestr("xl/workbook.xml", "<workbook/>")
    unclosed = 'a,b,y\n1,2,"3\n' + "4,5,6\n" * 30_000  # one field of 180,000 characters
    (folder / "unclosed.csv").write_text(unclosed)
    (folder / "twice.csv").write_text("a,b,a,y\n1,2,3,4\n5,6,7,8\n")
    (folder / "tiny.csv").write_text("a,b,y\n1,2,3\n4,5,6\n7,8,9\n")  # too few rows for a validation split
    # Values float32 cannot train on: one past its range, one whose square (variance, squared error) overflows.
    rows = [f"{i},{i % 5},{2 * i - i % 5}" for i in range(40)]
    (folder / "huge.csv").write_text("a,b,y\n" + "\n".join(rows[:2] + ["2,1e300,3"] + rows[3:]) + "\n")
    (folder / "hugey.csv").write_text("a,b,y\n" + "\n".join(rows[:5] + ["5,0,1e30"] + rows[6:]) + "\n")
    (folder / "unclosed.yaml").write_text("trainer:\n  max_epochs: [1\n")
    (folder / "two.yaml").write_text("trainer:\n  max_epochs: 1\n---\nseed_everything: 3\n")
    (folder / "empty.yaml").write_text("# nothing set yet\n")
    (folder / "list.yaml").write_text("- model\n- data\n")


CASES = [
    # configs and CLI values
    (["--trainer.max_epochz", "3"], "unrecognized arguments: --trainer.max_epochz"),
    (["--trainer.max_epochs", "ten"], "trainer.max_epochs"),
    (["--model.optimizer.lr", "abc"], "model.optimizer.lr: Expected a <class 'float'>. Got value: abc (see:"),
    (["--model.optimizer.init_args.lr", "abc"], "model.optimizer.lr: Expected a <class 'float'>. Got value: abc (see:"),
    (["--seed_everything", "abc"], "seed_everything: Expected a <class 'bool'> or <class 'int'>. Got value: abc (see:"),
    (["--model.optimizer.lr", "-0.1"], "model.optimizer could not be built: Invalid learning rate: -0.1"),
    (["--model.optimizer", "torch.optim.Nope"], "has no attribute 'Nope'"),
    (["--model.optimizer.name", "adagrad"], "model.optimizer: Type"),
    (["--model.scheduler.name", "cyclic"], "model.scheduler.name"),
    (["--model.net.init_args.activation", "swish"], "activation"),
    (["--model.net.init_args.hidden_sizes", "[0]"], "hidden_sizes must all be >= 1"),
    (["--model.net.init_args.dropout", "1.5"], "dropout must be in [0, 1)"),
    (["--model.label_smoothing", "1.0"], "label_smoothing must be in [0, 1)"),
    (["--data.batch_size", "0"], "data.batch_size must be >= 1"),
    (["--data.test_fraction", "1.0"], "data.test_fraction must be in [0, 1)"),
    (["--data.val_fraction", "0.5", "--data.test_fraction", "0.5"], "must be < 1 to leave training data"),
    (["--data.n_samples", "3"], "data.n_samples must be >= 10"),
    (["--data.dataset", "spirals"], "data.dataset"),
    (["--config", "missing.yaml"], "File does not exist"),
    (
        ["--config", "two.yaml"],
        "--config two.yaml is not valid YAML: expected a single document in the stream (line 1), but found another "
        "document at line 3, column 1",
    ),
    (
        ["--config", "unclosed.yaml"],
        "--config unclosed.yaml is not valid YAML: while parsing a flow sequence (line 2), expected ',' or ']', "
        "but got '<stream end>' at line 3, column 1",
    ),
    (["--config", "empty.yaml"], "--config empty.yaml is empty: a config maps sections to settings (model:, data:"),
    (["--config", "list.yaml"], "--config list.yaml is a YAML list, not a mapping: a config maps sections"),
    (["--trainer.precision", "8-bogus"], "precision"),
    # impossible flag combinations
    (["--trainer.accelerator", "gpu"], "Use --trainer.accelerator cpu"),
    (["--model.scheduler.name", "onecycle", "--model.scheduler.warmup_epochs", "2"], "its own warm-up"),
    # 4 full-batch steps with a 25% warm-up: one warm-up step, which OneCycleLR would divide by zero
    (["--model.scheduler.name", "onecycle", "--trainer.max_epochs", "4"], "OneCycleLR cannot divide"),
    (["--model.scheduler.name", "cosine", "--model.scheduler.warmup_epochs", "5"], "must be below trainer.max_epochs"),
    (["--model.scheduler.name", "exponential", "--model.scheduler.final_lr", "0"], "final_lr must be > 0"),
    # Trainer values Lightning takes and then divides by, or runs with wrongly
    (["--trainer.check_val_every_n_epoch", "0"], "--trainer.check_val_every_n_epoch must be >= 1"),
    (["--trainer.accumulate_grad_batches", "0"], "--trainer.accumulate_grad_batches must be >= 1"),
    (["--trainer.val_check_interval", "0"], "--trainer.val_check_interval must be a fraction of an epoch"),
    (["--trainer.val_check_interval", "1.5"], "--trainer.val_check_interval must be a fraction of an epoch"),
    (["--trainer.val_check_interval", "00:00:01:00"], "a time-based interval is not supported here"),
    (["--trainer.val_check_interval", "5"], "--trainer.val_check_interval 5 is more than the 1 training batches"),
    (["--trainer.num_nodes", "0"], "--trainer.num_nodes must be >= 1"),
    (["--trainer.gradient_clip_val", "-1"], "a negative limit would reverse every gradient"),
    # checkpoints
    (["--ckpt_path", "last"], "no trained run to take a checkpoint from"),
    (["--ckpt_path", "best"], "no trained run to take a checkpoint from"),
    (["--ckpt_path", "nowhere.ckpt"], "no such file"),
    (["--ckpt_path", "notes.ckpt"], "notes.ckpt is not a readable checkpoint (it is not a file torch.save wrote)"),
    (["--ckpt_path", "dated.ckpt"], "(it holds a datetime.date object, which a weights-only load does not run)"),
    (["--ckpt_path", "foreign.ckpt"], "is not a Lightning checkpoint"),
    (["--ckpt_path", "weights.ckpt"], "holds weights but no training state (optimizer, epoch), so a fit cannot"),
    # data files
    (
        ["REGRESSION", "--data.source", "csv"],
        "data.source: Expected one of 'linear', 'wave'",
    ),  # CSV: TabularDataModule
    (["TABULAR", "--data.csv_path", "missing.csv"], "CSV file not found"),
    (["TABULAR", "--data.csv_path", "a_folder"], "CSV file not found"),
    (["TABULAR", "--data.csv_path", "empty.csv"], "has no data rows"),
    (["TABULAR", "--data.csv_path", "cols.csv", "--data.target_column", "y"], "no column(s) ['y']"),
    (["TABULAR", "--data.csv_path", "text.csv", "--data.target_column", "a"], "feature column(s) ['b'] hold text"),
    (["TABULAR", "--data.csv_path", "latin1.csv"], "is not UTF-8 (byte 0xe9 on line 4"),
    (["TABULAR", "--data.csv_path", "utf16.csv"], "is UTF-16 text, not UTF-8: convert it with iconv -f utf-16"),
    (["TABULAR", "--data.csv_path", "sheet.xlsx"], "is a spreadsheet workbook (.xlsx) or another zip file, not a CSV"),
    (["TABULAR", "--data.csv_path", "unclosed.csv"], "line 2: a field runs past 131072 characters"),
    (["TABULAR", "--data.csv_path", "twice.csv"], "has the column name(s) ['a'] more than once"),
    (["TABULAR", "--data.csv_path", "huge.csv"], "huge.csv, line 4: column 'b' is '1e300', beyond the +-1.8e+19"),
    (["TABULAR", "--data.csv_path", "hugey.csv"], "hugey.csv, line 7: column 'y' is '1e30', beyond the +-1.8e+19"),
    (
        ["TABULAR", "--data.csv_path", "tiny.csv"],
        "the val split is empty: change data.val_fraction and data.test_fraction so that every split gets data",
    ),
]


def test_a_checkpoint_this_user_cannot_read_is_named_as_such(
    in_tmp: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another user's checkpoint (mode 600) said "cannot write ... free space". Tests run as root here,
    whom chmod does not stop, so the refusal the file system gives is played by Path.open."""
    (in_tmp / "locked.ckpt").write_bytes(b"PK")
    opened = Path.open

    def refused(self: Path, *args: object, **kwargs: object) -> object:
        if self.name == "locked.ckpt":
            raise PermissionError(13, "Permission denied", str(self))
        return opened(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "open", refused)
    assert run_cli("test", "--config", config("circles"), "--ckpt_path", "locked.ckpt", *QUIET) == 2
    error = capsys.readouterr().err.strip()
    assert error.endswith(
        "error: cannot read locked.ckpt: Permission denied; make it readable to you (chmod a+r) "
        "or copy it somewhere you can read"
    ), error


# Rows that are a mistake only on some machines: asking for a GPU trains fine where there is one.
ROW_MARKS = {
    "Use --trainer.accelerator cpu": pytest.mark.skipif(
        torch.cuda.is_available(), reason="this machine has a GPU: --trainer.accelerator gpu is no mistake here"
    ),
}


@pytest.mark.parametrize(
    ("extra", "message"), [pytest.param(*case, id=case[1], marks=ROW_MARKS.get(case[1], ())) for case in CASES]
)
def test_bad_input_gives_one_clear_line(
    in_tmp: Path, capsys: pytest.CaptureFixture, extra: list[str], message: str
) -> None:
    write_files(in_tmp)
    base = CIRCLES
    if extra and extra[0] in ("REGRESSION", "TABULAR"):
        base, extra = {"REGRESSION": REGRESSION, "TABULAR": TABULAR}[extra[0]], extra[1:]
    capsys.readouterr()
    assert run_cli(*base, *extra) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert "Traceback" not in "\n".join(lines)
    assert lines[-1].startswith("error: ") and message in lines[-1], lines[-1]
    assert not list(in_tmp.glob("lightning_logs/*/version_*/checkpoints/*.ckpt"))
    assert not list(in_tmp.glob("lightning_logs/*/version_*")), "a failed fit left a run folder behind"


@pytest.mark.parametrize("base", ["CIRCLES", "REGRESSION", "TABULAR"])
def test_the_rows_fail_for_their_bad_input_alone(in_tmp: Path, capsys: pytest.CaptureFixture, base: str) -> None:
    """The control: each row's command, without its bad input, trains and writes checkpoints, so a
    row's exit 2 comes from its mistake and its 'no checkpoint was written' check can fail."""
    rows = ["a,b,y"] + [f"{i},{i % 5},{2 * i - i % 5}" for i in range(40)]
    (in_tmp / "good.csv").write_text("\n".join(rows) + "\n")
    command = {"CIRCLES": CIRCLES, "REGRESSION": REGRESSION, "TABULAR": [*TABULAR, "--data.csv_path", "good.csv"]}
    capsys.readouterr()
    assert run_cli(*command[base]) == 0
    assert "error: " not in capsys.readouterr().err
    assert list(in_tmp.glob("lightning_logs/*/version_*/checkpoints/*.ckpt"))


# --- predict: where its CSV may go --------------------------------------------------------
PREDICT = ["predict", "--config", config("circles"), "--ckpt_path", "last", "--input", "points.csv", *QUIET]
LAST = "lightning_logs/circles/version_0/checkpoints/last.ckpt"

PREDICT_CASES = [
    (["--output", LAST], "inside a checkpoints folder"),
    (["--output", LAST, "--overwrite"], "inside a checkpoints folder"),  # not even when told to
    (["--output", "lightning_logs/circles/version_0/checkpoints/new.csv"], "inside a checkpoints folder"),
    (["--output", "train.csv"], "exists and is not a predictions CSV"),  # the user's data
    (["--output", "notes.ckpt"], "is a checkpoint file"),
    (["--output", "notes.ckpt", "--overwrite"], "is a checkpoint file"),  # a checkpoint kept anywhere: never
    (["--output", "new.ckpt", "--overwrite"], "is a checkpoint file"),
    # The user's own tables whose last columns only look like predictions of another model.
    (["--output", "sales.csv"], "exists and is not a predictions CSV"),
    (["--output", "votes.csv"], "exists and is not a predictions CSV"),
    (["--output", "a_folder"], "is a folder"),
    (["--output", "points.csv"], "would overwrite the input"),
    (["--output", "points.csv", "--overwrite"], "would overwrite the input"),
]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small trained circles run, copied into each predict case's folder."""
    folder = tmp_path_factory.mktemp("trained")
    here = Path.cwd()
    os.chdir(folder)
    try:
        assert run_cli(*CIRCLES, "--trainer.callbacks", "[]") == 0
    finally:
        os.chdir(here)
    return folder / "lightning_logs"


def file_digests(folder: Path) -> dict[str, str]:
    """Every file under `folder` by its sha256: what a refused command must leave as it was."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.mark.parametrize(("extra", "message"), [pytest.param(*case, id=" ".join(case[0])) for case in PREDICT_CASES])
def test_predict_output_mistakes_give_one_line_and_touch_nothing(
    trained_run: Path, in_tmp: Path, capsys: pytest.CaptureFixture, extra: list[str], message: str
) -> None:
    write_files(in_tmp)
    shutil.copytree(trained_run, in_tmp / "lightning_logs")
    (in_tmp / "points.csv").write_text("x1,x2\n0.0,0.0\n1.0,0.0\n")
    (in_tmp / "train.csv").write_text("x1,x2,label\n0.1,0.2,1\n0.9,0.1,0\n")
    (in_tmp / "sales.csv").write_text("date,actual_sales,predicted_sales\n2026-01-01,10,12\n")
    (in_tmp / "votes.csv").write_text("name,class,probability,p_yes,p_no\nann,yes,0.9,0.9,0.1\n")
    before = file_digests(in_tmp)
    capsys.readouterr()
    assert run_cli(*PREDICT, *extra) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert "Traceback" not in "\n".join(lines)
    assert lines[-1].startswith("error: ") and message in lines[-1], lines[-1]
    assert file_digests(in_tmp) == before


def test_predict_replaces_its_own_csv_and_any_file_with_overwrite(
    trained_run: Path, in_tmp: Path, capsys: pytest.CaptureFixture
) -> None:
    """The control of the table above: the same command writes where it may."""
    shutil.copytree(trained_run, in_tmp / "lightning_logs")
    (in_tmp / "points.csv").write_text("x1,x2\n0.0,0.0\n1.0,0.0\n")
    (in_tmp / "train.csv").write_text("x1,x2,label\n0.1,0.2,1\n0.9,0.1,0\n")
    assert run_cli(*PREDICT) == 0
    first = (in_tmp / "predictions.csv").read_text()
    assert first.splitlines()[0] == "x1,x2,class,probability,p_0,p_1"
    (in_tmp / "points.csv").write_text("x1,x2\n0.5,0.5\n")
    assert run_cli(*PREDICT) == 0  # predict's own CSV from before: replaced without --overwrite
    assert len((in_tmp / "predictions.csv").read_text().splitlines()) == 2
    (in_tmp / "mine.csv").write_text("my own file\n")
    assert run_cli(*PREDICT, "--output", "mine.csv", "--overwrite", "false") == 2  # as export's flag is written
    assert (in_tmp / "mine.csv").read_text() == "my own file\n"
    assert run_cli(*PREDICT, "--output", "mine.csv", "--overwrite", "true") == 0
    capsys.readouterr()
    assert run_cli(*PREDICT, "--output", "train.csv", "--overwrite") == 0
    assert (in_tmp / "train.csv").read_text().splitlines()[0] == "x1,x2,class,probability,p_0,p_1"
    assert "error: " not in capsys.readouterr().err


def unprivileged() -> list[str]:
    """A command prefix under which file permissions hold: as root, setpriv drops the capabilities
    that let root write anywhere (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH); as another user, none."""
    if os.geteuid() != 0:
        return []
    prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    if shutil.which("setpriv") is None or subprocess.run([*prefix, "true"], check=False).returncode != 0:
        pytest.skip("running as root without setpriv: a read-only folder would not stop root's writes")
    return prefix


def test_resuming_into_a_read_only_run_folder_names_it(in_tmp: Path) -> None:
    assert run_cli(*CIRCLES, "--trainer.callbacks", "[]") == 0
    logs = in_tmp / "lightning_logs"
    before = file_digests(logs)
    folders = [logs, *(path for path in logs.rglob("*") if path.is_dir())]
    for path in [*folders, *(path for path in logs.rglob("*") if path.is_file())]:
        path.chmod(path.stat().st_mode & ~0o222)  # no one may write
    try:
        command = [sys.executable, str(ROOT / "train.py"), *CIRCLES, "--ckpt_path", "last"]
        result = subprocess.run(
            [*unprivileged(), *command], cwd=in_tmp, capture_output=True, text=True, timeout=120, check=False
        )
    finally:
        for path in folders:
            path.chmod(path.stat().st_mode | 0o200)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr and "Exception in thread" not in result.stderr, result.stderr
    assert lines[-1].startswith("error: cannot write lightning_logs/circles/version_0: Permission denied"), lines[-1]
    assert file_digests(logs) == before


# Run train.py's main once per case, in one process, printing each case's exit status and last line.
CASES_SCRIPT = """
import contextlib, io, json, sys
import train
results = []
for args in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            train.main(args)
            status = 0
        except SystemExit as stop:
            status = int(stop.code or 0)
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    results.append([status, lines[-1] if lines else ""])
print(json.dumps(results))
"""


def test_a_file_or_folder_that_cannot_be_read_is_reported_as_unreadable(in_tmp: Path) -> None:
    rows = ["a,b,y"] + [f"{i},{i % 5},{2 * i}" for i in range(40)]
    (in_tmp / "locked.csv").write_text("\n".join(rows) + "\n")
    locked_folder, locked_image, locked_root = (small_food(in_tmp / name) for name in ("one", "two", "three"))
    zipped = in_tmp / "food.zip"
    with zipfile.ZipFile(zipped, "w") as handle:
        handle.write(locked_image / "train" / "pizza" / "pizza_000.png", "train/pizza/pizza_000.png")
    one_epoch = ("--trainer.max_epochs", "1")
    cases = {  # what cannot be read: the command that reads it
        "locked.csv": [*TABULAR, "--data.csv_path", "locked.csv"],
        f"{locked_folder}/train/steak": ["fit", *food_run(locked_folder, in_tmp, *one_epoch)],
        f"{locked_image}/train/steak/steak_000.png": ["fit", *food_run(locked_image, in_tmp, *one_epoch)],
        f"{zipped}": ["fit", *food_run(zipped, in_tmp, *one_epoch)],
        f"{locked_root}": ["fit", *food_run(locked_root, in_tmp, *one_epoch)],
    }
    for name in cases:
        (in_tmp / name).chmod(0)
    try:
        command = [sys.executable, "-c", CASES_SCRIPT, json.dumps(list(cases.values()))]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        done = subprocess.run(
            [*unprivileged(), *command], cwd=in_tmp, env=env, capture_output=True, text=True, timeout=300, check=False
        )
    finally:
        for name in cases:
            (in_tmp / name).chmod(0o755)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    starts = [f"error: cannot read {name}: Permission denied; give this user" for name in cases]
    got = [(status, line[: len(start)]) for (status, line), start in zip(results, starts, strict=True)]
    assert got == [(2, start) for start in starts], results
    assert not list(in_tmp.glob("lightning_logs/*/version_*/checkpoints/*.ckpt"))


# --- other commands: the line names the fix that command takes ------------------------------
COMMAND_CASES = [
    (
        ["fitt", "--config", config("circles")],
        "'fitt' is not a command: did you mean fit? choose from fit, validate, test, predict, lr_find, export, "
        "compare_schedules, sweep, serve, optimize",
    ),
    ([], "no command given: choose from fit, validate, test, predict, lr_find, export, compare_schedules"),
    (["--config", config("circles")], "but it was not provided. (see: python train.py --help)"),
    (["serve"], "the following arguments are required: --ckpt_path (see: python train.py serve --help)"),
    (["optimize"], "the following arguments are required: --data_dir, --output_dir (see: python train.py optimize"),
    (["serve", "--ckpt_path", "best"], "serve takes the checkpoint file itself"),
    (
        ["export", "--config", config("circles"), "--ckpt_path", LAST, "--output_dir", "notes.ckpt", *QUIET],
        "--output_dir notes.ckpt is a file: give a folder",
    ),
    (
        ["predict", "--ckpt_path", LAST, "--input", "a_folder", *QUIET],
        "--input a_folder is a folder, but this model predicts from a CSV file with the columns ['x1', 'x2']",
    ),
]


@pytest.mark.parametrize(
    ("command", "message"), [pytest.param(*case, id=(case[0] or ["nothing"])[0]) for case in COMMAND_CASES]
)
def test_other_commands_name_their_own_fix_and_touch_nothing(
    trained_run: Path, in_tmp: Path, capsys: pytest.CaptureFixture, command: list[str], message: str
) -> None:
    write_files(in_tmp)
    shutil.copytree(trained_run, in_tmp / "lightning_logs")
    before = file_digests(in_tmp)
    capsys.readouterr()
    assert run_cli(*command) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert file_digests(in_tmp) == before


def test_resuming_past_max_epochs_says_which_epoch_the_checkpoint_reached(
    in_tmp: Path, capsys: pytest.CaptureFixture
) -> None:
    args = ["--config", config("circles"), *QUIET]
    assert run_cli("fit", *args, "--trainer.max_epochs", "3") == 0
    before = file_digests(in_tmp)
    capsys.readouterr()
    assert run_cli("fit", *args, "--trainer.max_epochs", "1", "--ckpt_path", "last") == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines[-1].startswith("error: this checkpoint is from epoch 3, past --trainer.max_epochs 1"), lines
    assert "give --trainer.max_epochs above 3 to train on" in lines[-1]
    capsys.readouterr()
    assert run_cli("fit", *args, "--trainer.max_epochs", "2", "--ckpt_path", "last") == 2  # 3 trained: past 2 too
    assert "this checkpoint is from epoch 3, past --trainer.max_epochs 2" in capsys.readouterr().err
    assert file_digests(in_tmp) == before  # refused before the run folder got a resumed config or curves


def test_a_lost_connection_outside_ddp_is_not_blamed_on_another_rank() -> None:
    """The 'another rank ended first' line is for DDP only: in one process a reset connection (a remote
    data read) is a real error, kept with its traceback."""
    assert user_message(RuntimeError("recv failed: Connection reset by peer")) is None


def test_a_trainer_value_that_cannot_work_is_refused_before_the_model_is_built(
    in_tmp: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Building a model can be slow or need the network (a pretrained net's weights): a bad Trainer
    value is the first thing said."""

    def not_to_be_built(*args: object, **kwargs: object) -> None:
        raise AssertionError("the net was built before the Trainer's values were checked")

    monkeypatch.setattr(MLP, "__init__", not_to_be_built)
    assert run_cli("fit", "--config", config("circles"), "--trainer.accumulate_grad_batches", "0") == 2
    assert "--trainer.accumulate_grad_batches must be >= 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--early_stopping.patience", "3", "--early_stopping.monitor", "val/los"], "--early_stopping.monitor val/los"),
        (["--checkpoint.monitor", "val/accc"], "--checkpoint.monitor val/accc"),
        (
            ["--model.scheduler.name", "plateau", "--model.scheduler.monitor", "val/nope"],
            "--model.scheduler.monitor val/nope",
        ),
        (["--checkpoint.monitor", "acc"], "--checkpoint.monitor acc"),  # no stage: failed at the first validation
        (
            ["--early_stopping.patience", "3", "--early_stopping.monitor", "test/acc"],
            "--early_stopping.monitor test/acc",
        ),
    ],
    ids=["early-stopping", "checkpoint", "plateau-scheduler", "no-stage", "test-metric"],
)
def test_a_monitor_the_model_does_not_log_is_one_line_naming_those_it_does(
    in_tmp: Path, capsys: pytest.CaptureFixture, flags: list[str], message: str
) -> None:
    args = ["--config", config("circles"), "--trainer.max_epochs", "2", "--trainer.check_val_every_n_epoch", "1"]
    assert run_cli("fit", *args, *QUIET, *flags) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "Traceback" not in error, error
    assert f"{message} is not a metric this model logs; choose one of: val/acc, val/f1, val/loss" in error, error
    assert not (in_tmp / "lightning_logs").exists()  # refused before training, not at its first validation


def test_a_command_without_a_config_suggests_one(in_tmp: Path, capsys: pytest.CaptureFixture) -> None:
    assert run_cli("fit") == 2
    error = capsys.readouterr().err.strip()
    assert "required: --model; start from a config, e.g. python train.py fit --config configs/circles.yaml" in error


def test_a_value_of_the_wrong_type_is_named_without_the_parsers_internals(
    in_tmp: Path, capsys: pytest.CaptureFixture
) -> None:
    assert run_cli("fit", "--config", config("circles"), "--model.net.init_args.hidden_sizes", "64") == 2
    error = capsys.readouterr().err.strip()
    assert "model.net.init_args.hidden_sizes: Expected a <class 'list'>. Got value: 64 (see:" in error, error
    assert "Namespace(" not in error


def test_every_missing_option_is_named_as_a_flag() -> None:
    """Only the first of several ('fit.model, fit.data') lost its subcommand's prefix."""
    from argparse import ArgumentError

    from src.cli.user_errors import user_message

    missing = ArgumentError(None, "the following arguments are required: fit.model, fit.data")
    assert user_message(missing, "fit").startswith("the following arguments are required: --model, --data; ")
