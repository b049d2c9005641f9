"""Cost formulas of the sparse ResNeXt family: the stem, each top-k, GateConnect or branch block, the head."""

from __future__ import annotations

from sparsearch.config import BlockPlan, NetConfig, plan
from sparsearch.cost.count import (
    CostReport,
    LayerCost,
    gateconnect_module_cost,
    register_count,
    topk_block_cost,
)
from sparsearch.cost.formulas import (
    bn_params,
    conv_macs,
    conv_params,
    linear_macs,
    linear_params,
)

__all__ = ["count_resnext"]


def _block(b: BlockPlan, config: NetConfig) -> LayerCost:
    s = b.stage
    if s.multi_stream:
        macs, params = gateconnect_module_cost(
            b.in_channels, b.out_channels, s.cardinality, s.width, b.num_inputs, b.stride, b.in_size, b.out_size
        )
        return LayerCost(b.name, "gateconnect", macs, macs, params)
    dense, executed, params = topk_block_cost(
        b.in_channels,
        b.out_channels,
        s.cardinality,
        s.width,
        b.k,
        b.experts,
        b.stride,
        b.in_size,
        b.out_size,
        b.routing,
        config.cond_dim,
        config.expert_routing,
    )
    return LayerCost(b.name, "topk", dense, executed, params)


def count_resnext(config: NetConfig) -> CostReport:
    """Every row of a ResNeXt-family configuration, from its plan."""
    p = plan(config)
    c = config
    stem = conv_macs(c.in_channels, c.stem_channels, c.stem_kernel, p.stem_size)
    stem_params = conv_params(c.in_channels, c.stem_channels, c.stem_kernel) + bn_params(c.stem_channels)
    layers = [LayerCost("stem", "stem", stem, stem, stem_params)]
    for b in p.blocks:
        layers.append(_block(b, config))
    last = p.out_channels
    if c.head == "classifier":
        macs = linear_macs(last, c.num_classes)
        layers.append(LayerCost("head", "classifier", macs, macs, linear_params(last, c.num_classes)))
    elif c.head == "conv":
        macs = conv_macs(last, c.head_channels, 1, p.out_size)
        layers.append(
            LayerCost("head", "conv", macs, macs, conv_params(last, c.head_channels, 1) + bn_params(c.head_channels))
        )
    return CostReport(tuple(layers))


register_count(NetConfig, count_resnext)
