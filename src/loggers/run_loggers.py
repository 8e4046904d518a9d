"""CSV, MLflow and Weights & Biases loggers that keep a run where TensorBoard keeps it.

Every logger of this project shares the run folder `<save_dir>/<name>/version_N/`: the
checkpoints, config.yaml and the tracker's local files live there whatever the tracker, so
`--ckpt_path last|best`, predict, export and lr_find find a run the same way. `name` is the
experiment (MLflow's experiment, W&B's project); `version` the run folder's number. The
tracker's own run id is kept in the run folder (mlflow.json, wandb.json), so a resumed run
(`--ckpt_path last` sets `version`) goes on in the same MLflow or W&B run.
"""

import csv
import logging
import os
import shutil
import socket
import warnings
from argparse import Namespace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

from lightning.pytorch.loggers import CSVLogger, MLFlowLogger, WandbLogger
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn

from src.checkpointing.atomic_files import write_atomically
from src.checkpointing.run_folder import RunFolder
from src.checkpointing.runs import tracker_record
from src.errors import UserInputError, first_line
from src.quiet_logs import DropMessages, dropped

# MLflow narrates creating and migrating its local database at the first run: not news to a user.
MLFLOW_DATABASE_NOTICES = DropMessages("Creating initial MLflow database tables", "Updating database tables")

DEFAULT_DIR = "lightning_logs"
MOVED_STORE = "mlflow-moved.db"  # the store suggested for the runs of a project moved from its MLflow store


class CSV(CSVLogger):
    """Lightning's CSVLogger (metrics.csv, hparams.yaml in `<save_dir>/<name>/version_N`); the
    figure callbacks write PNG files in its `figures/` folder. Accepts (and ignores) the metrics
    that TensorBoard's HPARAMS tab registers with the hyperparameters."""

    def __init__(
        self,
        save_dir: str = DEFAULT_DIR,
        name: str = "lightning_logs",
        version: int | str | None = None,
        prefix: str = "",
        flush_logs_every_n_steps: int = 100,
    ) -> None:
        super().__init__(
            save_dir=save_dir,
            name=name,
            version=version,
            prefix=prefix,
            flush_logs_every_n_steps=flush_logs_every_n_steps,
        )
        self._earlier_rows_kept = False

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """Lightning's CSV writer, which deletes the folder's metrics.csv: a resumed run's earlier
        rows are put back, so the file holds the whole run."""
        if not self._earlier_rows_kept:
            self._earlier_rows_kept = True
            path = Path(self.log_dir) / "metrics.csv"
            earlier = path.read_bytes() if path.is_file() else None
            with warnings.catch_warnings():  # it says the rows are deleted; they are put back just below
                warnings.filterwarnings("ignore", message=r"Experiment logs directory .* exists and is not empty")
                writer = super().experiment
            if earlier:
                write_atomically(path, earlier)
                header = earlier.decode().splitlines()[0]
                writer.metrics_keys = sorted(next(csv.reader([header])))
        return super().experiment

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace | None = None, metrics: Any = None) -> None:
        super().log_hyperparams(params)


# --- MLflow ----------------------------------------------------------------------------------------
def _check_folder(folder: Path, uri: str) -> None:
    """The folder of a local store exists (created if need be) and is writable."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserInputError(
            f"cannot use the MLflow store {uri}: cannot create {folder} ({error.strerror or error}); "
            "choose another --trainer.logger.init_args.tracking_uri or save_dir"
        ) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserInputError(
            f"cannot use the MLflow store {uri}: {folder} is not writable; "
            "choose another --trainer.logger.init_args.tracking_uri or save_dir"
        )


def check_tracking_uri(uri: str, timeout: float = 5.0) -> None:
    """Fail in one line, before any run starts, when an MLflow store cannot be used: a server
    that does not answer, or a local store (SQLite file, folder) that cannot be written."""
    parsed = urlparse(uri)
    scheme = parsed.scheme.lower()
    if scheme in ("http", "https"):
        port = parsed.port or (443 if scheme == "https" else 80)
        try:
            socket.create_connection((parsed.hostname or "", port), timeout=timeout).close()
        except OSError as error:
            reason = error.strerror or str(error) or type(error).__name__
            raise UserInputError(
                f"cannot reach the MLflow tracking server {uri} ({reason}); start it (mlflow server --host "
                "127.0.0.1 --port 5000) or leave out --trainer.logger.init_args.tracking_uri to use the local "
                f"store {DEFAULT_DIR}/mlflow.db"
            ) from None
    elif scheme == "sqlite":
        path = Path(uri.removeprefix("sqlite:///"))
        _check_folder(path.parent, uri)
        if path.exists() and not os.access(path, os.W_OK):
            raise UserInputError(f"cannot use the MLflow store {uri}: {path} is not writable")
    elif scheme in ("", "file"):
        _check_folder(Path(parsed.path if scheme == "file" else uri), uri)


class MLflow(RunFolder, MLFlowLogger):
    """MLflow tracking; by default a local store, no server: `<save_dir>/mlflow.db` (SQLite) with
    the artifacts (config, figures) in `<save_dir>/mlartifacts/`. Browse it with
    `mlflow ui --backend-store-uri sqlite:///lightning_logs/mlflow.db`.

    Args:
        name: the MLflow experiment (and the run folder's experiment: `<save_dir>/<name>/version_N`).
        save_dir: where the run folders (checkpoints, config.yaml) and the default local store go.
        version: the run folder's N (or its whole name, as a sweep's trial_3); a folder that
            already holds an MLflow run (mlflow.json) continues it (a fit there must resume its newest
            checkpoint: `--ckpt_path last`).
        tracking_uri: any MLflow tracking URI (http://127.0.0.1:5000, sqlite:///path.db, a folder);
            default: $MLFLOW_TRACKING_URI, else the local SQLite store above.
        artifact_location: where a newly created experiment keeps artifacts (default: beside a local
            store; the server's choice for a server).
        tags: tags of a new run.
        log_model: also upload checkpoints as artifacts (Lightning's MLFlowLogger option).
        prefix: put before every metric name.
    """

    def __init__(
        self,
        name: str = "lightning_logs",
        save_dir: str = DEFAULT_DIR,
        version: int | str | None = None,
        tracking_uri: str | None = None,
        artifact_location: str | None = None,
        tags: dict[str, Any] | None = None,
        log_model: bool = False,
        prefix: str = "",
    ) -> None:
        self._set_folder(save_dir, name, version)
        logging.getLogger("mlflow.store.db.utils").addFilter(MLFLOW_DATABASE_NOTICES)  # once: the same filter
        root = Path(save_dir).resolve()
        uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{root / 'mlflow.db'}"
        check_tracking_uri(uri)
        given_artifacts = artifact_location is not None
        if artifact_location is None and not urlparse(uri).scheme.startswith("http"):
            artifact_location = (root / "mlartifacts").as_uri()
        # A run folder named by `version` (a resumed run, a sweep's trial) may hold an MLflow run: go on with it.
        record = tracker_record(Path(self.log_dir), "mlflow") if version is not None else {}
        if record and record.get("tracking_uri") != uri:
            raise UserInputError(_other_store(Path(self.log_dir), str(record.get("tracking_uri")), uri, root))
        self.tracking_uri = uri
        # The default store lives in save_dir with its artifacts; MLflow records their folder as an absolute path.
        self._moved_store_check = root if uri == f"sqlite:///{root / 'mlflow.db'}" and not given_artifacts else None
        self.experiment_name = name
        self.resumed = bool(record)
        self._run_started = False
        super().__init__(
            experiment_name=name,
            tracking_uri=uri,
            run_id=record.get("run_id"),
            tags=tags,
            log_model=log_model,
            prefix=prefix,
            artifact_location=artifact_location,
        )

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """The MlflowClient, with this run folder's MLflow run: the stored one, else a new one."""
        if not self._run_started:
            if not self.resumed:  # MLflow names a new run by this tag
                self.tags = {**(self.tags or {}), "mlflow.runName": f"{self._folder_name}/{self.run_folder_name}"}
            if self._moved_store_check is not None:
                _check_not_moved(self.tracking_uri, self.experiment_name, self._moved_store_check)
            parent = super()
            # Lightning sets MLflow's global tracking URI, which MLflow copies into $MLFLOW_TRACKING_URI: the
            # next MLflow logger of this process (a script's next fit, in another save_dir) would take it as the user's.
            user_uri = os.environ.get("MLFLOW_TRACKING_URI")
            try:
                with dropped("lightning.pytorch.loggers.mlflow", "Experiment with name"):  # a new experiment: no news
                    client = _mlflow_call(lambda: parent.experiment, self.tracking_uri)
            finally:
                if user_uri is None:
                    os.environ.pop("MLFLOW_TRACKING_URI", None)
                else:
                    os.environ["MLFLOW_TRACKING_URI"] = user_uri
            self._run_started = True
            if self.resumed:
                client.update_run(self.run_id, status="RUNNING")  # finished when the run first ended
            else:
                record = {"run_id": self.run_id, "experiment_id": self.experiment_id, "tracking_uri": self.tracking_uri}
                self._write_record("mlflow", record)
        return super().experiment

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace, metrics: Any = None) -> None:
        """MLflow params cannot change: a resumed run logs only the new ones (a changed value is warned of)."""
        from lightning.fabric.utilities.logger import _convert_params, _flatten_dict

        flat = {key: str(value)[:250] for key, value in _flatten_dict(_convert_params(params)).items()}
        logged = self.experiment.get_run(self.run_id).data.params
        changed = sorted(key for key, value in flat.items() if key in logged and logged[key] != value)
        if changed:
            rank_zero_warn(f"MLflow keeps the first value of a param; not logged again: {', '.join(changed)}")
        new = {key: value for key, value in flat.items() if key not in logged}
        if new:
            super().log_hyperparams(new)


def _local_path(uri: str) -> Path | None:
    """The absolute path of a local MLflow store or artifact folder (a path, file: or sqlite: URI);
    None for a server, or a relative path (relative to a working folder that may have changed)."""
    parsed = urlparse(uri)
    scheme = parsed.scheme.lower()
    if scheme == "sqlite":
        path = Path(unquote(uri.split("://", 1)[1].removeprefix("/").split("?", 1)[0]))
    elif scheme == "file":
        path = Path(url2pathname(unquote(parsed.path)))
    elif scheme == "" or (len(scheme) == 1 and os.name == "nt"):  # a Windows drive letter reads as a scheme
        path = Path(uri)
    else:
        return None
    return path if path.is_absolute() else None


def _other_store(run: Path, recorded: str, uri: str, save_dir: Path) -> str:
    """Why a run tracked in the MLflow store `recorded` cannot go on in `uri`, and what to do: use that
    store, or, when its local file or folder is gone (a moved project), log the rest to a new MLflow run."""
    path = _local_path(recorded)
    if path is not None and not path.exists():
        return (
            f"{run} was tracked in MLflow at {recorded}, which no longer exists (the project moved?), so its MLflow "
            f"run cannot go on: to log the rest of the run to a new MLflow run, rename {run / 'mlflow.json'} (to "
            f"mlflow.moved.json) and add --trainer.logger.init_args.tracking_uri sqlite:///{save_dir / MOVED_STORE}"
        )
    flag = f"--trainer.logger.init_args.tracking_uri {recorded}"
    return f"{run} was tracked in MLflow at {recorded}, not {uri}: resume with {flag}"


def _check_not_moved(uri: str, name: str, save_dir: Path) -> None:
    """Refuse to log to the default store after it was moved (with its project) or copied: MLflow keeps
    each experiment's artifact folder as the absolute path it had, so a run would write its config and
    figures into the old place (making it again if it is gone)."""
    from mlflow.tracking import MlflowClient

    experiment = _mlflow_call(lambda: MlflowClient(uri).get_experiment_by_name(name), uri)
    old = _local_path(experiment.artifact_location) if experiment is not None else None
    ours = save_dir / "mlartifacts"
    if old is None or old.name != "mlartifacts" or old == ours:  # not a default folder of this store, or ours
        return
    if old.exists() and ours.exists() and os.path.samefile(old, ours):  # one folder under two names (a mount)
        return
    raise UserInputError(
        f"the MLflow store {uri} was made in {old.parent} and moved here, and MLflow keeps the first place of an "
        f"experiment's files ({name}: {experiment.artifact_location}), where this run's would go: log to a new "
        f"store with --trainer.logger.init_args.tracking_uri sqlite:///{save_dir / MOVED_STORE}, or move it back "
        f"to {old.parent}"
    )


def _mlflow_call(call: Any, uri: str) -> Any:
    """Run an MLflow call; a store that fails is one line naming it."""
    from mlflow.exceptions import MlflowException

    try:
        return call()
    except MlflowException as error:
        first = first_line(error)
        raise UserInputError(f"MLflow store {uri}: {first}") from None


# --- Weights & Biases ------------------------------------------------------------------------------
class Wandb(RunFolder, WandbLogger):
    """Weights & Biases; its local files in the run folder (`version_N/wandb/`). Without an account
    or network run it offline (`WANDB_MODE=offline` or `offline: true`), then `wandb sync` later.

    Args:
        name: the W&B project (and the run folder's experiment: `<save_dir>/<name>/version_N`).
        save_dir: where the run folders go.
        version: the run folder's N (or its whole name, as a sweep's trial_3); a folder that
            already holds a W&B run (wandb.json) continues it (a fit there must resume its newest
            checkpoint: `--ckpt_path last`).
        offline: log to local files only, whatever WANDB_MODE says.
        entity: the W&B user or team (default: yours).
        group, tags: W&B's run group and tags.
        log_model: also upload checkpoints as W&B artifacts (online only).
        prefix: put before every metric name.
    """

    def __init__(
        self,
        name: str = "lightning_logs",
        save_dir: str = DEFAULT_DIR,
        version: int | str | None = None,
        offline: bool = False,
        entity: str | None = None,
        group: str | None = None,
        tags: list[str] | None = None,
        log_model: bool = False,
        prefix: str = "",
    ) -> None:
        self._set_folder(save_dir, name, version)
        extra = {key: value for key, value in {"entity": entity, "group": group, "tags": tags}.items() if value}
        if offline:
            extra["mode"] = "offline"
        # W&B's own lines (in colour codes, even in a log file) repeat what the template prints: where
        # the run is and how to sync it. WANDB_SILENT=false brings them back.
        os.environ.setdefault("WANDB_SILENT", "true")
        super().__init__(project=name, log_model=log_model, prefix=prefix, **extra)
        self._wandb_init.pop("anonymous", None)  # deprecated in wandb: it only warns
        self._run_started = False

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """The wandb Run of this run folder: the stored one, else a new one."""
        if not self._run_started:
            folder = Path(self.log_dir)
            folder.mkdir(parents=True, exist_ok=True)
            record = tracker_record(folder, "wandb")
            # Absolute: W&B's service process, started by an earlier run, may have another working folder.
            self._wandb_init.update(dir=str(folder.resolve()), name=f"{self._folder_name}/{self.run_folder_name}")
            if record:
                self._wandb_init.update(id=record["id"], resume="allow")
            import wandb

            if wandb.run is not None:  # an earlier run of this process (a sweep, a test): it has ended
                wandb.run.finish()
            try:
                run = super().experiment
            except Exception as error:  # wandb raises its own types for a missing login or network
                first = first_line(error)
                raise UserInputError(
                    f"W&B could not start the run ({first}); log in with `wandb login`, or log offline: "
                    "WANDB_MODE=offline or --trainer.logger.init_args.offline true"
                ) from None
            self._run_started = True
            if not record:
                self._write_record("wandb", {"id": run.id, "project": run.project or self._folder_name})
        return super().experiment

    @property
    def save_dir(self) -> str:
        return self.log_dir

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace, metrics: Any = None) -> None:
        super().log_hyperparams(params)


def store_file(loggers: list[Any], path: Path) -> None:
    """Keep a file of the run (its config) with each tracker that stores files: an MLflow
    artifact, a W&B run file. TensorBoard and CSV read the run folder, where it already is."""
    for logger in loggers:
        if isinstance(logger, MLFlowLogger):
            logger.experiment.log_artifact(logger.run_id, str(path))
        elif isinstance(logger, WandbLogger):
            # Beside W&B's own config.yaml (the run's hyperparameters): files/lightning/<name>.
            run = logger.experiment
            copy = Path(run.dir) / "lightning" / path.name
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, copy)
            run.save(str(copy), base_path=run.dir, policy="now")


def describe_run(logger: Any) -> str:
    """One line: where this logger's run is and how to look at it."""
    if isinstance(logger, MLflow):
        uri = logger.tracking_uri
        where = f"MLflow run {logger.run_id} (experiment {logger.experiment_name}) in {uri}"
        return f"{where}  (mlflow ui --backend-store-uri {uri})"
    if isinstance(logger, WandbLogger):
        run = logger.experiment
        if getattr(run, "offline", False) or getattr(getattr(run, "settings", None), "mode", "") == "offline":
            return f"W&B offline run {run.id} in {run.dir}  (upload: wandb sync {Path(run.dir).parent})"
        return f"W&B run {run.id}: {getattr(run, 'url', '')}"
    if isinstance(logger, CSVLogger):
        return f"CSV logs: {logger.log_dir}/metrics.csv  (figures in {logger.log_dir}/figures)"
    if type(logger).__name__ == "TensorBoardLogger":
        return f"TensorBoard logs: {logger.log_dir}  (tensorboard --logdir {Path(logger.log_dir).parent.parent})"
    return f"{type(logger).__name__} logs"
