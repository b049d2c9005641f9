"""Analytic cost of a built network, read from its modules: works for source and compacted models alike.

:func:`sparsearch.cost.count` reads a configuration; a compacted model no longer matches one (branches
removed, paths and experts kept or folded per block), so this walks the modules with the same formulas.
For an uncompacted network the two agree exactly (tested).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from sparsearch.config import condnet_plan
from sparsearch.cost.count import CostReport, LayerCost, count
from sparsearch.cost.formulas import bn_params, conv_macs, conv_params, linear_macs, linear_params
from sparsearch.cost.modules import (
    branch_cost,
    condconv_macs,
    condlinear_macs,
    gateconnect_cost,
    routing_cost,
    topk_cost,
)
from sparsearch.layers import BranchModule, CondConv2d, CondLinear, GateConnectModule
from sparsearch.models import CondNet, Network, SparseResNeXt, UserNetwork, find_network

__all__ = ["find_network", "network_cost", "register_walk"]

_WALKS: dict[type, Callable[[Any], CostReport]] = {}


def register_walk(network: type[Network], walk: Callable[[Any], CostReport]) -> None:
    """Count built networks of type ``network`` from their modules with ``walk(net)`` (a family whose
    modules compaction can change needs one; the others are counted from their configuration)."""
    _WALKS[network] = walk


def _resnext(net: SparseResNeXt) -> CostReport:
    base = count(net.config)  # the stem and head rows do not change
    rows = [base.layers[0]]
    for b, module in zip(net.plan.blocks, net.blocks.values(), strict=True):
        if isinstance(module, BranchModule):
            macs, params = branch_cost(module, b.in_size, b.out_size)
            rows.append(LayerCost(b.name, "branches", macs, macs, params))
        elif isinstance(module, GateConnectModule):
            macs, params = gateconnect_cost(module, b.in_size, b.out_size)
            rows.append(LayerCost(b.name, "gateconnect", macs, macs, params))
        else:
            dense, executed, params = topk_cost(module, b.in_size, b.out_size)
            rows.append(LayerCost(b.name, "topk", dense, executed, params))
    rows.extend(base.layers[len(rows) :])
    return CostReport(tuple(rows))


def _condnet(net: CondNet) -> CostReport:
    specs, _ = condnet_plan(net.config)
    rows = []
    for spec, block in zip(specs, net.layers, strict=True):
        macs = params = 0
        if block.router is not None:
            m, p = routing_cost(block.router, spec.convs[0].cin)
            macs, params = macs + m, params + p
        for c, hw, conv in zip(spec.convs, spec.conv_hw, block.convs, strict=True):
            weights = conv_params(c.cin, c.cout, c.kernel, c.groups)
            params += weights + bn_params(c.cout)
            if isinstance(conv, CondConv2d):
                macs += condconv_macs(conv, hw)
                params += (conv.num_experts - 1) * weights + routing_cost(conv.router)[1]
            else:
                macs += conv_macs(c.cin, c.cout, c.kernel, hw, c.groups)
        if spec.residual == "projection":
            macs += conv_macs(spec.convs[0].cin, spec.convs[-1].cout, 1, spec.out_hw)
            params += conv_params(spec.convs[0].cin, spec.convs[-1].cout, 1) + bn_params(spec.convs[-1].cout)
        cond = any(isinstance(conv, CondConv2d) for conv in block.convs)
        rows.append(LayerCost(spec.name, "condconv" if cond else "conv", macs, macs, params))
    head = net.classifier
    fin, fout = (head.in_features, head.out_features)
    macs, params = linear_macs(fin, fout), linear_params(fin, fout, head.bias is not None)
    if isinstance(head, CondLinear):
        macs = condlinear_macs(head)
        params = head.num_experts * params + routing_cost(head.router)[1]
    rows.append(
        LayerCost("classifier", "condlinear" if isinstance(head, CondLinear) else "classifier", macs, macs, params)
    )
    return CostReport(tuple(rows))


def _user(net: UserNetwork) -> CostReport:
    config = net.config
    rows = [LayerCost("rest", "measured", config.rest_macs, config.rest_macs, config.rest_params)]
    for b, module in zip(config.blocks, net.blocks().values(), strict=True):
        dense, executed, params = topk_cost(module, b.in_size, b.out_size)
        rows.append(LayerCost(b.name, "topk", dense, executed, params))
    return CostReport(tuple(rows))


register_walk(SparseResNeXt, _resnext)
register_walk(CondNet, _condnet)
register_walk(UserNetwork, _user)


def network_cost(model: nn.Module) -> CostReport:
    """MACs (dense and executed) and parameters per example of the model's network, from its modules
    (a family with no registered walk: from its configuration)."""
    net = find_network(model)
    for cls in type(net).__mro__:
        if cls in _WALKS:
            return _WALKS[cls](net)
    return count(net.config)
