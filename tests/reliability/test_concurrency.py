"""Concurrency and crashes, on both storages: the default SQLite file and a real PostgreSQL server.

- N worker processes (and N identical `sparsearch study` commands started at once) complete exactly
  the trials asked for, each once, with no "database is locked" failure;
- `kill -9` of `sparsearch study` mid-trial, then the same command again: the completed trials are
  kept, the killed one is marked failed once its heartbeat is stale and re-run, the count is as asked;
- the storage password never appears in any output, file or stored attribute.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from sparsearch.study import open_study
from sparsearch.study.queue import top_up
from sparsearch.study.storage import open_storage
from tests.study.helpers import tiny_settings, write_tiny
from tests.study.test_study import _budget

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
WORKERS = 4


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "sparsearch", *args]


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request, tmp_path) -> tuple[str, list[str]]:
    """The storage URL the test reads, and the --storage arguments a command gets (none: the default)."""
    if request.param == "sqlite":  # the default: sqlite:///studies/<name>.db under the working directory
        return f"sqlite:///{tmp_path}/studies/s.db", ["--study-name", "s"]
    url = request.getfixturevalue("pg_database")
    return url, ["--storage", url, "--study-name", "s"]


def _trials(url: str) -> list[optuna.trial.FrozenTrial]:
    if url.startswith("sqlite:///") and not Path(url.split(":///", 1)[1]).exists():
        return []  # not created yet (and opening it here would create it)
    storage = open_storage(url)  # sparsearch's storage waits while another process creates the tables
    try:
        return optuna.load_study(study_name="s", storage=storage).get_trials()
    except KeyError:
        return []
    finally:
        storage.engine.dispose()


def _start(commands: list[list[str]], cwd: Path) -> list[subprocess.Popen]:
    """Start the commands at once, capturing their output."""
    return [
        subprocess.Popen(c, cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for c in commands
    ]


def _finish(processes: list[subprocess.Popen]) -> list[tuple[str, str]]:
    outputs = []
    for p in processes:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
        assert "database is locked" not in out + err
        outputs.append((out, err))
    return outputs


def _exactly_once(url: str, n: int) -> None:
    trials = _trials(url)
    assert len(trials) == n and all(t.state == TrialState.COMPLETE for t in trials), [
        (t.number, t.state, t.user_attrs.get("error")) for t in trials
    ]
    assert sorted(t.number for t in trials) == list(range(n))


CLAIM = """
import json, sys
import optuna
from sparsearch.study.storage import claim_waiting_trial, open_storage
optuna.logging.set_verbosity(optuna.logging.WARNING)
storage = open_storage(sys.argv[1])
study_id = storage.get_study_id_from_name("s")
claimed = []
while (trial_id := claim_waiting_trial(storage, study_id)) is not None:
    claimed.append(trial_id)
print(json.dumps(claimed))
"""


def test_each_queued_trial_is_claimed_by_exactly_one_process(storage, tmp_path) -> None:
    url, _ = storage
    study = open_study(url, "s", tiny_settings(_budget(), eval="train", trials=3)).study
    for _ in range(197):
        study.enqueue_trial({})
    claimers = _start([[sys.executable, "-c", CLAIM, url]] * WORKERS, tmp_path)
    claimed = [json.loads(out) for out, _ in _finish(claimers)]
    every = sorted(i for ids in claimed for i in ids)
    assert len(every) == 200 and len(set(every)) == 200  # all claimed, none twice
    assert sum(1 for ids in claimed if ids) > 1  # and the processes did overlap


def test_workers_complete_exactly_the_requested_trials(storage, tmp_path) -> None:
    # Train mode: every trial trains its own proxy; no early stopping, so every trial completes.
    url, _ = storage
    settings = tiny_settings(_budget(), eval="train", trials=12, stop_peers=100)
    study = open_study(url, "s", settings).study
    top_up(study, 12)
    worker = _cli("worker", "--storage", url, "--study-name", "s", "--device", "cpu", "--seed")
    workers = _start([[*worker, str(i)] for i in range(WORKERS)], tmp_path)
    ran = sum(int(re.search(r"worker ran (\d+) trial", out).group(1)) for out, _ in _finish(workers))
    assert ran == 12  # between them, each queued trial ran once
    _exactly_once(url, 12)
    # The report reads the same storage (a train-mode study: no supernets, no fine-tuning).
    report = subprocess.run(
        _cli("report", "s", "--storage", url, "--out", str(tmp_path / "report")),
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "report" / "pareto.png").is_file() and (tmp_path / "report" / "index.md").is_file()


def test_a_failed_trial_whose_copy_was_lost_is_queued_once(tmp_path) -> None:
    """A peer killed between failing a dead worker's trial and queueing its copy leaves a failed trial
    without one: once the queue is empty, the workers queue it, once, and the study reaches its count."""
    import datetime
    import functools

    from sparsearch.study.queue import requeue_orphans
    from sparsearch.study.storage import setup_lock

    url = f"sqlite:///{tmp_path}/s.db"
    opened = open_study(url, "s", tiny_settings(_budget(), eval="train", trials=3, stop_peers=100))
    top_up(opened.study, 2)
    waiting = len(opened.study.get_trials(states=(TrialState.WAITING,)))
    ended = datetime.datetime.now() - datetime.timedelta(minutes=5)
    orphan = optuna.trial.FrozenTrial(  # failed by a stale heartbeat five minutes ago; no copy was queued
        number=-1,
        state=TrialState.FAIL,
        value=None,
        datetime_start=ended,
        datetime_complete=ended,
        params={},
        distributions={},
        user_attrs={},
        system_attrs={},
        intermediate_values={},
        trial_id=-1,
    )
    opened.study.add_trial(orphan)
    recent = optuna.trial.FrozenTrial(  # and one that failed a moment ago: its peer may be queueing it now
        number=-1,
        state=TrialState.FAIL,
        value=None,
        datetime_start=datetime.datetime.now(),
        datetime_complete=datetime.datetime.now(),
        params={},
        distributions={},
        user_attrs={},
        system_attrs={"retry_history": [97, 98, 99]},
        intermediate_values={},
        trial_id=-1,
    )  # past the retry limit: never queued again
    opened.study.add_trial(recent)
    worker = _cli("worker", "--storage", url, "--study-name", "s", "--device", "cpu", "--seed")
    outputs = _finish(_start([[*worker, str(i)] for i in range(2)], tmp_path))
    trials = _trials(url)
    (number,) = [t.number for t in trials if t.datetime_complete == ended]
    copies = [t for t in trials if t.system_attrs.get("retry_history", [None])[-1] == number]
    assert len(copies) == 1 and copies[0].state == TrialState.COMPLETE, [t.system_attrs for t in trials]
    assert sum(t.state == TrialState.COMPLETE for t in trials) == waiting + 1  # those queued, and the copy
    assert sum("queued it now" in err for _, err in outputs) == 1
    guard = functools.partial(setup_lock, url)
    assert requeue_orphans(opened.study, open_storage(url), guard) == (0, 0)  # nothing left to queue


@pytest.mark.slow  # 40 s of the default suite over both storages; runs in make test-slow (and in CI)
def test_identical_study_commands_started_at_once_share_one_study(storage, tmp_path) -> None:
    url, args = storage
    space = write_tiny(tmp_path)
    command = _cli(
        "study", "--budget", str(_budget()), "--space", str(space), "--eval", "train", "--trials", "8", *args
    )
    runs = _start([[*command, "--seed", "0", "--device", "cpu"]] * WORKERS, tmp_path)
    _finish(runs)
    _exactly_once(url, 8)


def _wait_for(predicate, timeout: float) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("timed out waiting")


def test_kill_9_mid_trial_loses_nothing_and_the_trial_is_retried(storage, tmp_path) -> None:
    url, args = storage
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
        *args,
        "--heartbeat",
        "1",
        "--device",
        "cpu",
    )
    first = subprocess.Popen(command, cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # Kill it while a trial trains, once a feasible trial has completed.
    _wait_for(
        lambda: (
            any(t.state == TrialState.COMPLETE and t.user_attrs.get("feasible") for t in _trials(url))
            and any(t.state == TrialState.RUNNING for t in _trials(url))
        ),
        timeout=300,
    )
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    before = {t.number: t.values for t in _trials(url) if t.state == TrialState.COMPLETE}
    killed = [t.number for t in _trials(url) if t.state == TrialState.RUNNING]
    assert before and len(killed) == 1

    again = subprocess.run(command, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    trials = _trials(url)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 5  # what was asked
    assert before == {t.number: t.values for t in trials if t.number in before}
    dead = next(t for t in trials if t.number == killed[0])
    assert dead.state == TrialState.FAIL  # marked failed once its heartbeat went stale ...
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed[0]]
    assert len(retries) == 1 and retries[0].state in (TrialState.COMPLETE, TrialState.PRUNED)  # ... and re-run


@pytest.mark.slow  # 31 s; runs in make test-slow (and in CI)
def test_the_password_never_appears(postgres_url, pg_database, tmp_path) -> None:
    # The test server trusts local connections, so it accepts any password: the URL carries one.
    url = pg_database.replace("postgres@", "postgres:s3cret-pw@")
    assert "s3cret-pw" in url
    space = write_tiny(tmp_path)
    common = ["--storage", url, "--study-name", "s"]
    study = [*_cli("study", "--budget", str(_budget()), "--space", str(space), "--trials", "4", *common)]
    study += ["--supernets", "1", "--finetune-steps", "2", "--score-examples", "64", "--device", "cpu"]
    outputs = [
        subprocess.run(command, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=600)
        for command in (
            study,  # progress on stderr, the table on stdout
            [*study, "--json"],
            _cli("worker", *common, "--device", "cpu"),
            _cli("report", "s", "--storage", url, "--out", "report", "--json"),
            _cli("report", "s", "--storage", url.rsplit("/", 1)[0] + "/nosuchdb", "--out", "report2"),
        )
    ]
    assert [o.returncode for o in outputs] == [0, 0, 0, 0, 2]
    assert "postgres:***@" in outputs[-1].stderr  # the failure names the URL, masked
    text = [o.stdout + o.stderr for o in outputs]
    text += [p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file()]
    stored = optuna.load_study(study_name="s", storage=url)
    text.append(json.dumps(stored.user_attrs, default=str))
    text += [json.dumps([t.user_attrs, t.system_attrs], default=str) for t in stored.get_trials()]
    assert json.loads(outputs[3].stdout)["storage"].startswith("postgresql://postgres:***@")
    leaks = [t[:200] for t in text if "s3cret" in t]
    assert leaks == []
    assert Path(tmp_path / "report" / "index.md").is_file()


@pytest.mark.parametrize("url", ["postgresql://u:pw@h/db", "postgresql+psycopg://u:p%40ss@h:5432/db"])
def test_redact_masks_passwords(url: str) -> None:
    from sparsearch.study import redact

    assert "pw" not in redact(url) and "p%40ss" not in redact(url) and "***@h" in redact(url)
