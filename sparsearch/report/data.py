"""Everything a study report shows, read from the study's storage as plain JSON-ready numbers.

The report adds to the study's summary (:func:`sparsearch.study.summary.summarize`: the Pareto set,
the references, the hypervolume) what the plots need: every trial as a point, the hypervolume after
each finished trial, Optuna's parameter importances for both objectives, the Pareto configurations'
knob values per layer, and what a reader needs to judge the numbers (units, target vs proxy, the split
accuracy comes from, the study's size and time). Nothing here depends on when the report is made, so
regenerating it gives the same files.
"""

from __future__ import annotations

import warnings
from typing import Any

import optuna
from optuna.trial import TrialState

from sparsearch.errors import ConfigError
from sparsearch.spaces import Space
from sparsearch.spaces.registry import stored_space
from sparsearch.spaces.space import knob_of
from sparsearch.study.evaluators import evaluator_class
from sparsearch.study.pareto import Point, hypervolume
from sparsearch.study.progress import objective_cost
from sparsearch.study.session import open_study
from sparsearch.study.settings import StudySettings
from sparsearch.study.storage import redact, sqlite_file
from sparsearch.study.structure import ELASTIC, describe
from sparsearch.study.summary import summarize

__all__ = ["FORMAT", "load_report_data", "report_data", "x_axis"]

FORMAT = "sparsearch-report"
NUMERIC_KNOBS = ("k", "experts", "fan_in")  # shown per layer in the configurations heatmap


def x_axis(data: dict[str, Any]) -> dict[str, Any]:
    """The figures' x axis: the study's second objective (target FLOPs, or predicted latency), its scale,
    unit, budget and label; ``key`` reads it from a point, ``target_key`` from a trial's target costs."""
    if data.get("objective", {}).get("name") == "predicted latency":
        return {
            "key": "predicted_ms",
            "target_key": "predicted_ms",
            "scale": 1.0,
            "unit": "ms",
            "budget": data["objective"]["budget"],
            "label": "target latency predicted by the latency table, ms (batch 1)",
        }
    scale, unit = (1e9, "GFLOPs") if data["budget_flops"] >= 1e9 else (1e6, "MFLOPs")
    return {
        "key": "flops",
        "target_key": "executed_flops",
        "scale": scale,
        "unit": unit,
        "budget": data["budget_flops"],
        "label": f"target executed {unit} per example (analytic)",
    }


def load_report_data(name: str, storage_url: str) -> dict[str, Any]:
    """Open study ``name`` in ``storage_url`` (read only) and gather its report."""
    database = sqlite_file(storage_url)
    if database is not None and not database.is_file():  # opening it would create an empty file
        raise ConfigError(f"no study {name!r}: {database} does not exist (give its --storage)")
    opened = open_study(storage_url, name, None, read_only=True)
    return report_data(opened.study, opened.settings, storage_url, space=opened.space)


def report_data(
    study: optuna.Study, settings: StudySettings, storage_url: str | None = None, *, space: Space | None = None
) -> dict[str, Any]:
    """The report of ``study``; ``space``: its space when the caller has parsed it already."""
    space = space or stored_space(settings.space_text, settings.space_source)
    summary = summarize(study, settings)
    trials = study.get_trials(deepcopy=False)
    if not any(t.state == TrialState.COMPLETE for t in trials):
        raise ConfigError(f"study {study.study_name} has no completed trial yet; nothing to report")
    finetuned = study.user_attrs.get("finetuned", {})
    points = [_point(t, finetuned) for t in trials if t.state.is_finished()]
    return {
        "format": FORMAT,
        **summary,
        "storage": redact(storage_url) if storage_url else None,
        "settings": {k: v for k, v in settings.to_dict().items() if k != "space_text"},
        "about": _about(space, settings, trials),
        "time": _time(study, trials),
        "points": points,
        "hypervolume_history": _history(trials, settings.cost_budget),
        "importances": _importances(trials),
        "configurations": _configurations(space, summary["pareto"]),
        "fidelity": study.user_attrs.get("fidelity"),  # sparsearch validate's figures, if it ran
    }


def _about(space, settings, trials) -> dict[str, Any]:
    """Units, target vs proxy, and where accuracy comes from."""
    proxy = space.proxy
    target = space.target_args
    splits = sorted({t.user_attrs.get("proxy", {}).get("split") for t in trials if t.user_attrs.get("proxy")})
    examples = sorted({t.user_attrs.get("proxy", {}).get("examples") for t in trials if t.user_attrs.get("proxy")})
    return {
        "space_description": space.description,
        "target": {
            "model": target.get("model") or f"{space.factory} (your network)",
            "factory": space.factory,
            "input_size": space.target_config().input_size,
            "what": "the space's target network; its executed FLOPs per example are counted analytically"
            + ("" if space.factory is None else " (the converted blocks; FlopCounterMode measured the rest)"),
        },
        "proxy": {
            "dataset": proxy.recipe(settings.data).data,
            "input_size": proxy.input_size,
            "width": proxy.width,
            "depth": list(proxy.depth) if proxy.depth else None,
            "epochs": proxy.recipe(epochs=settings.epochs).epochs,
            "what": (
                "a narrow, shallow network of the same family, trained on the proxy data; it gives accuracy"
                if space.factory is None
                else "your network at the proxy's input size, "
                + ("fine-tuned from its weights" if proxy.pretrained else "trained from scratch")
                + " on the proxy data; it gives accuracy"
            ),
        },
        "accuracy": {
            "objective": "proxy accuracy on the validation split (the test split is never used by a study)",
            "splits": [s for s in splits if s],
            "examples": [e for e in examples if e],
            "finetuned": evaluator_class(settings.eval).finetuning(settings),
        },
        "units": {
            "flops": "FLOPs per example = 2 x MACs (one multiply-add = 2 FLOPs)",
            "executed": "executed FLOPs: only the k selected paths of a top-k block count; every GateConnect "
            "branch counts until sparsearch prune removes the dead ones",
            "latency": "median milliseconds of one forward pass of the proxy in sparse execution",
        },
        "settings": {
            "seed": settings.seed,
            "sampler": settings.sampler,
            "eval": settings.eval,
            "supernets": evaluator_class(settings.eval).shown_settings(settings).get("supernets"),
            "score_examples": settings.score_examples,
            "latency_batch": settings.latency_batch,
        },
    }


def _time(study: optuna.Study, trials) -> dict[str, Any]:
    runs = study.user_attrs.get("runs", [])
    supernets: dict[str, float] = {}
    for t in trials:
        seconds = t.user_attrs.get("proxy", {}).get("supernet_train_seconds")
        if seconds is not None:
            supernets[t.params.get("structure", "shared")] = seconds
    return {
        "created": study.user_attrs.get("created"),
        "runs": runs,
        "seconds": sum(r.get("seconds", 0.0) for r in runs) if runs else None,
        "trial_seconds": sum(t.user_attrs.get("seconds", 0.0) for t in trials),
        "supernet_seconds": supernets,
    }


def _point(t: optuna.trial.FrozenTrial, finetuned: dict[str, Any]) -> dict[str, Any]:
    target = t.user_attrs.get("target", {})
    proxy = t.user_attrs.get("proxy", {})
    complete = t.state == TrialState.COMPLETE
    tuned = finetuned.get(str(t.number), {}).get("accuracy")
    return {
        "number": t.number,
        "state": t.state.name.lower(),
        "feasible": bool(t.user_attrs.get("feasible")),
        "reference": t.user_attrs.get("reference"),
        "accuracy": t.values[0] if complete and t.user_attrs.get("feasible") else None,
        "finetuned_accuracy": tuned,
        "flops": target.get("executed_flops"),
        "predicted_ms": target.get("predicted_ms"),  # latency budgets: the latency table's prediction
        "macs": target.get("executed_macs"),
        "params": target.get("params"),
        "latency_ms": proxy.get("latency_ms"),
        "configuration": describe(t.user_attrs.get("values")),
        "error": t.user_attrs.get("error"),
    }


def _history(trials, budget: int) -> list[dict[str, Any]]:
    """The hypervolume after each finished trial, in the order they finished."""
    finished = sorted((t for t in trials if t.state.is_finished()), key=lambda t: (t.datetime_complete, t.number))
    seen: list[Point] = []
    out = []
    for i, t in enumerate(finished, 1):
        if t.state == TrialState.COMPLETE and t.user_attrs.get("feasible"):
            seen.append(Point(t.number, t.values[0], objective_cost(t.values[1])))
        out.append({"finished": i, "trial": t.number, "hypervolume": hypervolume(seen, budget)})
    return out


def _importances(trials) -> dict[str, Any]:
    """Optuna's parameter importances (its default evaluator, PED-ANOVA) for each objective: accuracy
    over the feasible trials (the others were never trained), FLOPs over every completed trial."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    feasible = [t for t in complete if t.user_attrs.get("feasible")]
    out: dict[str, Any] = {}
    for key, chosen, index in (("accuracy", feasible, 0), ("flops", complete, 1)):
        out[key] = _importance(chosen, index)
    return out


def _importance(trials, index: int) -> dict[str, Any]:
    varied = sorted({p for t in trials for p in t.params if len({str(u.params.get(p)) for u in trials}) > 1})
    if len(trials) < 4 or not varied:
        return {"trials": len(trials), "values": {}, "note": "too few trials, or no parameter varied"}
    single = optuna.create_study(direction="maximize" if index == 0 else "minimize")
    single.add_trials(
        optuna.trial.create_trial(params=t.params, distributions=t.distributions, value=t.values[index]) for t in trials
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = optuna.importance.get_param_importances(single, params=varied)
    ordered = sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))
    return {"trials": len(trials), "evaluator": "PedAnovaImportanceEvaluator", "values": dict(ordered)}


def _configurations(space, pareto: list[dict[str, Any]]) -> dict[str, Any]:
    """The numeric knobs of the Pareto configurations, one column per layer parameter (``conv3.k``),
    with each value as a share of the largest allowed (k / C)."""
    allowed = space.parameters()
    columns = [key for key, values in allowed.items() if knob_of(key) in NUMERIC_KNOBS and len(values) > 1]
    rows = []
    for row in pareto:
        values = row.get("values") or {}
        rows.append(
            {
                "trial": row["number"],
                "values": [values.get(c) for c in columns],
                "share": [None if values.get(c) is None else values[c] / max(allowed[c]) for c in columns],
            }
        )
    return {
        "columns": columns,
        "maximum": [max(allowed[c]) for c in columns],
        "elastic": [knob_of(c) in ELASTIC for c in columns],
        "rows": rows,
    }
