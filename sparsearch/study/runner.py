"""Running a study (``sparsearch study``): create or resume it, queue its trials, work through them with
``--jobs`` processes, fine-tune the Pareto set, summarise.

Opening a study is :mod:`~sparsearch.study.session`, the claim loop :mod:`~sparsearch.study.queue`, the
summary :mod:`~sparsearch.study.summary`. The ``study`` command waits for running trials and retries
stale ones before it finishes.
"""

from __future__ import annotations

import functools
import multiprocessing
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from sparsearch.errors import ConfigError
from sparsearch.limits import check_int
from sparsearch.safe_io import check_writable
from sparsearch.spaces import Space
from sparsearch.spaces.registry import stored_space
from sparsearch.study.artifacts import store_dir
from sparsearch.study.evaluators import make_evaluator
from sparsearch.study.progress import Progress
from sparsearch.study.queue import child_worker, top_up, work
from sparsearch.study.session import open_study
from sparsearch.study.settings import StudySettings, default_study_name
from sparsearch.study.storage import (
    HEARTBEAT_SECONDS,
    check_run_limits,
    creating,
    default_storage_url,
    redact,
    setup_lock,
    sqlite_file,
)
from sparsearch.study.summary import summarize, write_summary
from sparsearch.study.target_latency import measure_target_latency
from sparsearch.train.loop import resolve_device
from sparsearch.train.machine import describe_machine

__all__ = ["StudyRun", "run_study"]


@dataclass
class StudyRun:
    study: optuna.Study
    settings: StudySettings
    space: Space
    summary: dict[str, Any]
    report: Path


def run_study(
    settings: StudySettings,
    *,
    storage_url: str | None = None,
    name: str | None = None,
    space: Space | None = None,
    device: str = "auto",
    jobs: int = 1,
    timeout: float | None = None,
    artifacts: str | Path | None = None,
    artifact_store: str | Path | None = None,
    progress: Progress | None = None,
    heartbeat_s: int = HEARTBEAT_SECONDS,
    runtime=None,
) -> StudyRun | None:
    """Create or resume the study, run it to its trial count (or ``timeout`` seconds), and summarise it.

    ``name`` and ``storage_url`` default as on the command line (``default-50GFLOPs`` in
    ``sqlite:///studies/default-50GFLOPs.db``). ``space``: the space of ``settings`` when the caller has
    parsed it already. ``artifact_store``: the directory of the artifact store that shares the supernets
    (default: the one the study records, else ``<artifacts>/store``). A resumed study takes this run's
    :data:`~sparsearch.study.session.RUN_OPTIONS`; its other settings must be these.

    Under ``torchrun`` (``runtime`` with several processes) every process runs this: the supernets are
    trained data-parallel by all of them, then rank 0 alone runs the trials, the fine-tuning and the
    summary, and the others return None.
    """
    name = name or default_study_name(settings.space, settings.budget)
    storage_url = storage_url or default_storage_url(name)
    if not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"jobs={jobs} must be a positive integer")
    check_int("jobs", jobs)
    together = runtime is not None and runtime.world > 1
    if together and jobs > 1:
        raise ConfigError("--jobs starts worker processes; under torchrun give --jobs 1 (the job trains the supernets)")
    check_run_limits(timeout, heartbeat_s)
    if jobs > 1 and storage_url.startswith("sqlite") and sqlite_file(storage_url) is None:
        raise ConfigError(
            f"--jobs {jobs} with the in-memory storage {storage_url}: worker processes cannot share it; "
            "give a database file (sqlite:///studies/s.db) or PostgreSQL"
        )
    start = time.perf_counter()
    deadline = None if timeout is None else time.time() + timeout
    target = runtime.device if runtime is not None else resolve_device(device)
    artifacts = Path(artifacts or Path("studies") / name)
    log = progress.message if progress is not None else None
    check_writable(artifacts / "pareto.json", "study summary")  # refused now, not after the search
    space = space or stored_space(settings.space_text, settings.space_source)
    # Refuse a space without k or fan-in (supernet mode) and data that does not load before anything is written.
    evaluator = make_evaluator(settings, space, target, artifacts, log, runtime if together else None)
    evaluator.data  # noqa: B018 (loads and checks the data; kept for the run)
    with creating(storage_url):  # together: one study and its N slots; all or nothing
        opened = open_study(storage_url, name, settings, space=space, heartbeat_s=heartbeat_s)
        top_up(opened.study, settings.n_trials)
    study = opened.study
    evaluator.share(study, opened.storage, store_dir(study, artifact_store, artifacts / "store"))
    evaluator.prepare()  # supernets are trained once, here, before workers start
    if together:
        runtime.barrier()
        if not runtime.is_main:
            return None  # rank 0 runs the trials and the rest
        evaluator.runtime = None  # scoring and fine-tuning: rank 0 alone
    children = []
    if jobs > 1:
        context = multiprocessing.get_context("spawn")
        for i in range(1, jobs):
            args = (storage_url, name, device, settings.seed + i, deadline, str(artifacts), heartbeat_s, settings.data)
            args += (str(evaluator.shared.directory),)
            children.append(context.Process(target=child_worker, args=args, daemon=True))
        for child in children:
            child.start()
    on_trial = progress.update if progress is not None else None
    try:
        guard = functools.partial(setup_lock, storage_url)  # a lost copy is queued under it (requeue_orphans)
        work(study, opened.storage, evaluator, deadline=deadline, wait=True, on_trial=on_trial, log=log, guard=guard)
    finally:
        for child in children:
            child.join()
        if progress is not None:
            progress.close()
    search_seconds = time.perf_counter() - start
    finetuned = evaluator.after_search(study)
    measure_target_latency(study, settings, space, log)
    summary = summarize(study, settings, finetuned=finetuned)
    summary["run"] = {"seconds": time.perf_counter() - start, "search_seconds": search_seconds, "jobs": jobs}
    # Every run of the command is kept with the study, so a report can say how long the study took.
    summary["run"]["machine"] = describe_machine(target)
    runs = [*study.user_attrs.get("runs", []), {**summary["run"], "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}]
    study.set_user_attr("runs", runs)
    summary["storage"] = redact(storage_url)
    report = write_summary(summary, artifacts)
    return StudyRun(study, settings, space, summary, report)
