"""Validate a finished study: train a sample of its configurations stand-alone and rank them again.

``sparsearch validate STUDY`` chooses N feasible configurations of the study (:func:`choose`): the one
the study recommends (its best score under the budget), the Pareto set and the feasible references,
configurations spread over the FLOPs range, and partners of near-equal cost (within the tolerance) for
the chosen ones. Each is trained from scratch with the study's proxy recipe for every seed and
evaluated on the **test** split, which the study never looked at. Each finished training is stored in
the study at once (user attribute ``validation:<key>``, one per training, so parallel trainings never
overwrite each other), and a killed validation resumes where it stopped;
the figures of :mod:`sparsearch.study.fidelity` are stored as ``fidelity``.
"""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import optuna
import torch
from optuna.trial import TrialState
from scipy import stats

from sparsearch.cost import count
from sparsearch.data import data_task
from sparsearch.errors import ConfigError
from sparsearch.limits import check_int
from sparsearch.spaces import Space
from sparsearch.study.fidelity import Measured, fidelity
from sparsearch.study.pareto import pareto_front
from sparsearch.study.progress import study_points
from sparsearch.study.queue import require_named_plugin
from sparsearch.study.session import open_study
from sparsearch.study.settings import StudySettings
from sparsearch.study.storage import sqlite_file
from sparsearch.study.structure import amount_parameters, uniform_label, uniform_values
from sparsearch.train.loop import evaluate, fit, resolve_device
from sparsearch.train.machine import describe_machine
from sparsearch.train.run import build_run
from sparsearch.train.runtime import Runtime
from sparsearch.train.settings import default_settings

__all__ = ["Candidate", "ValidationSettings", "choose", "run_validation", "uniform_partner", "welch_interval"]

ATTR_RUN = "validation:"  # study user attributes: one per finished stand-alone training, by key
ATTR_FIDELITY = "fidelity"  # study user attribute: the figures and how they were made


@dataclass(frozen=True)
class ValidationSettings:
    configs: int = 12  # configurations trained stand-alone
    seeds: int = 2  # trainings per configuration (seeds: the study's seed, +1, ...)
    epochs: int | None = None  # stand-alone epochs; None: the study's proxy epochs
    tolerance: float = 0.10  # relative FLOPs difference of an equal-cost pair

    def __post_init__(self) -> None:
        for key in ("configs", "seeds"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{key}={value!r} must be a positive integer")
        check_int("configs", self.configs, 1, 1_000)
        check_int("seeds", self.seeds, 1, 100)
        if self.configs < 3:
            raise ConfigError(f"configs={self.configs}: a rank correlation needs at least 3 configurations")
        if self.epochs is not None and (not isinstance(self.epochs, int) or self.epochs < 1):
            raise ConfigError(f"epochs={self.epochs!r} must be a positive integer")
        if self.epochs is not None:
            check_int("epochs", self.epochs)
        if not 0 < self.tolerance < 1:
            raise ConfigError(f"tolerance={self.tolerance!r} must be between 0 and 1")


@dataclass(frozen=True)
class Candidate:
    number: int  # the trial
    values: dict[str, Any]
    score: float  # the study's accuracy estimate
    flops: int  # target executed FLOPs
    reference: str | None = None
    pareto: bool = False


def candidates(study: optuna.Study) -> list[Candidate]:
    """The feasible complete trials of ``study``, one per distinct configuration, cheapest first."""
    front = {p.number for p in pareto_front(study_points(study))}
    seen, out = set(), []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if not t.user_attrs.get("feasible"):
            continue
        values = t.user_attrs["values"]
        key = tuple(sorted((k, str(v)) for k, v in values.items()))
        if key in seen:
            continue
        seen.add(key)
        flops = int(t.user_attrs["target"]["executed_flops"])
        out.append(Candidate(t.number, values, t.values[0], flops, t.user_attrs.get("reference"), t.number in front))
    return sorted(out, key=lambda c: (c.flops, c.number))


def recommended(pool: list[Candidate]) -> Candidate:
    """The study's answer at its budget: the best-scoring feasible configuration (the cheaper on a tie)."""
    return max(pool, key=lambda c: (c.score, -c.flops, -c.number))


def _near(a: int, b: int, tolerance: float) -> bool:
    return abs(a - b) <= tolerance * max(a, b)


def choose(pool: list[Candidate], n: int, tolerance: float) -> list[tuple[Candidate, str]]:
    """Up to ``n`` configurations of ``pool`` with why each was chosen, cheapest first.

    In order: the recommended one; the feasible references; the Pareto set (up to half of ``n`` with
    the above, spread over FLOPs where there are more); configurations closest to evenly spaced FLOPs quantiles (until
    two thirds of ``n``); then, for each chosen configuration in turn, the unchosen one of nearest
    FLOPs within ``tolerance`` (an equal-cost partner); then more quantile points. Deterministic.
    """
    if not pool:
        return []
    chosen: dict[int, tuple[Candidate, str]] = {}

    def add(c: Candidate, why: str) -> None:
        if len(chosen) < n and c.number not in chosen:
            chosen[c.number] = (c, why)

    add(recommended(pool), "recommended")
    for c in pool:
        if c.reference:
            add(c, f"reference {c.reference}")
    front = [c for c in pool if c.pareto and c.number not in chosen]
    cap = max(0, n // 2 - len(chosen))
    if len(front) > cap:
        front = [front[round(i * (len(front) - 1) / max(cap - 1, 1))] for i in range(cap)]
    for c in front:
        add(c, "Pareto")

    def spread(until: int) -> None:
        rest = [c for c in pool if c.number not in chosen]
        slots = until - len(chosen)
        if slots <= 0 or not rest:
            return
        for i in range(slots):
            target = pool[0].flops + (pool[-1].flops - pool[0].flops) * (i + 0.5) / slots
            left = [c for c in rest if c.number not in chosen]
            if not left:
                return
            add(min(left, key=lambda c: (abs(c.flops - target), c.number)), "FLOPs range")

    spread(max(len(chosen), -(-2 * n // 3)))
    for c, _ in list(chosen.values()):
        partners = [p for p in pool if p.number not in chosen and _near(p.flops, c.flops, tolerance)]
        if partners:
            partner = min(partners, key=lambda p: (abs(p.flops - c.flops), p.number))
            add(partner, f"equal cost with trial {c.number}")
    spread(n)
    return sorted(chosen.values(), key=lambda pair: (pair[0].flops, pair[0].number))


def _key(number: int, seed: int, epochs: int) -> str:
    return f"trial{number}-seed{seed}-epochs{epochs}"


def _uniform_key(label: str, seed: int, epochs: int) -> str:
    return f"{label.replace(' ', '')}-seed{seed}-epochs{epochs}"


def uniform_partner(space: Space, flops: int) -> tuple[dict[str, Any], int, str]:
    """The uniform configuration whose target costs nearest ``flops`` (the cheaper on a tie): every k
    (fan-in) at one fraction of its C, the reference structure, for each fraction the space allows
    anywhere; with its FLOPs and its label (``uniform k = 6/12``)."""
    amounts = amount_parameters(space)
    if not amounts:
        raise ConfigError(f"space {space.name} searches no k or fan-in: no uniform configuration to compare with")
    widest = max(max(allowed) for allowed in amounts.values())
    best = None
    for fraction in sorted({v / max(allowed) for allowed in amounts.values() for v in allowed}):
        values = uniform_values(space, fraction)
        cost = count(space.target_config(values)).executed_flops
        if best is None or (abs(cost - flops), cost) < (abs(best[1] - flops), best[1]):
            best = (values, cost, uniform_label(space, f"{fraction * widest:g}/{widest}"))
    assert best is not None
    return best


def welch_interval(a: tuple[float, ...], b: tuple[float, ...], level: float = 0.95) -> dict[str, float] | None:
    """mean(a) - mean(b) with its Welch t interval (scipy's); None with fewer than 2 seeds on a side."""
    if len(a) < 2 or len(b) < 2:
        return None
    difference = float(np.mean(a) - np.mean(b))
    if np.var(a) == 0 and np.var(b) == 0:  # no spread: scipy's interval is undefined
        return {"value": difference, "low": difference, "high": difference}
    interval = stats.ttest_ind(a, b, equal_var=False).confidence_interval(level)
    return {"value": difference, "low": float(interval.low), "high": float(interval.high)}


def pick_sentence(comparison: dict[str, Any]) -> str:
    """The study's pick against the uniform configuration of equal cost, in one sentence."""
    d = comparison["difference"]
    seeds = len(comparison["pick_accuracies"])
    head = (
        f" The study's pick (trial {comparison['pick']}, {comparison['pick_flops'] / 1e6:,.1f} MFLOPs) against "
        f"{comparison['uniform_label']} ({comparison['uniform_flops'] / 1e6:,.1f} MFLOPs), {seeds} seed(s) each: "
    )
    if comparison["same"]:
        return head + "the pick is that uniform configuration."
    if d is None:
        return (
            head
            + f"{100 * (comparison['pick_mean'] - comparison['uniform_mean']):+.1f} points (one seed: no interval)."
        )
    verdict = "ahead" if d["low"] > 0 else "behind" if d["high"] < 0 else "a tie within the seeds' noise"
    return head + f"{100 * d['value']:+.1f} points [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}], {verdict}."


def _accuracies(done: dict[str, Any], number: int, seeds: list[int], epochs: int) -> tuple[float, ...]:
    return tuple(done[_key(number, seed, epochs)]["test_accuracy"] for seed in seeds)


def _train_one(
    settings: StudySettings, space, values, seed: int, epochs: int, device, runtime: Runtime | None = None
) -> dict[str, Any]:
    """Train ``values`` from scratch with the study's proxy recipe at ``seed``; its test accuracy.
    ``runtime``: the processes of a ``torchrun`` job (data parallel), the precision, the loader workers."""
    data_spec = space.proxy.recipe(settings.data).data
    recipe = default_settings(data_task(data_spec), epochs=epochs, seed=seed, lr=settings.lr)
    start = time.perf_counter()
    _, datasets, model = build_run(space, values, recipe, data=data_spec)
    history = fit(model, datasets, recipe, device, runtime=runtime)
    test = evaluate(model, datasets.split("test"), datasets.task, recipe.eval_batch_size, device, runtime=runtime)
    return {
        "test_accuracy": test.accuracy,
        "test_examples": test.examples,
        "val_accuracy": history[-1].val_accuracy,
        "seconds": time.perf_counter() - start,
        "threads": torch.get_num_threads(),
    }


def _stored(study: optuna.Study) -> dict[str, Any]:
    """The finished trainings stored in ``study``, by key."""
    return {k[len(ATTR_RUN) :]: v for k, v in study.user_attrs.items() if k.startswith(ATTR_RUN)}


def _train_and_store(
    storage_url: str, name: str, key: str, values: dict, seed: int, epochs: int, device: str, threads: int
) -> str:
    """Train one configuration and store it under its own attribute (a worker process of ``--jobs``)."""
    torch.set_num_threads(threads)
    opened = open_study(storage_url, name, None)
    result = _train_one(opened.settings, opened.space, values, seed, epochs, resolve_device(device))
    opened.study.set_user_attr(ATTR_RUN + key, {"seed": seed, "epochs": epochs, **result})
    return key


def run_validation(
    storage_url: str,
    name: str,
    settings: ValidationSettings,
    *,
    device: str = "auto",
    jobs: int = 1,
    data: str | None = None,
    log=None,
    runtime: Runtime | None = None,
) -> dict[str, Any]:
    """Train the chosen configurations of study ``name`` (those not yet stored), then rank them.

    Under ``torchrun`` (``runtime`` with several processes) every process runs this, each training
    data-parallel; rank 0 alone stores the results, the others wait for each to be stored.

    ``jobs`` trainings run at once, each in its own process with its share of the CPU threads. A study
    on a data plug-in needs ``data`` naming it: the storage never chooses code to run. Returns what is
    stored as the study's ``fidelity`` attribute.
    """
    if not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"jobs={jobs!r} must be a positive integer")
    database = sqlite_file(storage_url)
    if database is not None and not database.is_file():  # opening it would create an empty file
        raise ConfigError(f"no study {name!r}: {database} does not exist (give its --storage)")
    opened = open_study(storage_url, name, None)
    study, study_settings, space = opened.study, opened.settings, opened.space
    require_named_plugin(name, study_settings, data)
    target = runtime.device if runtime is not None else resolve_device(device)
    if runtime is not None and runtime.world > 1 and jobs > 1:
        raise ConfigError("--jobs runs trainings side by side in one process each; under torchrun give --jobs 1")
    main_rank = runtime is None or runtime.is_main
    pool = candidates(study)
    if len(pool) < 3:
        raise ConfigError(f"study {name!r} has {len(pool)} feasible configuration(s); validation needs 3 or more")
    chosen = choose(pool, settings.configs, settings.tolerance)
    epochs = space.proxy.recipe(epochs=settings.epochs or study_settings.epochs).epochs
    settings = replace(settings, epochs=epochs)
    seeds = [study_settings.seed + i for i in range(settings.seeds)]
    say = log or (lambda message: None)
    stored = _stored(study)
    picked = recommended(pool)
    uniform, uniform_flops, uniform_name = uniform_partner(space, picked.flops)
    wanted = [(_key(c.number, seed, epochs), f"trial {c.number}", c.values, seed) for c, _ in chosen for seed in seeds]
    uniform_keys = [_uniform_key(uniform_name, seed, epochs) for seed in seeds]
    same = uniform == picked.values
    if not same:
        wanted += [(key, uniform_name, uniform, seed) for key, seed in zip(uniform_keys, seeds, strict=True)]
    todo = [(key, label, values, seed) for key, label, values, seed in wanted if key not in stored]
    total = len(wanted)
    if todo:
        say(
            f"{total - len(todo)} of {total} trainings stored; {len(todo)} to run "
            f"({jobs} at a time, {epochs} epoch(s) each)"
        )
    if jobs == 1:
        for i, (key, label, values, seed) in enumerate(todo, 1):
            say(f"[{i}/{len(todo)}] training {label} stand-alone, seed {seed}")
            result = _train_one(study_settings, space, values, seed, epochs, target, runtime)
            if main_rank:
                study.set_user_attr(ATTR_RUN + key, {"seed": seed, "epochs": epochs, **result})  # kept at once
            if runtime is not None:
                runtime.barrier()  # the others read it once it is stored
    elif todo:
        threads = max(1, torch.get_num_threads() // jobs)
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool_:
            futures = [
                pool_.submit(_train_and_store, storage_url, name, key, values, seed, epochs, str(target), threads)
                for key, _, values, seed in todo
            ]
            for i, future in enumerate(as_completed(futures), 1):
                say(f"[{i}/{len(todo)}] stored {future.result()}")
    done = _stored(optuna.load_study(study_name=name, storage=opened.storage))  # what the processes stored
    rows = [
        Measured(
            str(c.number), c.score, c.flops, tuple(done[_key(c.number, s, epochs)]["test_accuracy"] for s in seeds)
        )
        for c, _ in chosen
    ]
    figures = fidelity(rows, picked=str(picked.number), tolerance=settings.tolerance)
    pick_row = next(row for row in rows if row.key == str(picked.number))
    uniform_accuracies = pick_row.accuracies if same else tuple(done[key]["test_accuracy"] for key in uniform_keys)
    comparison = {
        "pick": picked.number,
        "pick_flops": picked.flops,
        "pick_accuracies": list(pick_row.accuracies),
        "pick_mean": pick_row.accuracy,
        "uniform": uniform,
        "uniform_label": uniform_name,
        "uniform_flops": uniform_flops,
        "uniform_accuracies": list(uniform_accuracies),
        "uniform_mean": float(np.mean(uniform_accuracies)),
        "same": same,
        "difference": None if same else welch_interval(pick_row.accuracies, uniform_accuracies),
    }
    figures["verdict"] += pick_sentence(comparison)
    result = {
        **figures,
        "pick_vs_uniform": comparison,
        "settings": asdict(settings),
        "split": "test",
        "recommended": picked.number,
        "configurations_validated": [
            {
                "trial": c.number,
                "why": why,
                "score": c.score,
                "flops": c.flops,
                "standalone": list(row.accuracies),
                "standalone_mean": row.accuracy,
                "values": c.values,
            }
            for (c, why), row in zip(chosen, rows, strict=True)
        ],
        "machine": describe_machine(target),
        "training_seconds": float(np.median([done[k]["seconds"] for k, *_ in wanted])),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if main_rank:
        study.set_user_attr(ATTR_FIDELITY, result)
    return result
