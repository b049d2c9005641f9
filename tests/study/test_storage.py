"""The storage helpers, in one process: URLs, limits, the claim of queued trials, heartbeats."""

from __future__ import annotations

import threading
import time
import warnings
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from sparsearch.errors import ConfigError
from sparsearch.study.storage import (
    check_run_limits,
    claim_waiting_trial,
    default_storage_url,
    heartbeat,
    open_storage,
    redact,
    sqlite_file,
)


def test_urls() -> None:
    assert redact("postgresql://ann:s3cret@db.example/studies") == "postgresql://ann:***@db.example/studies"
    assert redact("sqlite:///studies/x.db") == "sqlite:///studies/x.db"
    assert default_storage_url("default-50GFLOPs") == "sqlite:///studies/default-50GFLOPs.db"
    assert sqlite_file("sqlite:///studies/x.db") == Path("studies/x.db")
    assert sqlite_file("postgresql://db/x") is None


@pytest.mark.parametrize(("timeout", "beat"), [(0, 10), (-1.0, 10), (None, 0), (None, True), (5.0, 1.5)])
def test_run_limits_are_refused_when_not_positive(timeout, beat) -> None:
    with pytest.raises(ConfigError, match="give a positive number of seconds"):
        check_run_limits(timeout, beat)


def _queued(tmp_path: Path, n: int) -> tuple[optuna.storages.RDBStorage, int]:
    storage = open_storage(f"sqlite:///{tmp_path}/q.db")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=storage, study_name="q", directions=["maximize", "minimize"])
    for _ in range(n):
        study.enqueue_trial({})
    return storage, storage.get_study_id_from_name("q")


def test_claims_take_queued_trials_in_order_and_each_once(tmp_path) -> None:
    storage, study_id = _queued(tmp_path, 30)
    claimed: list[int] = []

    def claimer() -> None:
        while (trial_id := claim_waiting_trial(storage, study_id)) is not None:
            claimed.append(trial_id)

    threads = [threading.Thread(target=claimer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(set(claimed)) and len(claimed) == 30
    states = [t.state for t in storage.get_all_trials(study_id)]
    assert states == [TrialState.RUNNING] * 30
    assert claim_waiting_trial(storage, study_id) is None


@pytest.mark.integration  # waits out missed heartbeats (make test, not make check)
def test_a_trial_with_heartbeats_is_not_stale_and_one_without_is(tmp_path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path}/h.db", heartbeat_s=1)  # stale after 3 missed beats
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=storage, study_name="h", directions=["maximize", "minimize"])
    study.enqueue_trial({})
    study.enqueue_trial({})
    study_id = storage.get_study_id_from_name("h")
    beating, silent = claim_waiting_trial(storage, study_id), claim_waiting_trial(storage, study_id)
    storage.record_heartbeat(silent)  # one beat, then none
    with heartbeat(storage, beating, 0.2):
        time.sleep(4.5)  # past the 3 s grace period, whose timestamps have 1 s resolution
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
    states = {t.number: t.state for t in storage.get_all_trials(study_id)}
    number = storage.get_trial_number_from_id
    assert states[number(beating)] == TrialState.RUNNING and states[number(silent)] == TrialState.FAIL
