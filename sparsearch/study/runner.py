"""Running a study: create or resume it, queue its trials, work through them, fine-tune, summarise.

A study of ``--trials N`` holds exactly N trial slots. They are queued (WAITING) when the study is
created or resumed: the reference trials first, then empty slots the sampler fills when a worker claims
them. Workers only claim queued trials and never create any, so N workers on one storage complete
exactly N trials between them. A trial whose worker died is marked failed once its heartbeat is stale
and a copy is queued in its place (the failed one no longer counts as a slot); the ``study`` command
waits for running trials and retries stale ones before it finishes.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from sparsearch.cost import format_flops
from sparsearch.data import is_plugin
from sparsearch.errors import ConfigError, WriteError
from sparsearch.spaces import parse_space
from sparsearch.study.noise import Measurement, compare, describe_comparison
from sparsearch.study.objective import Evaluator
from sparsearch.study.pareto import hypervolume, pareto_front
from sparsearch.study.progress import Progress, study_points
from sparsearch.study.settings import StudySettings
from sparsearch.study.storage import (
    HEARTBEAT_SECONDS,
    heartbeat,
    open_storage,
    pop_waiting_trial,
    redact,
    setup_lock,
)
from sparsearch.study.structure import ELASTIC, candidate_structures, describe, references
from sparsearch.train.loop import resolve_device
from sparsearch.train.machine import describe_machine

__all__ = ["StudyRun", "make_sampler", "open_study", "run_study", "run_worker", "study_settings", "summarize"]

ATTR = "sparsearch"  # study user attribute holding the StudySettings
# Options a re-run of a study may change; any other difference is a different study.
RUN_OPTIONS = ("trials", "finetune_steps", "finetune_top")


def make_sampler(name: str, seed: int | None) -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name == "tpe":
            return optuna.samplers.TPESampler(seed=seed, multivariate=True)
        if name == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=20)
        if name == "gp":
            return optuna.samplers.GPSampler(seed=seed)
        if name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
    raise ConfigError(f"sampler {name!r}; allowed: tpe, nsga2, gp, random")


def study_settings(study: optuna.Study) -> StudySettings:
    data = study.user_attrs.get(ATTR)
    if not isinstance(data, dict):
        raise ConfigError(f"study {study.study_name} was not created by sparsearch (no {ATTR!r} attribute)")
    return StudySettings.from_dict(data)


def study_space(settings: StudySettings):
    return parse_space(settings.space_text, settings.space_source)


def _slots(study: optuna.Study) -> int:
    """Trials that count towards --trials: all but those a retry has replaced."""
    trials = study.get_trials(deepcopy=False)
    replaced = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    return sum(1 for t in trials if t.number not in replaced)


def open_study(
    storage_url: str, name: str, settings: StudySettings | None, *, heartbeat_s: int = HEARTBEAT_SECONDS
) -> tuple[optuna.Study, StudySettings]:
    """Load study ``name``, or create it from ``settings`` (None: it must exist, as for a worker).

    A study that exists must have been created with the same settings, but for :data:`RUN_OPTIONS`.
    """
    storage = open_storage(storage_url, heartbeat_s)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        existing = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        existing = None
    if existing is None:
        if settings is None:
            raise ConfigError(f"no study named {name!r} in {redact(storage_url)}")
        sampler = make_sampler(settings.sampler, settings.seed)
        try:
            study = optuna.create_study(
                storage=storage, sampler=sampler, study_name=name, directions=["maximize", "minimize"]
            )
        except optuna.exceptions.DuplicatedStudyError:  # another process created it just now
            return open_study(storage_url, name, settings, heartbeat_s=heartbeat_s)
        study.set_user_attr(ATTR, settings.to_dict())
        study.set_user_attr("created", time.strftime("%Y-%m-%dT%H:%M:%S"))
        for ref in _reference_params(settings)[: settings.n_trials]:
            study.enqueue_trial(ref["params"], user_attrs={"reference": ref["name"]})
        return study, settings
    stored = study_settings(existing)
    if settings is not None:
        for key, value in settings.to_dict().items():
            if key not in RUN_OPTIONS and stored.to_dict()[key] != value:
                shown = "(another YAML)" if key == "space_text" else f"{key}={stored.to_dict()[key]!r}"
                raise ConfigError(
                    f"study {name!r} exists with {shown}; this run asks for "
                    f"{'a different space file' if key == 'space_text' else f'{key}={value!r}'}. "
                    "Use the same options to resume it, or another --study-name"
                )
        stored = stored.with_run_options(**{k: getattr(settings, k) for k in RUN_OPTIONS})
        existing.set_user_attr(ATTR, stored.to_dict())
    study = optuna.load_study(study_name=name, storage=storage, sampler=make_sampler(stored.sampler, stored.seed))
    return study, stored


def _reference_params(settings: StudySettings) -> list[dict[str, Any]]:
    space = study_space(settings)
    out = []
    first = candidate_structures(space)[0] if settings.eval == "supernet" else None
    for ref in references(space):
        params = dict(ref.values)
        if first is not None:  # supernet mode: the structure is one categorical parameter
            params = {k: v for k, v in params.items() if k.rsplit(".", 1)[-1] in ELASTIC}
            params["structure"] = first.label
        out.append({"name": ref.name, "params": params})
    return out


def top_up(study: optuna.Study, trials: int) -> int:
    """Queue empty trials until the study holds ``trials`` slots; returns how many were queued."""
    missing = trials - _slots(study)
    for _ in range(max(0, missing)):
        study.enqueue_trial({})
    return max(0, missing)


def _run_one(study: optuna.Study, trial: optuna.Trial, evaluator: Evaluator) -> None:
    try:
        values = evaluator(trial)
    except optuna.TrialPruned:
        study.tell(trial, state=TrialState.PRUNED)
    except KeyboardInterrupt:
        trial.set_user_attr("error", "interrupted")
        frozen = study.tell(trial, state=TrialState.FAIL)
        callback = study._storage.get_heartbeat_stale_trial_callback()  # queue its copy, as for a stale trial
        if callback is not None:
            callback(study, frozen)
        raise
    except Exception as err:  # the trial fails with its reason; the study goes on
        reason = f"{type(err).__name__}: {err}".splitlines()[0]
        trial.set_user_attr("error", reason[:500])
        study.tell(trial, state=TrialState.FAIL)
    else:
        if not all(math.isfinite(v) for v in values):  # Optuna would fail it too, without saying why
            trial.set_user_attr("error", f"non-finite objective values {list(values)}")
            study.tell(trial, state=TrialState.FAIL)
            return
        study.tell(trial, list(values))


def work(
    study: optuna.Study,
    evaluator: Evaluator,
    *,
    deadline: float | None = None,
    wait: bool = False,
    on_trial=None,
    poll_s: float = 2.0,
) -> int:
    """Claim and run queued trials until none is left (``wait``: and none is running anywhere), or the
    deadline passes. Returns the number of trials this worker ran."""
    storage = study._storage  # Optuna's storage wrapper: heartbeats go through it
    interval = storage.get_heartbeat_interval() or HEARTBEAT_SECONDS
    done = 0
    while deadline is None or time.time() < deadline:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)  # dead workers' trials: failed, and queued again
        trial_id = pop_waiting_trial(study)
        if trial_id is None:
            running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if not wait or not running:
                break
            time.sleep(poll_s)
            continue
        trial = optuna.Trial(study, trial_id)
        with heartbeat(storage, trial_id, interval):
            _run_one(study, trial, evaluator)
        done += 1
        if on_trial is not None:
            on_trial(study)
    return done


def _child_worker(
    storage_url: str,
    name: str,
    device: str,
    seed: int,
    deadline: float | None,
    artifacts: str,
    heartbeat_s: int,
    data: str | None,
) -> None:
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
    )


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
    deadline: float | None = None,
    artifacts: str | Path | None = None,
    log=None,
    heartbeat_s: int = HEARTBEAT_SECONDS,
    data: str | None = None,
) -> int:
    """Join study ``name`` and run its queued trials (``sparsearch worker``).

    A study on a data plug-in needs ``data`` naming the same plug-in: the storage never chooses code to run.
    """
    study, settings = open_study(storage_url, name, None, heartbeat_s=heartbeat_s)
    if data is not None and data.strip() != (settings.data or ""):
        used = repr(settings.data) if settings.data else "its space's proxy dataset"
        raise ConfigError(f"study {name!r} uses {used}, not --data {data!r}")
    require_named_plugin(name, settings, data)
    if seed is not None:
        study.sampler = make_sampler(settings.sampler, seed)
    space = study_space(settings)
    evaluator = Evaluator(settings, space, resolve_device(device), Path(artifacts or Path("studies") / name), log)
    return work(study, evaluator, deadline=deadline)


@dataclass
class StudyRun:
    study: optuna.Study
    settings: StudySettings
    summary: dict[str, Any]
    report: Path


def run_study(
    settings: StudySettings,
    *,
    storage_url: str,
    name: str,
    device: str = "auto",
    jobs: int = 1,
    timeout: float | None = None,
    artifacts: str | Path | None = None,
    progress: Progress | None = None,
    heartbeat_s: int = HEARTBEAT_SECONDS,
) -> StudyRun:
    """Create or resume the study, run it to its trial count (or ``timeout`` seconds), and summarise it."""
    if jobs < 1:
        raise ConfigError(f"jobs={jobs} must be a positive integer")
    start = time.perf_counter()
    deadline = None if timeout is None else time.time() + timeout
    target = resolve_device(device)
    artifacts = Path(artifacts or Path("studies") / name)
    log = progress.message if progress is not None else None
    # Refuse a space without k or fan-in (supernet mode) and data that does not load before anything is written.
    evaluator = Evaluator(settings, study_space(settings), target, artifacts, log)
    evaluator.data  # noqa: B018 (loads and checks the data; kept for the run)
    with setup_lock(storage_url):  # commands started together create one study and its N slots
        study, settings = open_study(storage_url, name, settings, heartbeat_s=heartbeat_s)
        top_up(study, settings.n_trials)
    if settings != evaluator.settings:  # defensive: a resumed study takes this run's options, so they match
        evaluator = Evaluator(settings, study_space(settings), target, artifacts, log)
    for structure in evaluator.structures:  # trained once, here, before workers start
        evaluator.supernet(structure)
    children = []
    if jobs > 1:
        context = multiprocessing.get_context("spawn")
        for i in range(1, jobs):
            args = (storage_url, name, device, settings.seed + i, deadline, str(artifacts), heartbeat_s, settings.data)
            children.append(context.Process(target=_child_worker, args=args, daemon=True))
        for child in children:
            child.start()
    on_trial = progress.update if progress is not None else None
    try:
        work(study, evaluator, deadline=deadline, wait=True, on_trial=on_trial)
    finally:
        for child in children:
            child.join()
        if progress is not None:
            progress.close()
    search_seconds = time.perf_counter() - start
    finetuned = _finetune(study, settings, evaluator, log) if settings.eval == "supernet" else {}
    summary = summarize(study, settings, finetuned=finetuned)
    summary["run"] = {"seconds": time.perf_counter() - start, "search_seconds": search_seconds, "jobs": jobs}
    # Every run of the command is kept with the study, so a report can say how long the study took.
    summary["run"]["machine"] = describe_machine(target)
    runs = [*study.user_attrs.get("runs", []), {**summary["run"], "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}]
    study.set_user_attr("runs", runs)
    summary["storage"] = redact(storage_url)
    report = write_summary(summary, artifacts)
    return StudyRun(study, settings, summary, report)


def _finetune(study: optuna.Study, settings: StudySettings, evaluator: Evaluator, log) -> dict[str, Any]:
    """Fine-tune the Pareto configurations (the cheapest first, at most ``finetune_top``) and the feasible
    references; kept in the study's ``finetuned`` attribute, so a resumed study does not redo them."""
    done: dict[str, Any] = dict(study.user_attrs.get("finetuned", {}))
    trials = {t.number: t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
    front = pareto_front(study_points(study))[: settings.finetune_top]
    chosen = [p.number for p in front] + [
        n for n, t in trials.items() if t.user_attrs.get("reference") and t.user_attrs.get("feasible")
    ]
    for number in dict.fromkeys(chosen):
        key = str(number)
        if key in done and done[key].get("steps") == settings.finetune_steps:
            continue
        if log is not None:
            log(f"fine-tuning trial {number} ({settings.finetune_steps} steps)")
        done[key] = evaluator.finetune(trials[number])
        study.set_user_attr("finetuned", done)
    return done


def _trial_row(t: optuna.trial.FrozenTrial, finetuned: dict[str, Any]) -> dict[str, Any]:
    proxy = t.user_attrs.get("proxy", {})
    row = {
        "number": t.number,
        "reference": t.user_attrs.get("reference"),
        "values": t.user_attrs.get("values"),
        "structure": t.params.get("structure"),
        "target": t.user_attrs.get("target"),
        "accuracy": t.values[0],
        "accuracy_error": proxy.get("standard_error"),
        "accuracy_split": proxy.get("split"),
        "proxy_flops": proxy.get("executed_flops"),
        "latency_ms": proxy.get("latency_ms"),
        "latency_batch": proxy.get("latency_batch"),
        "seconds": t.user_attrs.get("seconds"),
    }
    if str(t.number) in finetuned:
        row["finetuned"] = finetuned[str(t.number)]
    return row


def summarize(study: optuna.Study, settings: StudySettings, *, finetuned: dict[str, Any] | None = None) -> dict:
    """The study in numbers: counts, the Pareto set, references and whether the search beats them."""
    finetuned = finetuned if finetuned is not None else study.user_attrs.get("finetuned", {})
    trials = study.get_trials(deepcopy=False)
    complete = {t.number: t for t in trials if t.state == TrialState.COMPLETE}
    points = study_points(study)
    budget = settings.budget_flops
    front = pareto_front(points)
    rows = {n: _trial_row(complete[n], finetuned) for n in complete}
    refs = [rows[n] for n, t in complete.items() if t.user_attrs.get("reference")]
    searched = [p for p in points if not complete[p.number].user_attrs.get("reference")]
    comparisons = []
    measured = [
        Measurement(p.number, p.flops, complete[p.number].user_attrs.get("proxy", {"accuracy": p.accuracy}))
        for p in searched
    ]
    tuned = [
        Measurement(p.number, p.flops, rows[p.number]["finetuned"])
        for p in front
        if "finetuned" in rows[p.number] and not rows[p.number]["reference"]
    ]
    for ref in refs:
        if not complete[ref["number"]].user_attrs.get("feasible"):
            comparisons.append({"reference": ref["reference"], "feasible": False, "target": ref["target"]})
            continue
        flops = ref["target"]["executed_flops"]
        own = Measurement(ref["number"], flops, complete[ref["number"]].user_attrs.get("proxy", {}))
        entry = {
            "reference": ref["reference"],
            "feasible": True,
            "number": ref["number"],
            "accuracy": ref["accuracy"],
            "flops": flops,
            **compare(measured, own),
        }
        if "finetuned" in ref:  # the fine-tuned comparison: fine-tuned Pareto configurations only
            against = compare(tuned, Measurement(ref["number"], flops, ref["finetuned"]))
            entry["finetuned_accuracy"] = ref["finetuned"]["accuracy"]
            entry["finetuned_beaten_by"] = against["beaten_by"]
            entry["finetuned_tied_with"] = against["tied_with"]
            entry["finetuned_best"] = against["best"]
        comparisons.append(entry)
    states = {s.name.lower(): sum(1 for t in trials if t.state == s) for s in TrialState}
    feasible = sum(1 for t in complete.values() if t.user_attrs.get("feasible"))
    scored_seconds = [t.user_attrs.get("seconds", 0.0) for t in complete.values() if t.user_attrs.get("feasible")]
    supernets = {}
    if settings.eval == "supernet":
        for t in complete.values():
            proxy = t.user_attrs.get("proxy", {})
            if "supernet_train_seconds" in proxy:
                supernets[t.params["structure"]] = proxy["supernet_train_seconds"]
    return {
        "study": study.study_name,
        "space": settings.space,
        "budget_flops": budget,
        "budget": format_flops(budget),
        "eval": settings.eval,
        "sampler": settings.sampler,
        "objectives": ["proxy accuracy (max)", "target executed FLOPs per example (min)"],
        "units": "FLOPs per example = 2 x MACs; target = the space's target network, analytic",
        "trials": {
            "requested": settings.n_trials,
            **states,
            "feasible": feasible,
            "infeasible": len(complete) - feasible,
        },
        "scoring": {
            "configurations_scored": len(scored_seconds),
            "seconds_scoring": sum(scored_seconds),
            "per_minute": 60 * len(scored_seconds) / sum(scored_seconds) if sum(scored_seconds) else None,
        },
        "supernets": {"structures": sorted(supernets), "train_seconds": supernets},
        "hypervolume": hypervolume(points, budget),
        "pareto": [rows[p.number] for p in front],
        "references": comparisons,
    }


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:  # a full disk, a read-only directory
        Path(tmp).unlink(missing_ok=True)
        raise WriteError.of("file", path, err, existed=path.exists()) from err
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_summary(summary: dict[str, Any], directory: Path) -> Path:
    """``pareto.json`` and ``pareto.md`` in ``directory`` (each written atomically); returns the .md."""
    _atomic_write(directory / "pareto.json", json.dumps(summary, indent=2, allow_nan=False) + "\n")
    md = directory / "pareto.md"
    _atomic_write(md, markdown_summary(summary))
    return md


def markdown_summary(s: dict[str, Any]) -> str:
    t = s["trials"]
    lines = [
        f"# Study {s['study']}",
        "",
        f"Space `{s['space']}`, budget {s['budget']} per example (target network, analytic), "
        f"evaluation `{s['eval']}`, sampler `{s['sampler']}`.",
        "",
        f"Trials: {t['requested']} requested; {t['complete']} complete ({t['feasible']} feasible, "
        f"{t['infeasible']} over budget), {t['pruned']} stopped early, {t['fail']} failed. "
        f"Hypervolume {s['hypervolume']:.4f} (share of the accuracy × (1 − FLOPs/budget) box).",
        "",
        "## Pareto set (feasible trials)",
        "",
        "| trial | reference | target FLOPs | accuracy | fine-tuned accuracy | latency (ms) | configuration |",
        "| ---: | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in s["pareto"]:
        tuned = row.get("finetuned", {}).get("accuracy")
        latency = row.get("latency_ms")
        lines.append(
            f"| {row['number']} | {row['reference'] or ''} | {format_flops(row['target']['executed_flops'])} "
            f"| {row['accuracy']:.4f} | {'' if tuned is None else f'{tuned:.4f}'} "
            f"| {'' if latency is None else f'{latency:.1f}'} | {describe(row['values'])} |"
        )
    lines += ["", "## References", ""]
    for ref in s["references"]:
        if not ref["feasible"]:
            lines.append(f"- {ref['reference']}: over budget ({format_flops(ref['target']['executed_flops'])})")
            continue
        where = f"trial {ref['number']}, {format_flops(ref['flops'])}"
        text = f"- {ref['reference']} ({where}): accuracy {ref['accuracy']:.4f}"
        text += f"; searched trials at equal or fewer FLOPs: {describe_comparison(ref)}"
        if "finetuned_accuracy" in ref:
            text += (
                f"; fine-tuned {ref['finetuned_accuracy']:.4f}, against the fine-tuned Pareto configurations: "
                f"{describe_comparison(ref, 'finetuned_')}"
            )
        lines.append(text)
    sc = s["scoring"]
    if sc["per_minute"]:
        lines += ["", f"Scoring: {sc['configurations_scored']} configurations, {sc['per_minute']:.1f} per minute."]
    return "\n".join(lines) + "\n"
