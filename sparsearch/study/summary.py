"""A study in numbers: counts, the Pareto set, the references and whether the search beats them; written
as ``pareto.json`` and ``pareto.md``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from sparsearch.safe_io import write_text
from sparsearch.study.evaluators import evaluator_class
from sparsearch.study.noise import Measurement, compare
from sparsearch.study.pareto import hypervolume, pareto_front
from sparsearch.study.progress import objective_cost, study_points
from sparsearch.study.settings import StudySettings
from sparsearch.study.tables import pareto_table, reference_lines

__all__ = ["markdown_summary", "summarize", "write_summary"]


def _trial_row(t: optuna.trial.FrozenTrial, finetuned: dict[str, Any], timed: dict[str, Any]) -> dict[str, Any]:
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
    if str(t.number) in timed:
        row["target_latency"] = timed[str(t.number)]  # batch -> ms, dense_ms, speedup (the target, measured)
    return row


def summarize(study: optuna.Study, settings: StudySettings, *, finetuned: dict[str, Any] | None = None) -> dict:
    """The study in numbers: counts, the Pareto set, references and whether the search beats them."""
    finetuned = finetuned if finetuned is not None else study.user_attrs.get("finetuned", {})
    trials = study.get_trials(deepcopy=False)
    complete = {t.number: t for t in trials if t.state == TrialState.COMPLETE}
    points = study_points(study)
    budget = settings.cost_budget  # of the second objective: FLOPs, or predicted ms
    front = pareto_front(points)
    timed = (study.user_attrs.get("target_latency") or {}).get("trials", {})
    rows = {n: _trial_row(complete[n], finetuned, timed) for n in complete}
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
        cost = objective_cost(complete[ref["number"]].values[1])  # FLOPs, or predicted ms
        own = Measurement(ref["number"], cost, complete[ref["number"]].user_attrs.get("proxy", {}))
        entry = {
            "reference": ref["reference"],
            "feasible": True,
            "number": ref["number"],
            "accuracy": ref["accuracy"],
            "flops": ref["target"]["executed_flops"],
            "at": settings.cost_name,  # the comparisons are at equal or lower cost of this kind
            **compare(measured, own),
        }
        if "finetuned" in ref:  # the fine-tuned comparison: fine-tuned Pareto configurations only
            against = compare(tuned, Measurement(ref["number"], cost, ref["finetuned"]))
            entry["finetuned_accuracy"] = ref["finetuned"]["accuracy"]
            entry["finetuned_beaten_by"] = against["beaten_by"]
            entry["finetuned_tied_with"] = against["tied_with"]
            entry["finetuned_best"] = against["best"]
        comparisons.append(entry)
    states = {s.name.lower(): sum(1 for t in trials if t.state == s) for s in TrialState}
    feasible = sum(1 for t in complete.values() if t.user_attrs.get("feasible"))
    scored_seconds = [t.user_attrs.get("seconds", 0.0) for t in complete.values() if t.user_attrs.get("feasible")]
    supernets = evaluator_class(settings.eval).supernet_seconds(complete.values())
    return {
        "study": study.study_name,
        "space": settings.space,
        "budget_flops": settings.flops_reference,
        "objective": {"name": settings.cost_name, "budget": budget},
        "budget": settings.budget.display,
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


def write_summary(summary: dict[str, Any], directory: Path) -> Path:
    """``pareto.json`` and ``pareto.md`` in ``directory`` (each written atomically); returns the .md."""
    write_text(directory / "pareto.json", json.dumps(summary, indent=2, allow_nan=False) + "\n")
    return write_text(directory / "pareto.md", markdown_summary(summary))


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
        *pareto_table(s["pareto"]),
        "",
        "## References",
        "",
        *reference_lines(s["references"]),
    ]
    sc = s["scoring"]
    if sc["per_minute"]:
        lines += ["", f"Scoring: {sc['configurations_scored']} configurations, {sc['per_minute']:.1f} per minute."]
    return "\n".join(lines) + "\n"
