"""Supernets shared through Optuna's artifact store, so every worker scores with the same networks.

The process that trains a supernet uploads its checkpoint files (``config.json``, ``model.safetensors``)
to the study's artifact store (Optuna's file-system store: a directory every worker can read, such as
a shared mount) and records, in the study's user attribute ``supernet:<structure>``, each file's
artifact id, size and SHA-256 (one attribute per supernet, so two trainers never overwrite each
other's record). A worker in any directory or on any machine downloads them, checks each SHA-256 and
loads the checkpoint instead of training: one study's scores come from one set of weights.

Two processes never train the same supernet at once: the trainer holds a lock made with the storage's
own unique study names (creating the study ``<study>:supernet-lock:<structure>`` succeeds for one
process only). The holder beats every :data:`LOCK_BEAT_SECONDS`; a lock whose beat is older than
:data:`LOCK_STALE_SECONDS` (its holder died) is removed and taken by the next process. The others wait
for the record to appear.

The store's directory is recorded in the study (user attribute ``artifact_store``) by the ``study``
command; ``--artifact-store`` names it where it is mounted elsewhere.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import optuna
from optuna.artifacts import FileSystemArtifactStore, download_artifact, upload_artifact
from optuna.artifacts.exceptions import ArtifactNotFound

from sparsearch.errors import ConfigError, WriteError
from sparsearch.safe_io import atomic_dir, file_sha256, refuse_foreign
from sparsearch.study.storage import beating
from sparsearch.train.checkpoint import CONFIG_FILE, WEIGHTS_FILE, is_checkpoint

__all__ = [
    "LOCK_BEAT_SECONDS",
    "LOCK_STALE_SECONDS",
    "RECORD_PREFIX",
    "STORE_ATTR",
    "SharedSupernets",
    "WholeWrites",
    "store_dir",
]

STORE_ATTR = "artifact_store"  # study user attribute: the artifact store's directory (absolute)
RECORD_PREFIX = (
    "supernet:"  # + structure label: study user attribute {files: {name: {artifact_id, sha256, bytes}}, ...}
)
FILES = (CONFIG_FILE, WEIGHTS_FILE)
# The weights first: a disk that fills up fails there, before any file of the supernet is recorded
# (Optuna records each upload in the study once its file is whole).
UPLOAD_ORDER = (WEIGHTS_FILE, CONFIG_FILE)
LOCK_BEAT_SECONDS = 10.0
LOCK_STALE_SECONDS = 60.0
WAIT_POLL_SECONDS = 2.0


def store_dir(study: optuna.Study, given: str | Path | None, default: Path, *, record: bool = True) -> Path:
    """The store directory this process uses: ``given``, else the one the study records, else ``default``.

    With ``record`` (the ``study`` command) a study that records none records this one, so its workers
    find it; a worker records nothing: its ``given`` is the same store mounted at another path.
    """
    recorded = study.user_attrs.get(STORE_ATTR)
    if given is not None:
        path = Path(given).expanduser().absolute()
    elif isinstance(recorded, str) and recorded:
        path = Path(recorded)
    else:
        path = default.absolute()
    if record and not (isinstance(recorded, str) and recorded):
        study.set_user_attr(STORE_ATTR, str(path))
    return path


class SharedSupernets:
    """The study's supernets in its artifact store: fetch (download and verify), publish, and the training lock."""

    def __init__(self, study: optuna.Study, storage: Any, directory: Path, log: Callable[[str], None]) -> None:
        self.study, self.storage, self.directory, self.log = study, storage, Path(directory), log
        self._first_seen: dict[str, float] = {}  # locks seen without a beat yet, by name

    @functools.cached_property
    def store(self) -> WholeWrites:
        return WholeWrites(FileSystemArtifactStore(str(self.directory)))  # refuses ids that leave its directory

    def record(self, label: str) -> dict[str, Any] | None:
        """What the study records of the supernet ``label`` (re-read from the storage), or None."""
        fresh = optuna.load_study(study_name=self.study.study_name, storage=self.storage)
        entry = fresh.user_attrs.get(RECORD_PREFIX + label)
        if entry is None:
            return None
        files = entry.get("files") if isinstance(entry, dict) else None
        if not isinstance(files, dict) or not all(
            isinstance(files.get(name), dict)
            and isinstance(files[name].get("artifact_id"), str)
            and isinstance(files[name].get("sha256"), str)
            for name in FILES
        ):
            raise ConfigError(
                f"the study's record of supernet {label} (user attribute {RECORD_PREFIX}{label}) is damaged"
            )
        return entry

    def fetch(self, label: str, local: Path) -> bool:
        """Download the recorded checkpoint of ``label`` into ``local`` (replaced whole), each file checked
        against its SHA-256. False when the study records none."""
        entry = self.record(label)
        if entry is None:
            return False
        if is_checkpoint(local) and all(
            (local / name).is_file() and file_sha256(local / name) == entry["files"][name]["sha256"] for name in FILES
        ):
            return True  # already here, the same bytes
        refuse_foreign(local, is_checkpoint, "a sparsearch checkpoint")
        with atomic_dir(local, "supernet") as tmp:
            for name in FILES:
                meta = entry["files"][name]
                try:
                    download_artifact(
                        artifact_store=self.store, file_path=str(tmp / name), artifact_id=meta["artifact_id"]
                    )
                except Exception as err:  # the store raises its own errors (missing file, permissions ...)
                    raise ConfigError(
                        f"supernet {label}: cannot download {name} from the artifact store {self.directory} "
                        f"({type(err).__name__}: {err}); mount the study's store here or give --artifact-store DIR"
                    ) from None
                if file_sha256(tmp / name) != meta["sha256"]:
                    raise ConfigError(
                        f"supernet {label}: {name} in the artifact store {self.directory} does not match the "
                        f"SHA-256 the study recorded; the store is damaged or another study's"
                    )
        self.log(f"supernet {label} downloaded from the artifact store and verified (SHA-256)")
        return True

    def publish(self, label: str, local: Path, train_seconds: float) -> None:
        """Upload the checkpoint at ``local`` and record it (files, SHA-256, sizes) in the study."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(
                f"the study's artifact store {self.directory} cannot be used ({err.strerror or err}); "
                "mount it here or give --artifact-store DIR"
            ) from None
        files = {}
        for name in UPLOAD_ORDER:
            path = local / name
            try:
                artifact_id = upload_artifact(
                    artifact_store=self.store, file_path=str(path), study_or_trial=self.study, storage=self.storage
                )
            except OSError as err:  # a full disk: the partial file is gone (WholeWrites), nothing recorded
                raise WriteError(
                    f"supernet {label}: cannot upload {name} to the artifact store {self.directory} "
                    f"({err.strerror or err}); nothing was recorded"
                ) from None
            files[name] = {"artifact_id": artifact_id, "sha256": file_sha256(path), "bytes": path.stat().st_size}
        self.study.set_user_attr(
            RECORD_PREFIX + label, {"files": files, "train_seconds": train_seconds, "by": _holder()}
        )

    @contextlib.contextmanager
    def training_lock(self, label: str) -> Iterator[None]:
        """Held by one process at a time, across machines (the storage's unique study names)."""
        name = f"{self.study.study_name}:supernet-lock:{label}"
        waited = False
        while True:
            try:
                lock = optuna.create_study(study_name=name, storage=self.storage)
                break
            except optuna.exceptions.DuplicatedStudyError:
                if not waited:
                    self.log(f"supernet {label} is being trained by another process; waiting for it")
                    waited = True
                self._remove_if_stale(name)
                time.sleep(WAIT_POLL_SECONDS)
        lock.set_user_attr("holder", _holder())
        try:
            with beating(lambda: lock.set_user_attr("beat", time.time()), LOCK_BEAT_SECONDS, f"lock-{label}"):
                yield
        finally:
            with contextlib.suppress(KeyError):
                optuna.delete_study(study_name=name, storage=self.storage)

    def _remove_if_stale(self, name: str) -> None:
        try:
            lock = optuna.load_study(study_name=name, storage=self.storage)
        except KeyError:
            return
        beat = lock.user_attrs.get("beat")
        if not isinstance(beat, int | float):  # its holder may have died before its first beat
            beat = self._first_seen.setdefault(name, time.time())
        if time.time() - beat > LOCK_STALE_SECONDS:
            self.log(f"removing the stale lock {name} (holder {lock.user_attrs.get('holder')})")
            with contextlib.suppress(KeyError):
                optuna.delete_study(study_name=name, storage=self.storage)


class WholeWrites:
    """An artifact store whose writes are whole or absent: a write that fails (a full disk) removes what
    it wrote, so no artifact id ever names a partial file. Reads and removals pass through."""

    def __init__(self, store: FileSystemArtifactStore) -> None:
        self._store = store

    def open_reader(self, artifact_id: str) -> BinaryIO:
        return self._store.open_reader(artifact_id)

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        try:
            self._store.write(artifact_id, content_body)
        except BaseException:
            with contextlib.suppress(ArtifactNotFound, OSError):
                self._store.remove(artifact_id)
            raise

    def remove(self, artifact_id: str) -> None:
        self._store.remove(artifact_id)


def _holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"
