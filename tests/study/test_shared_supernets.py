"""Supernets shared through Optuna's artifact store: a worker in another directory downloads and verifies
the study's supernet instead of training one, and scores a queued trial exactly as the study did;
a damaged store is refused; one process at a time trains a supernet."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from sparsearch.errors import ConfigError, WriteError
from sparsearch.study import artifacts as shared_module
from sparsearch.study import open_study, run_study, run_worker
from sparsearch.study.artifacts import RECORD_PREFIX, STORE_ATTR, SharedSupernets
from sparsearch.study.supernet import Supernet
from tests.study.helpers import tiny_settings
from tests.study.test_study import _budget

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("shared")
    url = f"sqlite:///{root}/s.db"
    settings = tiny_settings(_budget(), trials=4)
    run = run_study(settings, storage_url=url, name="tiny", device="cpu", artifacts=root / "tiny")
    return run, url, root


def _the_record(run) -> str:
    """The key of the one supernet the study trained (tests below add copies of its record, suffixed)."""
    (key,) = [k for k in run.study.user_attrs if k.startswith(RECORD_PREFIX) and not k.endswith(COPY)]
    return key


COPY = "-copy"


def _no_training(*args, **kwargs):
    raise AssertionError("a supernet was trained")


def _queue_a_copy_of_a_scored_trial(run) -> optuna.trial.FrozenTrial:
    scored = next(t for t in run.study.get_trials() if t.user_attrs["feasible"])
    run.study.enqueue_trial(scored.params, skip_if_exists=False)
    return scored


def test_the_study_records_its_store_and_each_supernet_file_with_its_sha256(study) -> None:
    run, url, root = study
    assert run.study.user_attrs[STORE_ATTR] == str((root / "tiny" / "store").absolute())
    key = _the_record(run)
    label = key.removeprefix(RECORD_PREFIX)
    local = root / "tiny" / "supernets" / label.replace(",", "_").replace("=", "-")
    files = run.study.user_attrs[key]["files"]
    for name, meta in files.items():
        data = (local / name).read_bytes()
        assert meta["sha256"] == hashlib.sha256(data).hexdigest() and meta["bytes"] == len(data)
        assert (root / "tiny" / "store" / meta["artifact_id"]).read_bytes() == data
    assert not [n for n in optuna.get_all_study_names(url) if "lock" in n]  # locks are released


def test_a_worker_in_a_fresh_directory_scores_a_queued_trial_exactly_and_trains_nothing(
    study, tmp_path, monkeypatch
) -> None:
    run, url, _ = study
    scored = _queue_a_copy_of_a_scored_trial(run)
    monkeypatch.chdir(tmp_path)  # another directory: no studies/ here
    monkeypatch.setattr(Supernet, "train", _no_training)
    said: list[str] = []
    assert run_worker(url, "tiny", device="cpu", log=said.append) == 1
    copy = run.study.get_trials(states=(TrialState.COMPLETE,))[-1]
    assert copy.number > scored.number and copy.params == scored.params
    assert copy.values == scored.values  # the same weights, the same score
    assert copy.user_attrs["usage"] == scored.user_attrs["usage"]
    assert any("downloaded from the artifact store and verified" in line for line in said)
    assert not any("training" in line for line in said)
    assert list((tmp_path / "studies" / "tiny" / "supernets").iterdir())  # kept here for the next trial


def test_a_damaged_store_is_refused_by_its_sha256(study, tmp_path, monkeypatch) -> None:
    run, url, root = study
    key = _the_record(run)
    label = key.removeprefix(RECORD_PREFIX)
    meta = run.study.user_attrs[key]["files"]["model.safetensors"]
    store = tmp_path / "copy-of-the-store"
    store.mkdir()
    for item in (root / "tiny" / "store").iterdir():
        (store / item.name).write_bytes(item.read_bytes())
    damaged = bytearray((store / meta["artifact_id"]).read_bytes())
    damaged[-1] ^= 0xFF
    (store / meta["artifact_id"]).write_bytes(bytes(damaged))
    opened = open_study(url, "tiny", None)
    shared = SharedSupernets(opened.study, opened.storage, store, lambda line: None)
    with pytest.raises(ConfigError, match="does not match the SHA-256 the study recorded"):
        shared.fetch(label, tmp_path / "here")
    assert not (tmp_path / "here").exists()  # nothing half-written
    missing = SharedSupernets(opened.study, opened.storage, tmp_path / "empty", lambda line: None)
    with pytest.raises(ConfigError, match=r"cannot download config\.json from the artifact store"):
        missing.fetch(label, tmp_path / "here")


def test_a_damaged_record_is_one_line(tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    study = optuna.create_study(study_name="s", storage=url)
    shared = SharedSupernets(study, optuna.storages.get_storage(url), tmp_path / "store", lambda line: None)
    for damaged in ("text", {"files": {"config.json": {"artifact_id": 1}}}, {"files": []}):
        study.set_user_attr(RECORD_PREFIX + "routing=softmax", damaged)
        with pytest.raises(ConfigError, match=r"record of supernet routing=softmax .* is damaged"):
            shared.fetch("routing=softmax", tmp_path / "here")
    assert not (tmp_path / "here").exists() and not (tmp_path / "store").exists()


def test_one_process_at_a_time_holds_a_supernets_training_lock(tmp_path, monkeypatch) -> None:
    url = f"sqlite:///{tmp_path}/locks.db"
    study = optuna.create_study(study_name="s", storage=url)
    monkeypatch.setattr(shared_module, "WAIT_POLL_SECONDS", 0.05)
    holders: list[str] = []
    inside = threading.Lock()

    def train(who: str) -> None:
        shared = SharedSupernets(study, optuna.storages.get_storage(url), tmp_path / "store", lambda line: None)
        with shared.training_lock("routing=softmax"):
            assert inside.acquire(blocking=False), "two holders at once"
            holders.append(who)
            time.sleep(0.3)
            inside.release()

    threads = [threading.Thread(target=train, args=(f"w{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(holders) == ["w0", "w1", "w2"]

    # A lock whose holder died (no beat for LOCK_STALE_SECONDS) is removed by the next process.
    dead = optuna.create_study(study_name="s:supernet-lock:routing=softmax", storage=url)
    dead.set_user_attr("beat", time.time() - shared_module.LOCK_STALE_SECONDS - 1)
    said: list[str] = []
    shared = SharedSupernets(study, optuna.storages.get_storage(url), tmp_path / "store", said.append)
    with shared.training_lock("routing=softmax"):
        pass
    assert any("removing the stale lock" in line for line in said)
    assert optuna.get_all_study_names(url) == ["s"]


def test_a_record_pointing_outside_the_store_is_refused(study, tmp_path) -> None:
    run, url, root = study
    key = _the_record(run)
    label = key.removeprefix(RECORD_PREFIX)
    secret = tmp_path / "secret"
    secret.write_text("not yours")
    opened = open_study(url, "tiny", None)
    record = opened.study.user_attrs[key]
    for outside in ("../../secret", str(secret), "../" * 20 + str(secret).lstrip("/")):
        record["files"]["config.json"]["artifact_id"] = outside
        opened.study.set_user_attr(key + COPY, record)
        shared = SharedSupernets(opened.study, opened.storage, root / "tiny" / "store", lambda line: None)
        with pytest.raises(ConfigError, match=r"cannot download config\.json from the artifact store"):
            shared.fetch(label + COPY, tmp_path / "here")
        assert not (tmp_path / "here").exists()


FULL_STORE = """
import resource, sys
from pathlib import Path
from sparsearch.errors import WriteError
from sparsearch.study import open_study
from sparsearch.study.artifacts import SharedSupernets
url, store, label, local = sys.argv[1:]
half = (Path(local) / "model.safetensors").stat().st_size // 2
opened = open_study(url, "tiny", None)
shared = SharedSupernets(opened.study, opened.storage, Path(store), lambda line: None)
resource.setrlimit(resource.RLIMIT_FSIZE, (half, half))  # no file may grow past half the weights from here
try:
    shared.publish(label, Path(local), 1.0)
except WriteError as err:
    sys.exit(f"error: {err}")
"""


def _tmpfs(directory: Path) -> bool:
    """Mount a real 256 KiB file system (tmpfs) at ``directory``, filled but for 8 KiB; False where not allowed."""
    directory.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(directory)], capture_output=True)
    if done.returncode != 0:
        return False
    (directory / "filler").write_bytes(b"\0" * (256 * 1024 - 8 * 1024))
    return True


@pytest.mark.parametrize("limit", ["a full tmpfs", "the file-size limit"])
def test_an_upload_to_a_full_store_fails_whole_and_records_nothing(study, tmp_path, limit: str) -> None:
    """The store's disk refuses the weights partway: on a real 256 KiB tmpfs filled but for 8 KiB (where
    this machine lets the test mount one, as root), and under the operating system's file-size limit
    (RLIMIT_FSIZE, which any process may lower), in a process of its own."""
    run, url, root = study
    label = _the_record(run).removeprefix(RECORD_PREFIX)
    local = root / "tiny" / "supernets" / label.replace(",", "_").replace("=", "-")
    opened = open_study(url, "tiny", None)
    study_id = opened.storage.get_study_id_from_name("tiny")
    before = opened.storage.get_study_user_attrs(study_id), opened.storage.get_study_system_attrs(study_id)
    disk = tmp_path / "disk"
    if limit == "a full tmpfs":
        if not _tmpfs(disk):
            pytest.skip("cannot mount a tmpfs here (needs root and the right to mount)")
        shared = SharedSupernets(opened.study, opened.storage, disk / "store", lambda line: None)
        try:
            with pytest.raises(WriteError) as caught:
                shared.publish(label + COPY, local, 1.0)
            message, left = str(caught.value), sorted(p.name for p in disk.rglob("*"))
        finally:
            subprocess.run(["umount", "-l", str(disk)], capture_output=True)
        assert left == ["filler", "store"], left  # no partial file
        assert "(No space left on device); nothing was recorded" in message, message
        assert "cannot upload model.safetensors to the artifact store" in message, message
    else:
        disk.mkdir()
        done = subprocess.run(
            [sys.executable, "-c", FULL_STORE, url, str(disk / "store"), label + COPY, str(local)],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
            timeout=300,
        )
        assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
        assert "(File too large); nothing was recorded" in done.stderr, done.stderr
        assert "cannot upload model.safetensors to the artifact store" in done.stderr, done.stderr
        assert sorted(p.name for p in disk.rglob("*")) == ["store"]  # no partial file
    assert "cannot upload model.safetensors to the artifact store" in (
        message if limit == "a full tmpfs" else done.stderr
    )
    fresh = open_study(url, "tiny", None).storage  # read again, past any cache
    assert (fresh.get_study_user_attrs(study_id), fresh.get_study_system_attrs(study_id)) == before  # no record
