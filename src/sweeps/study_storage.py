"""Where a study lives: an Optuna database (SQLite or a server) that every worker of a study shares."""

import importlib.util
import itertools
import re
import time
from pathlib import Path
from typing import Any

import optuna

from src.errors import UserInputError, first_line
from src.sweeps.experimental import experimental_optuna

HEARTBEAT_S = 60  # how often a running trial says its worker is alive
GRACE_PERIOD_S = 180  # a trial silent this long belongs to a worker that died (kill -9, a lost machine)
# The user attribute of a trial that runs again the values of trial N (stopped, or its worker died).
RERUN_OF = "rerun_of"
# The user attribute holding a trial's resolved config (its run's config.yaml): best.yaml is written from it
# by whichever worker reports, on any machine.
CONFIG_ATTR = "config"


class RerunTrialsOfDeadWorkers(optuna.storages.RetryHeartbeatStaleTrialCallback):
    """Optuna's retry of a trial whose worker died (failed by the heartbeat when the next trial of any
    worker starts): its values run again as a new trial, noted `rerun of trial N`."""

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        trial.set_user_attr(RERUN_OF, trial.number)  # on this copy only: the new trial takes its attributes
        super().__call__(study, trial)


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """Optuna's database storage for `url` (sqlite:///file.db, postgresql://user@host:port/db, ...).

    Workers on other machines share a study through it; a heartbeat marks the trials of a worker
    that died as failed, and their values run again (`RerunTrialsOfDeadWorkers`). SQLite waits up to
    a minute for a lock held by another worker.
    """
    engine_kwargs: dict[str, Any] = {}
    shown = without_password(url)
    url = postgres_driver(url)
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs["connect_args"] = {"timeout": 60}
    else:
        engine_kwargs["pool_pre_ping"] = True
    last_error: Exception | None = None
    for _ in range(10):  # workers creating the same new database at once collide on its tables
        try:
            with experimental_optuna():  # heartbeat_interval and grace_period
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=HEARTBEAT_S,
                    grace_period=GRACE_PERIOD_S,
                    heartbeat_stale_trial_callback=RerunTrialsOfDeadWorkers(max_retry=2),
                )
        except ImportError as error:
            hint = "; pip install psycopg2-binary" if url.startswith("postgres") else ""
            raise UserInputError(
                f"--sweep.storage {shown}: its database driver is not installed ({error.__cause__ or error}{hint})"
            ) from None
        except Exception as error:  # sqlalchemy's errors: bad URL, refused connection, wrong password
            last_error = error
            if not any(text in str(error) for text in ("already exists", "locked", "UNIQUE", "duplicate key")):
                break
            time.sleep(0.5)
    reason = first_line(last_error) if last_error else "unknown error"
    raise UserInputError(f"cannot open --sweep.storage {shown}: {reason}")


def without_password(url: str) -> str:
    """The URL to print: `postgresql://user:***@host/db`, never the password."""
    return re.sub(r"://([^:/@]+):[^@/]*@", r"://\1:***@", url)


def postgres_driver(url: str) -> str:
    """SQLAlchemy 2.1 reads postgresql:// as psycopg 3; with only psycopg2 installed, use that."""
    if not url.startswith(("postgresql://", "postgres://")) or importlib.util.find_spec("psycopg"):
        return url
    if importlib.util.find_spec("psycopg2"):
        return "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


def next_study_name(storage: optuna.storages.BaseStorage, parent: Path) -> str:
    """study_0, study_1, ...: the first name this storage does not hold yet and that has no folder of
    trial runs in `parent` (left by a study whose storage is gone)."""
    taken = {study.study_name for study in storage.get_all_studies()}
    return next(
        f"study_{k}" for k in itertools.count() if f"study_{k}" not in taken and not (parent / f"study_{k}").exists()
    )


def check_trial_folders_free(storage: optuna.storages.BaseStorage, name: str, folder: Path) -> None:
    """A study with no trial in `storage` (new to it, or never run) must not write its trials into
    another study's trial folders; checked before the study is created, so a refusal adds nothing."""
    known = {study.study_name for study in storage.get_all_studies()}
    if name in known and storage.get_n_trials(storage.get_study_id_from_name(name)) > 0:
        return
    if folder.is_dir() and any(folder.glob("trial_*")):
        raise UserInputError(
            f"{folder} holds the trial runs of a study that {name!r} in this storage is not (was its "
            "storage deleted or changed?): give another --sweep.study_name, or move that folder away"
        )


def open_study(
    storage: optuna.storages.BaseStorage,
    name: str | None,
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
    metric: str,
    direction: str,
    parent: Path,
) -> tuple[optuna.Study, bool]:
    """The study `name` in `storage`, and whether this command created it; joining one that optimises
    the other way is refused. Without a name, a new study named by `next_study_name`: created only if
    no other command took that name first (sweeps started side by side each get their own study)."""
    created = True
    if name is None:
        while True:
            try:
                study = optuna.create_study(
                    storage=storage,
                    sampler=sampler,
                    pruner=pruner,
                    study_name=next_study_name(storage, parent),
                    direction=direction,
                )
                break
            except optuna.exceptions.DuplicatedStudyError:  # taken since the name was picked: the next one
                continue
    else:
        check_trial_folders_free(storage, name, parent / name)
        try:
            study = optuna.create_study(
                storage=storage, sampler=sampler, pruner=pruner, study_name=name, direction=direction
            )
        except optuna.exceptions.DuplicatedStudyError:  # another command's study: join it
            study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
            created = False
    if (kept := study.direction.name.lower()) != direction:
        raise UserInputError(f"study {study.study_name} {kept}s; this config's {metric} needs to {direction}")
    return study, created
