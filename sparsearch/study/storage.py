"""Where studies live: SQLite by default, any SQLAlchemy URL (PostgreSQL) for distributed studies.

Every storage is Optuna's :class:`~optuna.storages.RDBStorage` with heartbeats: a worker that dies
mid-trial stops beating, and after the grace period any worker marks its trial failed and queues a
copy (``RetryHeartbeatStaleTrialCallback``), so no trial is lost and none runs twice at once.

SQLite runs in WAL mode with a generous busy timeout, so local worker processes wait for each other's
short writes instead of failing with "database is locked".

Passwords never leave this module: :func:`redact` is used for every URL that is printed or stored.
"""

from __future__ import annotations

import contextlib
import re
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

from sparsearch.errors import ConfigError, SparsearchError

__all__ = [
    "HEARTBEAT_SECONDS",
    "StorageError",
    "default_storage_url",
    "heartbeat",
    "open_storage",
    "pop_waiting_trial",
    "redact",
]

HEARTBEAT_SECONDS = 10  # a running trial records a heartbeat this often
GRACE_FACTOR = 3  # ... and is stale after this many missed beats
SQLITE_TIMEOUT_S = 60  # how long a writer waits for another process's lock
MAX_RETRY = 3  # a trial whose worker died is re-run at most this many times


class StorageError(SparsearchError):
    """The storage cannot be opened or reached."""


def redact(url: str) -> str:
    """``postgresql://user:***@host/db``: the URL with any password masked."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def default_storage_url(study_name: str, directory: str | Path = "studies") -> str:
    """``sqlite:///studies/<name>.db`` (the directory is created when the storage is opened)."""
    return f"sqlite:///{Path(directory) / study_name}.db"


def open_storage(url: str, heartbeat_s: int = HEARTBEAT_SECONDS) -> RDBStorage:
    """An RDB storage with heartbeats and retry of stale trials; errors name the URL without password."""
    if "://" not in url:
        raise ConfigError(f"storage {url!r} is not a URL; e.g. sqlite:///studies/s.db or postgresql://user@host/db")
    engine_kwargs: dict = {}
    if url.startswith("sqlite"):
        engine_kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    else:
        engine_kwargs = {"pool_pre_ping": True}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats: stable since 2.8
            storage = RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat_s,
                grace_period=heartbeat_s * GRACE_FACTOR,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY),
            )
    except Exception as err:  # SQLAlchemy errors, a missing driver, a refused connection
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise StorageError(f"storage {redact(url)}: cannot connect ({redact(reason)})") from None
    if url.startswith("sqlite"):
        with contextlib.closing(storage.engine.raw_connection()) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
    return storage


def pop_waiting_trial(study: optuna.Study) -> int | None:
    """Claim a queued (WAITING) trial for this worker; None when the queue is empty.

    Unlike ``study.ask()``, this never creates a trial: a study runs exactly the trials queued for it.
    The claim is the storage's atomic WAITING -> RUNNING update, so two workers never get the same trial.
    """
    return study._pop_waiting_trial_id()  # Optuna's own claim (the part of ask() that takes a queued trial)


@contextlib.contextmanager
def heartbeat(storage: RDBStorage, trial_id: int, interval_s: float) -> Iterator[None]:
    """Record a heartbeat for ``trial_id`` every ``interval_s`` seconds while the block runs."""
    stop = threading.Event()

    def beat() -> None:
        while True:
            with contextlib.suppress(Exception):  # a missed beat is retried at the next interval
                storage.record_heartbeat(trial_id)
            if stop.wait(interval_s):
                return

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
