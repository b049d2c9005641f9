"""Studies on a real PostgreSQL server: concurrent workers and a worker killed mid-trial."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

from sparsearch.study import open_study
from sparsearch.study.runner import top_up
from tests.study.helpers import tiny_settings, write_tiny
from tests.study.test_study import _budget

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "sparsearch", *args]


def test_three_workers_complete_exactly_the_requested_trials(pg_database, tmp_path) -> None:
    # Train mode: every trial trains its own proxy; no early stopping, so every trial completes.
    settings = tiny_settings(_budget(), eval="train", trials=9, stop_peers=100)
    study, _ = open_study(pg_database, "dist", settings)
    top_up(study, 9)
    workers = [
        subprocess.Popen(
            _cli("worker", "--storage", pg_database, "--study-name", "dist", "--device", "cpu", "--seed", str(i)),
            cwd=tmp_path,
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    ran = 0
    for worker in workers:
        out, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err
        ran += int(re.search(r"worker ran (\d+) trial", out).group(1))
    assert ran == 9  # between them, each queued trial ran once
    trials = optuna.load_study(study_name="dist", storage=pg_database).get_trials()
    assert len(trials) == 9 and all(t.state == TrialState.COMPLETE for t in trials)
    assert sorted(t.number for t in trials) == list(range(9))
    # The report reads the same storage (a train-mode study: no supernets, no fine-tuning).
    report = subprocess.run(
        _cli("report", "dist", "--storage", pg_database, "--out", str(tmp_path / "report")),
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "report" / "pareto.png").is_file() and (tmp_path / "report" / "index.md").is_file()


def _wait_for(predicate, timeout: float) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("timed out waiting")


def test_kill_9_mid_trial_loses_nothing_and_the_trial_is_retried(pg_database, tmp_path) -> None:
    space = write_tiny(tmp_path)
    command = _cli(
        "study",
        "--budget",
        str(_budget()),
        "--space",
        str(space),
        "--eval",
        "train",
        "--trials",
        "5",
        "--storage",
        pg_database,
        "--study-name",
        "killed",
        "--heartbeat",
        "1",
        "--device",
        "cpu",
    )
    first = subprocess.Popen(command, cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def state() -> list:
        try:
            return optuna.load_study(study_name="killed", storage=pg_database).get_trials()
        except KeyError:
            return []

    # Kill it while a trial trains, once a feasible trial has completed.
    _wait_for(
        lambda: (
            any(t.state == TrialState.COMPLETE and t.user_attrs.get("feasible") for t in state())
            and any(t.state == TrialState.RUNNING for t in state())
        ),
        timeout=300,
    )
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    before = {t.number: t.values for t in state() if t.state == TrialState.COMPLETE}
    killed = [t.number for t in state() if t.state == TrialState.RUNNING]
    assert before and len(killed) == 1

    again = subprocess.run(command, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    trials = state()
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 5  # what was asked
    assert {n: v for n, v in before.items()} == {t.number: t.values for t in trials if t.number in before}
    dead = next(t for t in trials if t.number == killed[0])
    assert dead.state == TrialState.FAIL  # marked failed once its heartbeat went stale ...
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed[0]]
    assert len(retries) == 1 and retries[0].state in (TrialState.COMPLETE, TrialState.PRUNED)  # ... and re-run


def test_a_storage_that_cannot_connect_is_one_line_without_the_password(tmp_path) -> None:
    url = "postgresql://user:s3cret@127.0.0.1:9/nowhere"
    result = subprocess.run(
        _cli("study", "--budget", "50GFLOPs", "--storage", url, "--trials", "1"),
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: storage postgresql://user:***@127.0.0.1:9/nowhere: cannot connect")
    assert "s3cret" not in result.stderr + result.stdout and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("url", ["postgresql://u:pw@h/db", "postgresql+psycopg://u:p%40ss@h:5432/db"])
def test_redact_masks_passwords(url: str) -> None:
    from sparsearch.study import redact

    assert "pw" not in redact(url) and "p%40ss" not in redact(url) and "***@h" in redact(url)
