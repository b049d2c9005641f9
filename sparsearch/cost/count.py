"""Cost of a whole configuration from its shapes alone: no module is built.

``count(config)`` returns one row per part (stem, every block, head) with dense and executed MACs
and parameters; FLOPs are 2 × MACs. *Executed* is what runs per example (the top-k blocks' sparse
execution); *dense* runs every path (their masked execution). Both are per example.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sparsearch.config import NetworkFamily
from sparsearch.cost.formulas import (
    bn_params,
    conv_macs,
    conv_params,
    linear_params,
    routing_macs,
    routing_params,
)
from sparsearch.errors import ConfigError
from sparsearch.limits import MAX

__all__ = [
    "CostReport",
    "LayerCost",
    "branch_module_cost",
    "check_model_size",
    "check_params",
    "cost_summary",
    "count",
    "gateconnect_module_cost",
    "register_count",
    "topk_block_cost",
]


@dataclass(frozen=True)
class LayerCost:
    """One part of the network: MACs per example and parameters."""

    name: str
    kind: str  # "stem", "topk", "gateconnect", "classifier", "conv"
    dense_macs: int
    executed_macs: int
    params: int


@dataclass(frozen=True)
class CostReport:
    """Per-part costs and totals of one configuration (per example)."""

    layers: tuple[LayerCost, ...]

    @property
    def dense_macs(self) -> int:
        return sum(layer.dense_macs for layer in self.layers)

    @property
    def executed_macs(self) -> int:
        return sum(layer.executed_macs for layer in self.layers)

    @property
    def dense_flops(self) -> int:
        return 2 * self.dense_macs

    @property
    def executed_flops(self) -> int:
        return 2 * self.executed_macs

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)


def topk_block_cost(
    cin: int,
    cout: int,
    cardinality: int,
    width: int,
    k: int,
    experts: int,
    stride: int,
    in_hw: tuple[int, int],
    out_hw: tuple[int, int],
    routing: str,
    cond_dim: int | None = None,
    expert_routing: str = "sigmoid",
    gate_logits: int | None = None,
    expert_logits: int | None = None,
) -> tuple[int, int, int]:
    """(dense MACs, executed MACs, parameters) of one :class:`~sparsearch.layers.TopKBottleneck`.

    ``gate_logits`` and ``expert_logits``: paths and experts the routing functions score, when a
    compacted block keeps fewer than they score (default: ``cardinality`` and ``experts``).
    """
    c, d, n = cardinality, width, experts
    scored = gate_logits or c
    # One path: 1×1 reduce at the input resolution, 3×3 and 1×1 expand at the output resolution.
    path = conv_macs(cin, d, 1, in_hw) + conv_macs(d, d, 3, out_hw) + conv_macs(d, cout, 1, out_hw)
    row = cin * d + d * d * 9 + d * cout  # one path's weights
    fixed = 0
    params = n * c * row + bn_params(c * d) * 2 + bn_params(cout)
    if stride != 1 or cin != cout:
        fixed += conv_macs(cin, cout, 1, out_hw)
        params += conv_params(cin, cout, 1) + bn_params(cout)
    if cond_dim is None:
        fixed += routing_macs(routing, cin, scored)
        params += routing_params(routing, cin, scored)
    else:
        fixed += _question_gate_macs(cin, cond_dim, scored, routing, in_hw)
        params += _question_gate_params(cin, cond_dim, scored, routing)
    if n == 1 and expert_logits is None:
        return c * path + fixed, k * path + fixed, params
    # CondConv paths: the block's expert routing; mixing n kernels per example (the chosen rows only
    # in the sparse execution, every row in the masked one).
    fixed += routing_macs(expert_routing, cin, expert_logits or n)
    params += routing_params(expert_routing, cin, expert_logits or n)
    return c * path + n * c * row + fixed, k * path + n * k * row + fixed, params


def _question_gate_macs(cin: int, q: int, paths: int, routing: str, hw: tuple[int, int]) -> int:
    cells = hw[0] * hw[1]
    attention = cells * (cin * q + q) + cells * cin  # image_att, att_logit per cell; weighted sum
    return attention + q * q + cin * q + routing_macs(routing, q, paths)  # question_att, image_proj


def _question_gate_params(cin: int, q: int, paths: int, routing: str) -> int:
    return (
        linear_params(cin, q, bias=False)
        + linear_params(q, q)
        + linear_params(q, 1)
        + linear_params(cin, q)
        + routing_params(routing, q, paths)
    )


def gateconnect_module_cost(
    cin: int,
    cout: int,
    cardinality: int,
    width: int,
    num_inputs: int,
    stride: int,
    in_hw: tuple[int, int],
    out_hw: tuple[int, int],
) -> tuple[int, int]:
    """(MACs, parameters) of one :class:`~sparsearch.layers.GateConnectModule`; every branch runs."""
    c, w = cardinality, width
    # x_j = Σ_k g_jk y_k as executed: a (C × inputs) matrix applied to every input element; a single
    # input is broadcast to the branches as it is.
    macs = c * num_inputs * cin * in_hw[0] * in_hw[1] if num_inputs > 1 else 0
    macs += c * (conv_macs(cin, w, 1, in_hw) + conv_macs(w, w, 3, out_hw) + conv_macs(w, cout, 1, out_hw))
    params = c * num_inputs + c * (cin * w + w * w * 9 + w * cout)  # gates and branch convolutions
    params += bn_params(c * w) * 2 + bn_params(c * cout)
    if stride != 1 or cin != cout:  # one projection, shared by the branches, applied to each
        macs += c * conv_macs(cin, cout, 1, out_hw)
        params += conv_params(cin, cout, 1) + bn_params(cout)
    return macs, params


def branch_module_cost(
    cin: int,
    cout: int,
    branches: int,
    width: int,
    stride: int,
    in_hw: tuple[int, int],
    out_hw: tuple[int, int],
    conv_width: int | None = None,
) -> tuple[int, int]:
    """(MACs, parameters) of a compacted GateConnect module (:class:`~sparsearch.layers.BranchModule`):
    ``branches`` live branches whose fixed input sums are gathers and additions (not counted).
    ``conv_width``: outputs of each branch's 3×3 when channel pruning made it differ from ``width``."""
    n, w, v = branches, width, conv_width or width
    macs = n * (conv_macs(cin, w, 1, in_hw) + conv_macs(w, v, 3, out_hw) + conv_macs(v, cout, 1, out_hw))
    params = n * (cin * w + w * v * 9 + v * cout) + bn_params(n * w) + bn_params(n * v) + bn_params(n * cout)
    if stride != 1 or cin != cout:
        macs += n * conv_macs(cin, cout, 1, out_hw)
        params += conv_params(cin, cout, 1) + bn_params(cout)
    return macs, params


_COUNTERS: dict[type, Callable[[Any], CostReport]] = {}


def register_count(family: type[NetworkFamily], counter: Callable[[Any], CostReport]) -> None:
    """Count configurations of ``family`` with ``counter(config) -> CostReport`` (exact, from shapes)."""
    if not (isinstance(family, type) and issubclass(family, NetworkFamily)):
        raise TypeError(f"register_count takes a NetworkFamily subclass, got {family!r}")
    _COUNTERS[family] = counter


def count(config: NetworkFamily) -> CostReport:
    """MACs (dense and executed) and parameters of every part of ``config``, per example, by its family's
    registered formulas."""
    for cls in type(config).__mro__:
        if cls in _COUNTERS:
            return _COUNTERS[cls](config)
    known = ", ".join(sorted(c.__name__ for c in _COUNTERS))
    raise TypeError(f"no cost formulas registered for {type(config).__name__}; registered: {known}")


def check_params(params: int) -> int:
    """``params``, refused when a model of that many parameters would pass ``MAX["params"]``."""
    if params > MAX["params"]:
        raise ConfigError(
            f"the model would hold {params:,} parameters ({params * 4 / 2**30:.1f} GiB in float32); "
            f"the cap is {MAX['params']:,}"
        )
    return params


def check_model_size(config: NetworkFamily) -> int:
    """The parameters of ``config``, refused before anything is allocated when they pass ``MAX["params"]``."""
    return check_params(count(config).params)


def cost_summary(config: NetworkFamily, budget_flops: int | None = None) -> dict[str, object]:
    """What ``sparsearch flops --json`` prints for ``config``: every layer, the totals in FLOPs and
    MACs, and, given a budget, whether the executed FLOPs fit it."""
    report = count(config)
    result: dict[str, object] = {
        "input_size": config.input_size,
        "units": "per example; FLOPs = 2 x MACs",
        "layers": [
            {
                "name": layer.name,
                "kind": layer.kind,
                "dense_flops": 2 * layer.dense_macs,
                "executed_flops": 2 * layer.executed_macs,
                "dense_macs": layer.dense_macs,
                "executed_macs": layer.executed_macs,
                "params": layer.params,
            }
            for layer in report.layers
        ],
        "total": {
            "dense_flops": report.dense_flops,
            "executed_flops": report.executed_flops,
            "dense_macs": report.dense_macs,
            "executed_macs": report.executed_macs,
            "params": report.params,
        },
    }
    if budget_flops is not None:
        result["budget"] = {
            "flops": budget_flops,
            "within": report.executed_flops <= budget_flops,
            "margin_flops": budget_flops - report.executed_flops,
        }
    return result
