"""Cost formulas of seed 001's CondConv networks, from their block specs."""

from __future__ import annotations

from sparsearch.config import CondNetConfig, condnet_plan
from sparsearch.cost.count import CostReport, LayerCost, register_count
from sparsearch.cost.formulas import (
    bn_params,
    conv_macs,
    conv_params,
    linear_macs,
    linear_params,
    routing_macs,
    routing_params,
)

__all__ = ["count_condnet"]


def count_condnet(config: CondNetConfig) -> CostReport:
    """Seed 001's networks at inference (the mixed form: n·|W| MACs to mix each CondConv kernel)."""
    n, routing = config.experts, config.routing
    layers, head_in = condnet_plan(config)
    rows = []
    for spec in layers:
        macs = params = 0
        cond = n > 1 and spec.cond
        if cond and spec.shared_routing:
            macs += routing_macs(routing, spec.convs[0].cin, n)
            params += routing_params(routing, spec.convs[0].cin, n)
        for c, hw in zip(spec.convs, spec.conv_hw, strict=True):
            weights = conv_params(c.cin, c.cout, c.kernel, c.groups)
            macs += conv_macs(c.cin, c.cout, c.kernel, hw, c.groups)
            params += weights + bn_params(c.cout)
            if cond and c.cond:
                macs += n * weights  # mixing the n kernels of one example
                params += (n - 1) * weights
                if not spec.shared_routing:
                    macs += routing_macs(routing, c.cin, n)
                    params += routing_params(routing, c.cin, n)
        if spec.residual == "projection":
            macs += conv_macs(spec.convs[0].cin, spec.convs[-1].cout, 1, spec.out_hw)
            params += conv_params(spec.convs[0].cin, spec.convs[-1].cout, 1) + bn_params(spec.convs[-1].cout)
        rows.append(LayerCost(spec.name, "condconv" if cond else "conv", macs, macs, params))
    k = config.num_classes
    macs, params = linear_macs(head_in, k), linear_params(head_in, k)
    if n > 1:  # CondLinear: mix n weight matrices and biases, then one product; its own routing
        macs += n * head_in * k + n * k + routing_macs(routing, head_in, n)
        params = n * params + routing_params(routing, head_in, n)
    rows.append(LayerCost("classifier", "condlinear" if n > 1 else "classifier", macs, macs, params))
    return CostReport(tuple(rows))


register_count(CondNetConfig, count_condnet)
