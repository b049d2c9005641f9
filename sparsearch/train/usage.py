"""Per-layer usage statistics of the conditional parts, recorded while a model runs.

- top-k blocks: how often each path was selected and its mean gate value;
- CondConv experts: mean, standard deviation and maximum of each expert's routing weight;
- GateConnect modules: the connectivity used at inference.

Pruning reads these (paths never selected, experts whose weight stays low); reports show them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from sparsearch.layers import FusedTopKBottleneck, GateConnectModule, Routing, TopKBottleneck
from sparsearch.layers.controllers import ImageGate, QuestionGate

__all__ = ["RunningStats", "UsageRecorder"]


class RunningStats:
    """Per-column count, sum, sum of squares, minimum and maximum of weights added batch by batch
    (and, for top-k gates, how often each path was selected)."""

    def __init__(self) -> None:
        self.count = 0
        self.sum: Tensor | None = None
        self.sq: Tensor | None = None
        self.min: Tensor | None = None
        self.max: Tensor | None = None
        self.selected: Tensor | None = None

    def add(self, weights: Tensor, selected: Tensor | None = None) -> None:
        w = weights.detach().double().cpu()
        self.count += w.shape[0]
        s, q, lo, hi = w.sum(0), w.square().sum(0), w.min(0).values, w.max(0).values
        self.sum = s if self.sum is None else self.sum + s
        self.sq = q if self.sq is None else self.sq + q
        self.min = lo if self.min is None else torch.minimum(self.min, lo)
        self.max = hi if self.max is None else torch.maximum(self.max, hi)
        if selected is not None:
            sel = selected.detach().double().cpu().sum(0)
            self.selected = sel if self.selected is None else self.selected + sel

    @property
    def mean(self) -> Tensor:
        return self.sum / self.count

    @property
    def std(self) -> Tensor:
        return (self.sq / self.count - self.mean.square()).clamp_min(0).sqrt()


class UsageRecorder:
    """``with UsageRecorder(model) as usage: model(...)``; then ``usage.summary()``."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self._hooks: list[Any] = []
        self._topk: dict[str, tuple[TopKBottleneck, RunningStats]] = {}
        self._experts: dict[str, tuple[Routing, RunningStats]] = {}

    def __enter__(self) -> UsageRecorder:
        gate_routings = {id(m.routing) for m in self.model.modules() if isinstance(m, ImageGate | QuestionGate)}
        for name, module in self.model.named_modules():
            if isinstance(module, TopKBottleneck | FusedTopKBottleneck):  # trained, or in its inference form
                sums = RunningStats()
                self._topk[name] = (module, sums)
                self._hooks.append(module.register_forward_hook(self._topk_hook(sums)))
            elif isinstance(module, Routing) and id(module) not in gate_routings:
                sums = RunningStats()
                self._experts[name] = (module, sums)
                self._hooks.append(module.register_forward_hook(self._expert_hook(sums)))
        return self

    def __exit__(self, *exc: object) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()

    @staticmethod
    def _topk_hook(sums: RunningStats):
        def hook(module: TopKBottleneck, args: object, output: object) -> None:
            gates = module.last_gates
            if gates is not None:
                sums.add(gates.weights, gates.mask)

        return hook

    @staticmethod
    def _expert_hook(sums: RunningStats):
        def hook(module: Routing, args: object, output: Any) -> None:
            weights = output.weights
            sums.add(weights if weights.dim() == 2 else weights.mean(dim=2))  # per-channel: mean over channels

        return hook

    def summary(self) -> dict[str, Any]:
        """JSON-ready statistics; layers that never ran are left out."""

        def rounded(t: Tensor) -> list[float]:
            return [round(float(v), 6) for v in t]

        topk = {}
        for name, (module, s) in self._topk.items():
            if s.count:
                topk[name] = {
                    "k": module.k,
                    "cardinality": module.cardinality,
                    "examples": s.count,
                    "selected": [int(v) for v in s.selected],
                    "mean_gate": rounded(s.mean),
                }
        experts = {}
        for name, (_, s) in self._experts.items():
            if s.count:
                experts[name] = {
                    "experts": len(s.sum),
                    "examples": s.count,
                    "mean": rounded(s.mean),
                    "std": rounded(s.std),
                    "max": rounded(s.max),
                }
        gateconnect = {
            name: {
                "fan_in": m.fan_in,
                "frozen": m.frozen,
                "connectivity": m.connectivity_matrix().int().tolist(),
            }
            for name, m in self.model.named_modules()
            if isinstance(m, GateConnectModule)
        }
        return {"topk": topk, "experts": experts, "gateconnect": gateconnect}
