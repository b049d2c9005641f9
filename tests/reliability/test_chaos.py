"""Faults at scale, for real: a supernet-mode study run by 8 processes on a real PostgreSQL server while a
driver kills them at random (``kill -9`` and SIGTERM) and restarts each, and crashes and restarts the
server once mid-study. Afterwards, from the storage alone (a Jepsen-style check of a history):

- every trial asked for ended exactly once: its slot has one COMPLETE (or stopped-early) trial, each
  failed trial was failed by a kill and has exactly one queued copy, nothing was lost or done twice;
- no completed trial's values ever changed (the driver polled them all through the run);
- the study's Pareto set (pareto.json) is the one recomputed from the stored trials;
- each supernet file in the artifact store has the SHA-256 the study recorded;
- the processes said, each in one line, that the storage stopped answering and answered again, and no
  process ended with a traceback or an exit it was not killed into.

The figures (processes, kills, restarts, trials, seconds) are printed, and written as JSON to
``$SPARSEARCH_CHAOS_FIGURES`` where it is set (docs/guarantees.md quotes them).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from sparsearch.study.artifacts import RECORD_PREFIX, STORE_ATTR
from sparsearch.study.storage import open_storage
from tests.study.helpers import write_tiny
from tests.study.test_study import _budget

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd(), "PYTHONDONTWRITEBYTECODE": "1"}
PROCESSES = 8  # one `sparsearch study` and seven `sparsearch worker`s
TRIALS = 300
KILLS = 30  # at points of the study's progress drawn at random (a kill that finds its process gone is not counted)
HEARTBEAT = "1"
LIMIT_S = 900


class Driver:
    """Runs the processes, kills and restarts them, and keeps the history of what it saw."""

    def __init__(self, url: str, tmp: Path, seed: int) -> None:
        self.url, self.tmp, self.rng = url, tmp, random.Random(seed)
        self.logs = tmp / "logs"
        self.logs.mkdir()
        space = write_tiny(tmp)
        common = ["--storage", url, "--study-name", "s", "--device", "cpu", "--heartbeat", HEARTBEAT]
        self.study_command = [sys.executable, "-m", "sparsearch", "study", "--budget", str(_budget())]
        self.study_command += ["--space", str(space), "--trials", str(TRIALS), "--finetune-top", "1"]
        self.study_command += ["--finetune-steps", "1", "--score-examples", "64", "--seed", "0", *common]
        self.worker_command = [sys.executable, "-m", "sparsearch", "worker", *common, "--seed"]
        self.processes: dict[int, subprocess.Popen] = {}
        self.started = 0
        self.last_start = 0.0
        self.log_of: dict[int, Path] = {}
        self.trace = (tmp / "driver.log").open("w")  # when the driver saw what (kept with the test's files)
        self.refused = 0  # processes started while the server was away: refused in one line, started again
        self.kills: list[tuple[float, int, str]] = []
        self.values: dict[int, tuple] = {}  # every COMPLETE trial's values, as first seen
        self.changed: list[int] = []
        self.storage = None

    def start(self, slot: int) -> None:
        command = self.study_command if slot == 0 else [*self.worker_command, str(slot * 1000 + self.started)]
        self.started += 1
        self.last_start = time.time()
        self.log_of[slot] = self.logs / f"{slot}-{self.started:03d}.log"
        log = self.log_of[slot].open("w")
        self.processes[slot] = subprocess.Popen(  # niced: the driver keeps its pace on a busy machine
            command, cwd=self.tmp, env=ENV, stdout=log, stderr=subprocess.STDOUT, text=True, preexec_fn=_nice
        )

    def trials(self) -> list[optuna.trial.FrozenTrial] | None:
        """The stored trials, or None while the server is away."""
        try:
            if self.storage is None:
                self.storage = open_storage(self.url)
            return optuna.load_study(study_name="s", storage=self.storage).get_trials()
        except Exception:
            if self.storage is not None:
                self.storage.engine.dispose()
            self.storage = None
            return None

    def done(self) -> int | None:
        """Trials finished (complete or stopped early), counted by the server; None while it is away."""
        import sqlalchemy

        try:
            if self.storage is None:
                self.storage = open_storage(self.url)
            with self.storage.engine.connect() as conn:
                query = "SELECT count(*) FROM trials WHERE state IN ('COMPLETE', 'PRUNED')"
                return int(conn.execute(sqlalchemy.text(query)).scalar())
        except Exception:
            return None

    def observe(self) -> list[optuna.trial.FrozenTrial] | None:
        trials = self.trials()
        for t in trials or []:
            if t.state == TrialState.COMPLETE:
                seen = self.values.setdefault(t.number, tuple(t.values))
                if seen != tuple(t.values):
                    self.changed.append(t.number)
        return trials

    def kill(self, slot: int) -> None:
        signum = self.rng.choice([signal.SIGKILL, signal.SIGTERM])
        process = self.processes[slot]
        if process.poll() is not None:
            return
        process.send_signal(signum)
        process.wait(timeout=120)
        self.kills.append((time.time(), slot, signum.name))

    def refused_at_start(self, slot: int) -> bool:
        """Whether the process in ``slot`` ended saying, in one line, that it could not connect: started
        while the server was away, it must (exit 2), and a scheduler starts it again."""
        lines = self.log_of[slot].read_text().splitlines()
        refused = bool(lines) and lines[-1].startswith("error: storage ") and "cannot connect" in lines[-1]
        if refused:
            self.refused += 1
        return refused

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()


def _nice() -> None:
    os.nice(5)


def _study_exists(driver: Driver) -> bool:
    trials = driver.trials()
    return bool(trials) and any(t.state == TrialState.COMPLETE for t in trials)


def _pareto(trials: list[optuna.trial.FrozenTrial]) -> set[int]:
    """Recomputed by brute force: feasible COMPLETE trials no other dominates (more accurate and no
    costlier, or cheaper and no less accurate); of equal points, the lowest number."""
    points = [
        (t.number, t.values[0], t.values[1])
        for t in trials
        if t.state == TrialState.COMPLETE and t.user_attrs.get("feasible")
    ]

    def beats(q, p) -> bool:
        better = q[1] >= p[1] and q[2] <= p[2] and (q[1] > p[1] or q[2] < p[2])
        return better or (q[1] == p[1] and q[2] == p[2] and q[0] < p[0])

    return {p[0] for p in points if not any(beats(q, p) for q in points)}


@pytest.mark.slow  # about 2.5 minutes on 2 cores; runs in make test-slow (and in CI)
def test_eight_processes_killed_at_random_and_a_server_restart_lose_nothing(postgres_server, tmp_path) -> None:
    start = time.time()
    driver = Driver(postgres_server.url, tmp_path, seed=31)
    figures: dict = {}
    try:
        figures.update(_run(driver, postgres_server, start))
        _check(driver, figures)
    finally:
        driver.stop_all()
        figures["seconds"] = round(time.time() - start)
        print(json.dumps(figures, indent=1))
        if os.environ.get("SPARSEARCH_CHAOS_FIGURES"):
            Path(os.environ["SPARSEARCH_CHAOS_FIGURES"]).write_text(json.dumps(figures, indent=1) + "\n")


def _run(driver: Driver, server, start: float) -> dict:
    driver.start(0)  # the study: creates it, trains its supernet, then runs trials with the workers
    while not _study_exists(driver):
        assert driver.processes[0].poll() is None, (driver.logs / "0-001.log").read_text()
        assert time.time() - start < LIMIT_S, "the study never started"
        time.sleep(0.5)
    for slot in range(1, PROCESSES):
        driver.start(slot)
    restarted_at = None
    # When to kill: after so many trials done, drawn at random over the run (not by the clock, so that a
    # faster or slower machine meets as many kills).
    points = sorted(driver.rng.sample(range(10, int(TRIALS * 0.95)), KILLS))
    observed = 0.0
    while True:
        assert time.time() - start < LIMIT_S, "the study did not finish in time"
        if time.time() - observed > 2:  # every completed trial's values, read whole every 2 s
            driver.observe()
            observed = time.time()
        for slot, process in list(driver.processes.items()):
            if process.poll() not in (None, 0):  # only one refused at its start, by the server away, is restarted
                assert restarted_at is not None and driver.refused_at_start(slot), (slot, process.returncode)
                driver.start(slot)
        if driver.processes[0].poll() == 0:  # the study is done
            break
        done = driver.done() or 0
        driver.trace.write(f"{time.time() - start:7.1f} s: {done} done, {len(driver.kills)} kills\n")
        driver.trace.flush()
        if restarted_at is None and done >= TRIALS * 0.4:
            # No kill for 10 s first: a process starting while the server is away cannot connect, and
            # says so (exit 2), as it should; the ones running wait the restart out.
            if time.time() - driver.last_start > 10:
                server.stop("immediate")  # a crash: recovery at the next start
                time.sleep(driver.rng.uniform(4, 8))  # longer than a trial's grace (3 missed beats)
                server.start()
                restarted_at = done
        elif points and done >= points[0]:
            points.pop(0)
            slot = driver.rng.randrange(PROCESSES)
            driver.kill(slot)
            time.sleep(driver.rng.uniform(0, 1))
            driver.start(slot)
        time.sleep(0.2)
    for process in driver.processes.values():
        process.wait(timeout=120)
        assert process.returncode == 0
    final = driver.observe()
    states = {s.name: sum(1 for t in final if t.state == s) for s in TrialState}
    return {
        "machine": _cpu(),
        "processes": PROCESSES,
        "server_restarts": 1 if restarted_at is not None else 0,
        "restart_after_trials": restarted_at,
        "kills": {name: sum(1 for _, _, n in driver.kills if n == name) for name in ("SIGKILL", "SIGTERM")},
        "processes_started": driver.started,
        "refused_at_start_during_the_restart": driver.refused,
        "trials_asked": TRIALS,
        "trials_stored": len(final),
        "states": {k: v for k, v in states.items() if v},
    }


def _check(driver: Driver, figures: dict) -> None:
    trials = driver.observe()
    by_number = {t.number: t for t in trials}

    def root(t) -> int:
        while "failed_trial" in t.system_attrs:
            t = by_number[t.system_attrs["failed_trial"]]
        return t.number

    done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    copies: dict[int, list[int]] = {}
    for t in trials:  # a copy's retry history ends with the trial it copies (failed_trial names the first)
        if t.system_attrs.get("retry_history"):
            copies.setdefault(t.system_attrs["retry_history"][-1], []).append(t.number)
    slots = {root(t) for t in trials}
    done_roots = [root(t) for t in done]
    lost = sorted(slots - set(done_roots))
    twice = sorted({r for r in done_roots if done_roots.count(r) > 1})
    figures.update(lost=len(lost), done_twice=len(twice), values_changed=len(set(driver.changed)))
    assert sum(figures["kills"].values()) >= 24 and figures["server_restarts"] == 1, figures
    assert len(slots) == TRIALS and not lost and not twice, (lost, twice)
    assert len(done) == TRIALS
    assert not driver.changed, driver.changed
    assert all(t.state != TrialState.RUNNING and t.state != TrialState.WAITING for t in trials)
    for t in failed:  # failed by a kill (a stale heartbeat, or SIGTERM), and queued again exactly once
        assert t.user_attrs.get("error") in (None, "interrupted"), (t.number, t.user_attrs.get("error"))
        assert len(copies.get(t.number, [])) == 1, (t.number, copies.get(t.number))
    figures["failed_and_copied"] = len(failed)

    summary = json.loads((driver.tmp / "studies" / "s" / "pareto.json").read_text())
    assert {row["number"] for row in summary["pareto"]} == _pareto(trials)

    attrs = optuna.load_study(study_name="s", storage=open_storage(driver.url)).user_attrs
    store = Path(attrs[STORE_ATTR])
    records = {k: v for k, v in attrs.items() if k.startswith(RECORD_PREFIX)}
    assert records
    for record in records.values():
        for meta in record["files"].values():
            data = (store / meta["artifact_id"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == meta["sha256"] and len(data) == meta["bytes"]
    figures["supernet_files_verified"] = sum(len(r["files"]) for r in records.values())

    logs = {p.name: p.read_text() for p in sorted(driver.logs.iterdir())}
    traced = [name for name, text in logs.items() if "Traceback" in text]
    assert not traced, (traced, logs[traced[0]][-3000:] if traced else "")
    said = [name for name, text in logs.items() if "the study's storage does not answer" in text]
    back = [name for name, text in logs.items() if "the study's storage answers again after" in text]
    assert said and set(back) <= set(said) and back, (said, back)
    figures["processes_that_waited_out_the_restart"] = len(back)


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} CPUs"
    return f"{os.cpu_count()} CPUs"
