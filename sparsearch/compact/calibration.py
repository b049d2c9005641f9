"""Usage of the conditional parts on calibration data, and the removals it justifies.

Run the source model in eval mode on calibration batches and record, per top-k block, how often each
path was selected, and per CondConv group (:func:`~sparsearch.models.edits.expert_groups`), the
routing weights of each expert (mean, standard deviation, minimum, maximum; per channel where the
routing is per channel). :func:`usage_edits` turns that into edits with their evidence:

- a path of a gated block that no calibration example selected is removed;
- a CondConv group whose every routing weight is constant within ``tolerance`` folds into plain layers
  with the mean weights (for softmax routing with one expert, the weight is exactly 1);
- otherwise, experts whose routing weight never reaches ``threshold`` are removed (at least one stays).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from sparsearch.layers import TopKBottleneck
from sparsearch.models.edits import Edit, expert_groups
from sparsearch.train.loop import forward_batch
from sparsearch.train.usage import RunningStats

__all__ = ["Calibration", "calibrate", "usage_edits"]


@dataclass
class Calibration:
    """What the source model did on the calibration batches."""

    examples: int
    outputs: list[Tensor]  # the model's outputs per batch (eval mode)
    selected: dict[str, Tensor] = field(default_factory=dict)  # top-k block -> (C,) selection counts
    routing: dict[str, RunningStats] = field(default_factory=dict)  # CondConv group -> routing weight statistics


@torch.no_grad()
def calibrate(model: nn.Module, batches: list, device: torch.device) -> Calibration:
    """Run ``model`` (eval) on ``batches`` and record path selections and expert routing weights."""
    model.eval()
    selected: dict[str, Tensor] = {}
    routing: dict[str, RunningStats] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, TopKBottleneck) and module.k < module.cardinality:
            selected[name] = torch.zeros(module.cardinality, dtype=torch.long)

            def on_block(m: TopKBottleneck, args: Any, out: Any, name: str = name) -> None:
                selected[name] += m.last_gates.mask.detach().sum(0).long().cpu()

            hooks.append(module.register_forward_hook(on_block))
    for name, (router, _) in expert_groups(model).items():
        routing[name] = RunningStats()

        def on_routing(m: nn.Module, args: Any, out: Any, name: str = name) -> None:
            routing[name].add(out.weights)

        hooks.append(router.register_forward_hook(on_routing))
    outputs, examples = [], 0
    try:
        for batch in batches:
            batch = batch.to(device)
            outputs.append(forward_batch(model, batch).detach().cpu())
            examples += len(batch)
    finally:
        for hook in hooks:
            hook.remove()
    return Calibration(examples, outputs, selected, routing)


def _rounded(t: Tensor) -> Any:
    return [round(float(v), 6) for v in t] if t.dim() == 1 else [_rounded(row) for row in t]


def usage_edits(calibration: Calibration, threshold: float, tolerance: float) -> list[Edit]:
    """Edits that usage justifies, each with its ``evidence``."""
    edits: list[Edit] = []
    for name, counts in calibration.selected.items():
        keep = [c for c, n in enumerate(counts.tolist()) if n > 0]
        if len(keep) < len(counts):
            evidence = {
                "examples": calibration.examples,
                "selected": counts.tolist(),
                "removed": [c for c in range(len(counts)) if c not in keep],
            }
            edits.append(Edit("paths", name, {"keep": keep}, evidence))
    for name, stats in calibration.routing.items():
        if stats.count == 0:
            continue
        evidence = {
            "examples": stats.count,
            "mean": _rounded(stats.mean),
            "std": _rounded(stats.std),
            "min": _rounded(stats.min),
            "max": _rounded(stats.max),
        }
        if float(stats.std.max()) <= tolerance:
            edits.append(Edit("fold", name, {"alpha": stats.mean.tolist()}, evidence))
            continue
        peak = stats.max if stats.max.dim() == 1 else stats.max.amax(dim=1)  # (n,) per expert
        keep = [i for i, v in enumerate(peak.tolist()) if v >= threshold] or [int(peak.argmax())]
        if len(keep) < len(peak):
            evidence["removed"] = [i for i in range(len(peak)) if i not in keep]
            evidence["threshold"] = threshold
            edits.append(Edit("experts", name, {"keep": keep}, evidence))
    return edits
