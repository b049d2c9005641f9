"""The latency of the network that ships: each Pareto configuration and reference built as the *target*
(its real input size), timed against the dense target interleaved in one process, at batch 1 and the
study's other target batch sizes; stored with the study (``target_latency``) with the machine it ran on.

Both are timed in their inference form (:mod:`sparsearch.models.inference`: batch norms folded, epilogues
fused), as an inference engine would run either. Dense is the target with every knob off and its top-k blocks
in masked execution: the plain network one would run without sparsearch. Weights are random (latency does
not depend on them, but for which paths the gates pick, which does not change how many run).
"""

from __future__ import annotations

from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from sparsearch.layers import TopKBottleneck
from sparsearch.models import build_model, find_network
from sparsearch.models.inference import for_inference
from sparsearch.spaces import Space
from sparsearch.study.pareto import pareto_front
from sparsearch.study.progress import study_points
from sparsearch.study.settings import StudySettings
from sparsearch.train.latency import compare
from sparsearch.train.machine import describe_machine

__all__ = ["ATTR", "build_for_timing", "measure_target_latency"]

ATTR = "target_latency"
FORM = "inference"  # what is timed; figures stored before the inference form existed are timed again


def build_for_timing(config, dense: bool = False, inference: bool = True) -> torch.nn.Module:
    """``config`` built (seed 0) in eval, in its inference form unless ``inference`` is False
    (:func:`~sparsearch.models.inference.for_inference`); with ``dense``, its top-k blocks in masked execution:
    the plain network, one grouped convolution per block (with its norms folded too, in the inference form)."""
    torch.manual_seed(0)
    model = build_model(config).eval()
    if dense:
        for block in model.modules():
            if isinstance(block, TopKBottleneck):
                block.execution = "masked"
    return for_inference(model) if inference else model


def _call(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...]):
    def run():
        with torch.inference_mode():
            return model(*inputs)

    return run


def measure_target_latency(
    study: optuna.Study, settings: StudySettings, space: Space, log=None, rounds: int = 2
) -> dict[str, Any]:
    """Measure the Pareto configurations and the feasible references that are not measured yet on this
    machine in the inference form; returns (and stores) ``{"machine", "batches", "form", "trials": {number:
    {batch: figures}}}``."""
    machine = describe_machine()
    batches = list(settings.target_latency_batches)
    stored = study.user_attrs.get(ATTR) or {}
    same = (
        stored.get("machine", {}).get("cpu") == machine["cpu"]
        and stored.get("batches") == batches
        and stored.get("form") == FORM
    )
    done: dict[str, Any] = dict(stored.get("trials", {})) if same else {}
    trials = {t.number: t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
    chosen = [p.number for p in pareto_front(study_points(study))] + [
        n for n, t in trials.items() if t.user_attrs.get("reference") and t.user_attrs.get("feasible")
    ]
    todo = [n for n in dict.fromkeys(chosen) if str(n) not in done]
    if todo:
        dense_config = space.target_config()
        dense = build_for_timing(dense_config, dense=True)
        for number in todo:
            if log is not None:
                log(f"timing trial {number} as the target ({dense_config.input_size}x{dense_config.input_size})")
            config = space.target_config(trials[number].user_attrs["values"])
            model = build_for_timing(config)
            figures = {}
            for batch in batches:
                inputs = find_network(model).example_inputs(batch)  # what the family's network takes
                c = compare(_call(dense, inputs), _call(model, inputs), rounds=rounds)
                figures[str(batch)] = {
                    "ms": c.candidate.ms,
                    "iqr_ms": c.candidate.iqr * 1e3,
                    "dense_ms": c.reference.ms,
                    "speedup": c.ratio,
                    "threads": c.candidate.threads,
                }
            done[str(number)] = figures
            study.set_user_attr(ATTR, {"machine": machine, "batches": batches, "form": FORM, "trials": done})
    return {"machine": machine, "batches": batches, "form": FORM, "trials": done}
