"""The cost formulas applied to built modules: one adapter per layer kind, reading the module's attributes.

The walk over a network (:mod:`sparsearch.cost.walk`) and the thop hooks (:mod:`sparsearch.cost.verify`)
both call these, so a module is costed the same way wherever it is met. Shapes are given: the walk
takes them from the configuration's plan, the hooks from the tensors they see.
"""

from __future__ import annotations

from torch import nn

from sparsearch.cost.count import branch_module_cost, gateconnect_module_cost, topk_block_cost
from sparsearch.cost.formulas import routing_macs, routing_params
from sparsearch.layers import BranchModule, CondConv2d, CondLinear, GateConnectModule, QuestionGate, TopKBottleneck

__all__ = ["branch_cost", "condconv_macs", "condlinear_macs", "gateconnect_cost", "routing_cost", "topk_cost"]

Size = tuple[int, int]


def _scored(routing: nn.Module) -> int:
    """Logits a routing function computes (a SelectedRouting computes its source's)."""
    return getattr(routing, "computed_experts", routing.num_experts)


def routing_cost(routing: nn.Module, fin: int | None = None) -> tuple[int, int]:
    """(MACs, parameters) of a routing function reading ``fin`` features (default: its own width)."""
    args = (
        routing.name,
        routing.in_features if fin is None else fin,
        _scored(routing),
        routing.channels,
        routing.hidden,
    )
    return routing_macs(*args), routing_params(*args)


def topk_cost(block: TopKBottleneck, in_hw: Size, out_hw: Size) -> tuple[int, int, int]:
    """(dense MACs, executed MACs, parameters) of a top-k block."""
    gate, router = block.gate, block.expert_router
    return topk_block_cost(
        block.in_channels,
        block.out_channels,
        block.cardinality,
        block.width,
        block.k,
        block.experts,
        block.stride,
        in_hw,
        out_hw,
        gate.routing.name,
        gate.cond_dim if isinstance(gate, QuestionGate) else None,
        "sigmoid" if router is None else router.name,
        gate_logits=_scored(gate.routing),
        expert_logits=None if router is None else _scored(router),
    )


def gateconnect_cost(module: GateConnectModule, in_hw: Size, out_hw: Size) -> tuple[int, int]:
    """(MACs, parameters) of a GateConnect module."""
    return gateconnect_module_cost(
        module.in_channels,
        module.out_channels,
        module.cardinality,
        module.width,
        module.num_inputs,
        module.stride,
        in_hw,
        out_hw,
    )


def branch_cost(module: BranchModule, in_hw: Size, out_hw: Size) -> tuple[int, int]:
    """(MACs, parameters) of a compacted GateConnect module."""
    return branch_module_cost(
        module.in_channels,
        module.out_channels,
        module.branches,
        module.width,
        module.stride,
        in_hw,
        out_hw,
        module.conv_width,
    )


def condconv_macs(module: CondConv2d, out_hw: Size) -> int:
    """Mixed (inference) form: mix n kernels, one convolution, and the layer's own routing if any."""
    kernel = module.weight[0].numel()  # |W| = out · in/groups · kh · kw
    return module.num_experts * kernel + kernel * out_hw[0] * out_hw[1] + routing_cost(module.router)[0]


def condlinear_macs(module: CondLinear) -> int:
    """Mixed form: mix n weight matrices (and biases), one product, and the layer's routing."""
    n, fin, fout = module.num_experts, module.in_features, module.out_features
    return n * fin * fout + fin * fout + (n * fout if module.bias is not None else 0) + routing_cost(module.router)[0]
