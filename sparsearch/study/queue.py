"""The trial queue: a study of ``--trials N`` holds exactly N slots, and workers claim them one by one.

Slots are queued (WAITING) when the study is created or resumed: the reference trials first, then
empty slots the sampler fills when a worker claims them. Workers only claim queued trials and never
create any, so N workers on one storage complete exactly N trials between them. A trial whose worker
died is marked failed once its heartbeat is stale and a copy is queued in its place (the failed one
no longer counts as a slot).
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import optuna
import torch
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from sparsearch.data import is_plugin
from sparsearch.errors import ConfigError
from sparsearch.study.artifacts import store_dir
from sparsearch.study.evaluator import Evaluator
from sparsearch.study.evaluators import make_evaluator
from sparsearch.study.samplers import make_sampler
from sparsearch.study.session import open_study
from sparsearch.study.settings import StudySettings
from sparsearch.study.storage import (
    HEARTBEAT_SECONDS,
    MAX_RETRY,
    Outage,
    check_run_limits,
    claim_waiting_trial,
    heartbeat,
    setup_lock,
    storage_failure,
)
from sparsearch.train.loop import resolve_device

__all__ = ["ORPHAN_AGE_S", "requeue_orphans", "require_named_plugin", "run_worker", "top_up", "work"]


def _slots(study: optuna.Study) -> int:
    """Trials that count towards --trials: all but those a retry has replaced."""
    trials = study.get_trials(deepcopy=False)
    replaced = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    return sum(1 for t in trials if t.number not in replaced)


def top_up(study: optuna.Study, trials: int) -> int:
    """Queue empty trials until the study holds ``trials`` slots; returns how many were queued."""
    missing = trials - _slots(study)
    for _ in range(max(0, missing)):
        study.enqueue_trial({})
    return max(0, missing)


def _tell(study: optuna.Study, trial: optuna.Trial, outage: Outage, log, **how) -> None:
    """Tell the trial's end, waiting out a storage outage. A trial that a peer failed meanwhile (its heartbeat
    stopped during the outage) is left as it is: its queued copy runs instead, so nothing is done twice."""
    state = _retrying(lambda: study.tell(trial, skip_if_finished=True, **how).state, outage)
    if state != how.get("state", TrialState.COMPLETE) and log is not None:
        log(f"trial {trial.number} was failed by a peer while it ran (no heartbeat reached the storage); its copy runs")


def _run_one(study: optuna.Study, storage: RDBStorage, trial: optuna.Trial, evaluator: Evaluator, outage, log) -> None:
    try:
        values = evaluator(trial)
    except optuna.TrialPruned:
        _tell(study, trial, outage, log, state=TrialState.PRUNED)
    except Exception as err:  # the trial fails with its reason; the study goes on
        if storage_failure(err) is not None:  # not the trial's fault: it goes stale and its copy runs
            raise
        reason = f"{type(err).__name__}: {err}".splitlines()[0]
        trial.set_user_attr("error", reason[:500])
        _tell(study, trial, outage, log, state=TrialState.FAIL)
    except BaseException:  # interrupted (Ctrl-C, SIGTERM): fail it, queue its copy, and stop
        trial.set_user_attr("error", "interrupted")
        frozen = study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        callback = storage.get_heartbeat_stale_trial_callback()  # queue its copy, as for a stale trial
        if callback is not None and frozen.state == TrialState.FAIL:
            callback(study, frozen)
        raise
    else:
        if not all(math.isfinite(v) for v in values):  # Optuna would fail it too, without saying why
            trial.set_user_attr("error", f"non-finite objective values {list(values)}")
            _tell(study, trial, outage, log, state=TrialState.FAIL)
            return
        _tell(study, trial, outage, log, values=list(values))


def work(
    study: optuna.Study,
    storage: RDBStorage,
    evaluator: Evaluator,
    *,
    deadline: float | None = None,
    wait: bool = False,
    on_trial=None,
    poll_s: float = 2.0,
    log=None,
    guard: Callable[[], contextlib.AbstractContextManager] | None = None,
) -> int:
    """Claim and run queued trials of ``study`` (opened on ``storage``) until none is left (``wait``: and
    none is running anywhere), or the deadline passes. Returns the number of trials this worker ran.

    A storage that stops answering (a server restarting) is waited for with bounded back-off
    (:class:`~sparsearch.study.storage.Outage`, said in one line); a trial it interrupted goes stale and
    its queued copy runs. ``guard``: the study's set-up lock, under which a failed trial whose copy was
    never queued is queued once the queue is empty (:func:`requeue_orphans`)."""
    outage = Outage(log)
    study_id = _retrying(lambda: storage.get_study_id_from_name(study.study_name), outage)
    interval = storage.get_heartbeat_interval() or HEARTBEAT_SECONDS
    done = 0
    while deadline is None or time.time() < deadline:
        ran = _retrying(
            lambda: _next(study, storage, evaluator, study_id, interval, wait, poll_s, outage, log, guard), outage
        )
        if ran is None:
            break
        if ran:
            done += 1
            if on_trial is not None:
                _retrying(lambda: on_trial(study), outage)
    return done


def _next(study, storage, evaluator, study_id, interval, wait, poll_s, outage, log, guard) -> bool | None:
    """Run the next queued trial: True when one ran, False when waiting for running ones, None when done."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # dead workers' trials: failed, and queued again
    trial_id = claim_waiting_trial(storage, study_id)
    if trial_id is None:
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if not running and guard is not None:
            queued, young = requeue_orphans(study, storage, guard, log)
            if queued:
                return False
            if young and wait:
                time.sleep(poll_s)
                return False
        if not wait or not running:
            return None
        time.sleep(poll_s)
        return False
    # The study reads the storage through Optuna's cache, which learns of trials when it reads them:
    # read once, so that it knows the trial just claimed (a worker that has not read since it started
    # would otherwise fail on the trial's first parameter).
    study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    trial = optuna.Trial(study, trial_id)
    with heartbeat(storage, trial_id, interval):
        _run_one(study, storage, trial, evaluator, outage, log)
    return True


ORPHAN_AGE_S = 30.0  # a failed trial without a copy this long after its end lost its copy for good


def requeue_orphans(study: optuna.Study, storage: RDBStorage, guard, log=None) -> tuple[int, int]:
    """Queue the copy that a failed trial should have and lacks; returns (queued, too recent to tell).

    A trial whose worker died is failed by a peer, which then queues its copy: two writes. A peer killed
    between them leaves a failed trial without a copy, and the study would end a trial short. Once the
    queue is empty and nothing runs, such a trial (failed by a stale heartbeat or an interruption, not by
    its own error, within the retry limit, and ended over :data:`ORPHAN_AGE_S` ago, so no peer is still
    between the two writes) gets its copy, under the study's set-up lock so that two processes doing this
    at once queue one copy."""
    callback = storage.get_heartbeat_stale_trial_callback()
    if callback is None:
        return 0, 0
    queued = young = 0
    with guard():
        trials = study.get_trials(deepcopy=False)
        replaced = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
        now = datetime.datetime.now()
        for t in trials:
            orphan = (
                t.state == TrialState.FAIL
                and t.number not in replaced
                and t.user_attrs.get("error") in (None, "interrupted")
                and len(t.system_attrs.get("retry_history", [])) < MAX_RETRY
            )
            if not orphan:
                continue
            if t.datetime_complete is not None and (now - t.datetime_complete).total_seconds() < ORPHAN_AGE_S:
                young += 1
                continue
            callback(study, t)
            queued += 1
            if log is not None:
                log(f"trial {t.number} failed without its copy queued (its peer died in between); queued it now")
    return queued, young


def _retrying(call, outage: Outage):
    """``call()``, called again while the storage does not answer (``outage`` says so and backs off)."""
    while True:
        try:
            result = call()
        except Exception as err:
            if storage_failure(err) is None:
                raise
            outage.wait(err)
            continue
        outage.over()
        return result


def require_named_plugin(name: str, settings: StudySettings, data: str | None) -> None:
    """Refuse to run a study's data plug-in unless ``data`` names it: the storage never chooses code to run."""
    if settings.data and is_plugin(settings.data) and (data or "").strip() != settings.data:
        raise ConfigError(
            f"study {name!r} trains on the plug-in {settings.data!r}; plug-ins run only when named on the "
            f"command line: give --data {settings.data}"
        )


def run_worker(
    storage_url: str,
    name: str,
    *,
    device: str = "auto",
    seed: int | None = None,
    timeout: float | None = None,
    deadline: float | None = None,
    artifacts: str | Path | None = None,
    log=None,
    heartbeat_s: int = HEARTBEAT_SECONDS,
    data: str | None = None,
    artifact_store: str | Path | None = None,
) -> int:
    """Join study ``name`` and run its queued trials (``sparsearch worker``): until none is left, or
    ``timeout`` seconds from now, or the time ``deadline`` (``time.time()``) of the study that started it.

    A study on a data plug-in needs ``data`` naming the same plug-in: the storage never chooses code to run.
    """
    check_run_limits(timeout, heartbeat_s)
    if timeout is not None:
        deadline = min(deadline or math.inf, time.time() + timeout)
    opened = open_study(storage_url, name, None, heartbeat_s=heartbeat_s)
    settings = opened.settings
    if data is not None and data.strip() != (settings.data or ""):
        used = repr(settings.data) if settings.data else "its space's proxy dataset"
        raise ConfigError(f"study {name!r} uses {used}, not --data {data!r}")
    require_named_plugin(name, settings, data)
    if seed is not None:
        opened.study.sampler = make_sampler(settings.sampler, seed)
    artifacts = Path(artifacts or Path("studies") / name)
    evaluator = make_evaluator(settings, opened.space, resolve_device(device), artifacts, log)
    evaluator.share(
        opened.study, opened.storage, store_dir(opened.study, artifact_store, artifacts / "store", record=False)
    )
    guard = functools.partial(setup_lock, storage_url)
    return work(opened.study, opened.storage, evaluator, deadline=deadline, log=log, guard=guard)


def child_worker(
    storage_url: str,
    name: str,
    device: str,
    seed: int,
    deadline: float | None,
    artifacts: str,
    heartbeat_s: int,
    data: str | None,
    artifact_store: str,
) -> None:
    """A worker process that ``sparsearch study --jobs`` starts (one CPU thread each)."""
    torch.set_num_threads(1)
    run_worker(
        storage_url,
        name,
        device=device,
        seed=seed,
        deadline=deadline,
        artifacts=artifacts,
        heartbeat_s=heartbeat_s,
        data=data,  # the plug-in the user named to `study`, if any
        artifact_store=artifact_store,  # the store the study process uses
    )
