"""Analytic cost of a built network, read from its modules: works for source and compacted models alike.

:func:`sparsearch.cost.count` reads a configuration; a compacted model no longer matches one (branches
removed, paths and experts kept or folded per block), so this walks the modules with the same formulas.
For an uncompacted network the two agree exactly (tested).
"""

from __future__ import annotations

from torch import nn

from sparsearch.compact.modules import BranchModule
from sparsearch.cost import CostReport, LayerCost, count
from sparsearch.cost.count import branch_module_cost, gateconnect_module_cost, topk_block_cost
from sparsearch.cost.formulas import (
    bn_params,
    conv_macs,
    conv_params,
    linear_macs,
    linear_params,
    routing_macs,
    routing_params,
)
from sparsearch.layers import CondConv2d, CondLinear, GateConnectModule, QuestionGate, TopKBottleneck
from sparsearch.models import SparseResNeXt
from sparsearch.models.condconv_nets import CondNet, condnet_plan

__all__ = ["find_network", "network_cost"]


def find_network(model: nn.Module) -> SparseResNeXt | CondNet:
    """The CNN of a model: itself, or the backbone of a VQA model."""
    if isinstance(model, SparseResNeXt | CondNet):
        return model
    backbone = getattr(model, "backbone", None)
    if isinstance(backbone, SparseResNeXt):
        return backbone
    raise TypeError(f"no sparsearch network in {type(model).__name__}")


def _scored(routing: nn.Module) -> int:
    """Logits a routing function computes (a SelectedRouting computes its source's)."""
    return getattr(routing, "computed_experts", routing.num_experts)


def _routing(routing: nn.Module, fin: int) -> tuple[int, int]:
    args = (routing.name, fin, _scored(routing), routing.channels, routing.hidden)
    return routing_macs(*args), routing_params(*args)


def _topk(block: TopKBottleneck, in_hw: tuple[int, int], out_hw: tuple[int, int]) -> tuple[int, int, int]:
    gate = block.gate
    router = block.expert_router
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


def _resnext(net: SparseResNeXt) -> CostReport:
    base = count(net.config)  # the stem and head rows do not change
    rows = [base.layers[0]]
    for b, module in zip(net.plan.blocks, net.blocks.values(), strict=True):
        if isinstance(module, BranchModule):
            macs, params = branch_module_cost(
                module.in_channels,
                module.out_channels,
                module.branches,
                module.width,
                module.stride,
                b.in_size,
                b.out_size,
                module.conv_width,
            )
            rows.append(LayerCost(b.name, "branches", macs, macs, params))
        elif isinstance(module, GateConnectModule):
            macs, params = gateconnect_module_cost(
                module.in_channels,
                module.out_channels,
                module.cardinality,
                module.width,
                module.num_inputs,
                module.stride,
                b.in_size,
                b.out_size,
            )
            rows.append(LayerCost(b.name, "gateconnect", macs, macs, params))
        else:
            dense, executed, params = _topk(module, b.in_size, b.out_size)
            rows.append(LayerCost(b.name, "topk", dense, executed, params))
    rows.extend(base.layers[len(rows) :])
    return CostReport(tuple(rows))


def _condnet(net: CondNet) -> CostReport:
    specs, _ = condnet_plan(net.config)
    rows = []
    for spec, block in zip(specs, net.layers, strict=True):
        macs = params = 0
        if block.router is not None:
            m, p = _routing(block.router, spec.convs[0].cin)
            macs, params = macs + m, params + p
        for c, hw, conv in zip(spec.convs, spec.conv_hw, block.convs, strict=True):
            weights = conv_params(c.cin, c.cout, c.kernel, c.groups)
            macs += conv_macs(c.cin, c.cout, c.kernel, hw, c.groups)
            params += weights + bn_params(c.cout)
            if isinstance(conv, CondConv2d):
                n = conv.num_experts
                macs += n * weights
                params += (n - 1) * weights
                if conv.router.name != "constant":
                    m, p = _routing(conv.router, c.cin)
                    macs, params = macs + m, params + p
        if spec.residual == "projection":
            macs += conv_macs(spec.convs[0].cin, spec.convs[-1].cout, 1, spec.out_hw)
            params += conv_params(spec.convs[0].cin, spec.convs[-1].cout, 1) + bn_params(spec.convs[-1].cout)
        cond = any(isinstance(conv, CondConv2d) for conv in block.convs)
        rows.append(LayerCost(spec.name, "condconv" if cond else "conv", macs, macs, params))
    head = net.classifier
    fin, fout = (head.in_features, head.out_features)
    macs, params = linear_macs(fin, fout), linear_params(fin, fout, head.bias is not None)
    if isinstance(head, CondLinear):
        n = head.num_experts
        m, p = _routing(head.router, fin)
        macs += n * fin * fout + (n * fout if head.bias is not None else 0) + m
        params = n * params + p
    rows.append(
        LayerCost("classifier", "condlinear" if isinstance(head, CondLinear) else "classifier", macs, macs, params)
    )
    return CostReport(tuple(rows))


def network_cost(model: nn.Module) -> CostReport:
    """MACs (dense and executed) and parameters per example of the model's network, from its modules."""
    net = find_network(model)
    return _resnext(net) if isinstance(net, SparseResNeXt) else _condnet(net)
