"""Where studies live: SQLite by default, any SQLAlchemy URL (PostgreSQL) for distributed studies.

Every storage is Optuna's :class:`~optuna.storages.RDBStorage` with heartbeats: a worker that dies
mid-trial stops beating, and after the grace period any worker marks its trial failed and queues a
copy (``RetryHeartbeatStaleTrialCallback``), so no trial is lost and none runs twice at once.

SQLite runs in WAL mode with a generous busy timeout, and every transaction takes the write lock when it
begins, so local worker processes wait for each other's short transactions instead of failing with
"database is locked", and a queued trial is claimed by one of them only.

Passwords never leave this module: :func:`redact` is used for every URL that is printed or stored.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sqlite3
import threading
import time
import urllib.parse
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from sparsearch.errors import ConfigError, SparsearchError
from sparsearch.limits import MAX

__all__ = [
    "HEARTBEAT_SECONDS",
    "MAX_RETRY",
    "OUTAGE_LIMIT_S",
    "Outage",
    "StorageError",
    "beating",
    "check_run_limits",
    "check_study_name",
    "check_url",
    "claim_waiting_trial",
    "creating",
    "default_storage_url",
    "failure_reason",
    "heartbeat",
    "open_storage",
    "optuna_logging",
    "read_only_sqlite",
    "redact",
    "require_study",
    "setup_lock",
    "sqlite_file",
    "storage_failure",
]

HEARTBEAT_SECONDS = 10  # a running trial records a heartbeat this often
GRACE_FACTOR = 3  # ... and is stale after this many missed beats
SQLITE_TIMEOUT_S = 60  # how long a writer waits for another process's lock
MAX_RETRY = 3  # a trial whose worker died is re-run at most this many times
OUTAGE_LIMIT_S = 600  # a worker waits this long for a storage that stopped answering, then gives up
LOCK_KEY = 0x5350_4152  # PostgreSQL advisory lock of sparsearch's set-up ("SPAR")


class StorageError(SparsearchError):
    """The storage cannot be opened or reached."""


_SECRET_KEYS = {"password", "sslpassword", "passwd", "pwd", "passfile", "sslkey", "sslcert"}
_KEY_VALUE = re.compile(r"(?i)\b(password|sslpassword|passwd|pwd)\s*=\s*('(?:[^'\\]|\\.)*'|[^\s&]+)")


def redact(url: str) -> str:
    """The URL with every password masked: the user-info part (``user:***@host``, even when the
    password holds a raw ``@`` or ``/``), password-like query parameters (``?password=***``), and
    ``password=...`` pairs of a libpq key-value string."""
    text = _KEY_VALUE.sub(lambda m: f"{m.group(1)}=***", str(url))
    scheme, sep, rest = text.partition("://")
    if not sep:
        return text
    query = ""
    if "?" in rest:
        rest, _, query = rest.partition("?")
    if "@" in rest:  # user-info ends at the last '@' before the host (a raw '@' may be in the password)
        userinfo, _, hostpart = rest.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        rest = f"{user}:***@{hostpart}" if colon else f"{userinfo}@{hostpart}"
    if query:
        pairs = []
        for pair in query.split("&"):
            key, eq, _ = pair.partition("=")
            pairs.append(f"{key}=***" if eq and key.lower() in _SECRET_KEYS else pair)
        rest += "?" + "&".join(pairs)
    return f"{scheme}://{rest}"


def _secrets(url: str) -> list[str]:
    """The password of ``url`` and the pieces a driver may show of it (split at a raw ``@``), longest first."""
    rest, _, query = url.partition("://")[2].partition("?")
    userinfo = rest.rpartition("@")[0]
    password = userinfo.partition(":")[2]
    pieces = {password, *password.split("@"), *userinfo.split("@")[1:]} if password else set()
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        if key.lower() in _SECRET_KEYS:
            pieces.add(value)
    return sorted((p for p in pieces if len(p) >= 2), key=len, reverse=True)


def redact_message(message: str, url: str) -> str:
    """A driver's message about ``url`` with the URL's password masked wherever it appears, whole or in
    pieces (a driver that split a raw ``@`` names the password's tail as part of the host)."""
    text = redact(message)
    for secret in _secrets(url):
        text = text.replace(secret, "***")
    return text


def default_storage_url(study_name: str, directory: str | Path = "studies") -> str:
    """``sqlite:///studies/<name>.db`` (the directory is created when the storage is opened)."""
    check_study_name(study_name)
    return f"sqlite:///{Path(directory) / study_name}.db"


STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def check_study_name(name: str) -> str:
    """A study name is an identifier, never a path: 1-100 of ``A-Z a-z 0-9 . _ -``, starting with a letter
    or digit, without ``..``. It names the database and the directory under ``studies/``."""
    if not isinstance(name, str) or not STUDY_NAME.fullmatch(name) or ".." in name:
        shown = repr(name[:60] + "..." if isinstance(name, str) and len(name) > 60 else name)
        raise ConfigError(
            f"study name {shown}: use 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit "
            "(no '..', no '/': a name, not a path)"
        )
    return name


def check_run_limits(timeout: float | None, heartbeat_s: int) -> None:
    """Refuse a non-positive ``--timeout`` or ``--heartbeat`` before anything starts."""
    if timeout is not None and not (isinstance(timeout, int | float) and 0 < timeout <= MAX["timeout"]):
        raise ConfigError(f"--timeout {timeout}: give a positive number of seconds, at most {MAX['timeout']:,}")
    if isinstance(heartbeat_s, bool) or not isinstance(heartbeat_s, int) or not 1 <= heartbeat_s <= MAX["heartbeat"]:
        raise ConfigError(f"--heartbeat {heartbeat_s}: give a positive number of seconds, at most {MAX['heartbeat']:,}")


def open_storage(url: str, heartbeat_s: int = HEARTBEAT_SECONDS, *, read_only: bool = False) -> RDBStorage:
    """An RDB storage with heartbeats and retry of stale trials; errors name the URL without password.

    ``read_only``: for commands that only read a study that exists. A SQLite file is then neither created
    nor switched to WAL, every connection refuses writes (``PRAGMA query_only``), and, once the caller
    disposes of the engine, the file and its directory are byte- and name-identical to before (see
    :func:`read_only_sqlite`)."""
    check_url(url)
    engine_kwargs: dict = {}
    database = sqlite_file(url)
    if read_only and database is not None:
        engine_kwargs = {"creator": read_only_sqlite(database), "poolclass": _null_pool()}
    elif url.startswith("sqlite"):
        engine_kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
        if database is not None:
            _make_directory(url, database.parent)
    else:
        engine_kwargs = {"pool_pre_ping": True}
    try:
        with setup_lock(url), warnings.catch_warnings():  # one process at a time creates the tables
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats: stable since 2.8
            storage = RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat_s,
                grace_period=heartbeat_s * GRACE_FACTOR,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY),
            )
    except Exception as err:  # SQLAlchemy errors, a missing driver, a refused connection
        raise _cannot_connect(url, err) from None
    if database is not None and not read_only:  # a file that other processes may share
        _serialise_sqlite(storage.engine)
        with contextlib.closing(storage.engine.raw_connection()) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
    return storage


def check_url(url: str) -> None:
    """Refuse what is not a storage URL before anything tries to connect."""
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError(
            f"storage {redact(url)!r} is not a URL; e.g. sqlite:///studies/s.db or postgresql://user@host/db"
        )


def require_study(url: str, name: str) -> None:
    """Refuse, before anything is created or changed, a storage that does not hold study ``name``:
    commands that only read (report, worker, validate) never create tables in another application's
    database, or switch its journal mode. SQLite is opened read-only for the check."""
    import sqlalchemy

    check_url(url)
    database = sqlite_file(url)
    if database is not None:
        if not database.is_file():
            raise ConfigError(f"no study named {name!r} in {redact(url)} ({database} does not exist)")
        engine_kwargs: dict = {"creator": read_only_sqlite(database)}
    elif url.startswith("sqlite"):
        raise ConfigError(f"no study named {name!r} in {redact(url)} (an in-memory database starts empty)")
    else:
        engine_kwargs = {}
    try:
        engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool, **engine_kwargs)
        with engine.connect() as conn:
            if not sqlalchemy.inspect(conn).has_table("studies"):
                raise ConfigError(f"no study named {name!r} in {redact(url)} (it holds no Optuna study at all)")
            found = conn.execute(
                sqlalchemy.text("SELECT 1 FROM studies WHERE study_name = :name"), {"name": name}
            ).first()
        engine.dispose()
    except ConfigError:
        raise
    except Exception as err:  # not a database, a refused connection
        raise _cannot_connect(url, err) from None
    if found is None:
        raise ConfigError(f"no study named {name!r} in {redact(url)}")


def read_only_sqlite(database: Path) -> Callable[[], sqlite3.Connection]:
    """A connection factory for reading ``database`` and changing nothing, sidecars included.

    SQLite's own read-only open (``mode=ro``) cannot be used: on a WAL-mode file it creates the ``-wal``
    and ``-shm`` sidecars and, being unable to write, cannot remove them when it closes. These connections
    are opened read-write on a file that must exist (``mode=rw``: never created) with ``query_only`` on,
    so no statement writes; the last one to close removes the sidecars it made, as any writer would.
    A file the user may not write is still opened (read only) by SQLite.
    """
    uri = f"file:{urllib.parse.quote(str(database.resolve()))}?mode=rw"

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(uri, uri=True, timeout=SQLITE_TIMEOUT_S, check_same_thread=False)
        conn.execute("PRAGMA query_only = ON")
        return conn

    return connect


def _null_pool():
    import sqlalchemy

    return sqlalchemy.pool.NullPool


def _serialise_sqlite(engine) -> None:
    """Make every SQLite transaction take the write lock when it begins (``BEGIN IMMEDIATE``).

    Python's sqlite3 driver opens a transaction only at the first write, so Optuna's read-check-write
    updates (claiming a queued trial, failing a stale one) are not atomic between processes: two
    workers could both read a trial as WAITING and both run it. With the lock taken at BEGIN, the
    second waits (up to ``SQLITE_TIMEOUT_S``) and then reads the first one's claim.
    """
    import sqlalchemy

    @sqlalchemy.event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection, record) -> None:
        dbapi_connection.isolation_level = None  # the driver issues no BEGIN of its own

    @sqlalchemy.event.listens_for(engine, "begin")
    def _begin_immediate(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections opened before the listeners: closed, reopened with them


def sqlite_file(url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL; None for other URLs and in-memory databases."""
    if not url.startswith("sqlite:///"):
        return None
    path = url.split(":///", 1)[1]
    return Path(path) if path and path != ":memory:" else None


def _make_directory(url: str, directory: Path) -> Path:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StorageError(f"storage {redact(url)}: cannot create {directory} ({err.strerror})") from None
    return directory


def storage_failure(err: BaseException) -> str | None:
    """The one line for a storage that failed under a running command (a full disk, the file-size limit,
    a server that went away), or None when ``err`` is not one: Optuna's ``StorageInternalError`` or a
    database driver's error, found along the exception's causes. The driver's own first line is kept, any
    password in it masked."""
    reason = failure_reason(err)
    if reason is None:
        return None
    return (
        f"the study's storage failed ({reason}); what it had committed is kept: "
        "run the same command again to resume once the storage is back"
    )


def failure_reason(err: BaseException) -> str | None:
    """The storage's own first line for ``err`` (password masked), or None when ``err`` is not a storage
    failure (see :func:`storage_failure`)."""
    import sqlalchemy.exc

    seen = err
    found = None
    while seen is not None and found is None:
        if isinstance(seen, sqlalchemy.exc.DBAPIError | optuna.exceptions.StorageInternalError):
            found = seen
        seen = seen.__cause__ or seen.__context__
    if found is None:
        return None
    driver = getattr(found, "orig", None) or found.__cause__ or found
    reason = str(driver).strip().splitlines()[0] if str(driver).strip() else type(driver).__name__
    return redact(reason)


def _cannot_connect(url: str, err: Exception) -> StorageError:
    reason = str(err).splitlines()[0] if str(err) else type(err).__name__
    return StorageError(f"storage {redact(url)}: cannot connect ({redact_message(reason, url)})")


_held = threading.local()  # the URLs whose set-up lock this thread holds (the lock is re-entrant)


@contextlib.contextmanager
def setup_lock(url: str) -> Iterator[None]:
    """Hold the storage's set-up lock: processes that start together create its tables, a study and the
    study's queued trials one after another, so identical commands started at once share one study of
    exactly the trials asked for, and a process opening the storage meanwhile waits for its tables.
    SQLite: ``flock`` on the database's directory; PostgreSQL: an advisory lock; other databases: none.
    Re-entrant within a thread.
    """
    held = _held.__dict__.setdefault("urls", set())
    if url in held:
        yield
        return
    with _acquire(url):
        held.add(url)
        try:
            yield
        finally:
            held.discard(url)


@contextlib.contextmanager
def creating(url: str) -> Iterator[None]:
    """Hold the set-up lock while a study is created or resumed, all or nothing: when the block fails
    (an I/O error, a full disk, the file-size limit, a signal) and the SQLite file did not exist before,
    the file, its sidecars (``-wal``, ``-shm``, ``-journal``) and the directories made for it are removed,
    so no half-made database is left for the next run or another tool to find."""
    database = sqlite_file(url)
    if database is None:
        with setup_lock(url):
            yield
        return
    made = [d for d in (database.parent, *database.parent.parents) if not d.exists()]
    with setup_lock(url):
        existed = database.exists()
        try:
            yield
        except BaseException:
            if not existed:
                _remove_database(database)
                for directory in made:  # innermost first; only where nothing else was put
                    with contextlib.suppress(OSError):
                        directory.rmdir()
            raise


def _remove_database(database: Path) -> None:
    import gc

    gc.collect()  # a failed RDBStorage's engine: its connections closed before the file goes
    for path in (database, *(database.with_name(database.name + s) for s in ("-wal", "-shm", "-journal"))):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def _acquire(url: str) -> Iterator[None]:
    database = sqlite_file(url)
    if database is not None:
        directory = _make_directory(url, database.parent)
        import fcntl

        fd = os.open(directory, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # released when the descriptor closes
            yield
        finally:
            os.close(fd)
        return
    if not url.startswith("postgresql"):
        yield
        return
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
        conn = engine.connect()
    except Exception as err:
        raise _cannot_connect(url, err) from None
    try:
        conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": LOCK_KEY})
        yield
    finally:
        conn.close()  # the session ends, and its advisory lock with it
        engine.dispose()


def claim_waiting_trial(storage: RDBStorage, study_id: int) -> int | None:
    """Claim a queued (WAITING) trial of study ``study_id`` for this worker: its trial id, or None when
    the queue is empty.

    Unlike ``study.ask()``, this never creates a trial: a study runs exactly the trials queued for it.
    The claim is the storage's WAITING -> RUNNING update (public ``set_trial_state_values``), which
    returns False for every worker but the one that made it (SQLite transactions begin IMMEDIATE;
    PostgreSQL locks the row), so two workers never get the same trial.
    """
    for trial in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        # Beat before the claim: a worker killed between its claim and its heartbeat thread's first beat
        # would leave a RUNNING trial that Optuna never finds stale (it has no heartbeat), and the study
        # would wait for it for ever. Beating first, the claimed trial is stale a grace period after death.
        with contextlib.suppress(optuna.exceptions.StorageInternalError):  # a peer's beat at the same time
            storage.record_heartbeat(trial_id)
        try:
            if storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                return trial_id
        except optuna.exceptions.UpdateFinishedTrialError:  # another worker claimed and finished it
            continue
    return None


class Outage:
    """Bounded exponential back-off while the storage is unreachable (a server restarting, a network
    cut): :meth:`wait` says so in one line the first time, sleeps 1, 2, 4 ... up to ``cap_s`` seconds between
    attempts, and gives up (raising the storage's error) once ``limit_s`` seconds have passed without
    the storage answering; :meth:`over` says how long it lasted, once it answers again."""

    def __init__(self, log: Callable[[str], None] | None, limit_s: float = OUTAGE_LIMIT_S, cap_s: float = 30.0) -> None:
        self.log, self.limit_s, self.cap_s = log or (lambda line: None), limit_s, cap_s
        self.since: float | None = None
        self.attempts = 0

    def wait(self, err: BaseException) -> None:
        now = time.monotonic()
        if self.since is None:
            self.since, self.attempts = now, 0
            self.log(
                f"the study's storage does not answer ({failure_reason(err)}); retrying with back-off "
                f"(1 s doubling up to {self.cap_s:g} s) for at most {self.limit_s:g} s"
            )
        if now - self.since > self.limit_s:
            raise err
        delay = min(self.cap_s, 2.0**self.attempts, max(0.0, self.since + self.limit_s - now) + 0.01)
        self.attempts += 1
        time.sleep(delay)

    def over(self) -> None:
        if self.since is not None:
            self.log(f"the study's storage answers again after {time.monotonic() - self.since:.0f} s")
            self.since = None


class _FirstLine(logging.Filter):
    """Optuna's warnings on one line: a database error it falls back from (a server restarting) is logged
    with the statement and its parameters, some ten lines; the first says what happened."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage().strip()
        record.msg, record.args = redact(text.splitlines()[0] if text else text), None
        return True


def optuna_logging() -> None:
    """Optuna's own messages: warnings and errors only, each on one line of stderr (once per process)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    library = logging.getLogger("optuna")
    if any(isinstance(f, _FirstLine) for h in library.handlers for f in h.filters):
        return
    optuna.logging.disable_default_handler()
    handler = logging.StreamHandler()  # stderr, as Optuna's own handler
    handler.setFormatter(logging.Formatter("[%(levelname).1s %(asctime)s] %(message)s"))
    handler.addFilter(_FirstLine())
    library.addHandler(handler)


def heartbeat(storage: RDBStorage, trial_id: int, interval_s: float) -> contextlib.AbstractContextManager[None]:
    """Record a heartbeat for ``trial_id`` every ``interval_s`` seconds while the block runs."""
    return beating(lambda: storage.record_heartbeat(trial_id), interval_s, f"heartbeat-{trial_id}")


@contextlib.contextmanager
def beating(beat: Callable[[], object], interval_s: float, name: str) -> Iterator[None]:
    """Call ``beat`` now and every ``interval_s`` seconds, in a thread, while the block runs."""
    stop = threading.Event()

    def loop() -> None:
        while True:
            with contextlib.suppress(Exception):  # a missed beat is retried at the next interval
                beat()
            if stop.wait(interval_s):
                return

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
