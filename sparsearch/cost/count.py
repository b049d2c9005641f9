"""Cost of a whole configuration from its shapes alone: no module is built.

``count(config)`` returns one row per part (stem, every block, head) with dense and executed MACs
and parameters; FLOPs are 2 × MACs. *Executed* is what runs per example (the top-k blocks' sparse
execution); *dense* runs every path (their masked execution). Both are per example.
"""

from __future__ import annotations

from dataclasses import dataclass

from sparsearch.cost.formulas import (
    bn_params,
    conv_macs,
    conv_params,
    linear_macs,
    linear_params,
    routing_macs,
    routing_params,
)
from sparsearch.models.config import BlockPlan, NetConfig, plan

__all__ = ["CostReport", "LayerCost", "count"]


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


def _topk_block(b: BlockPlan, config: NetConfig) -> LayerCost:
    s, cin, cout = b.stage, b.in_channels, b.out_channels
    c, d, k, n = s.cardinality, s.width, b.k, b.experts
    in_hw, out_hw = b.in_size, b.out_size
    # One path: 1×1 reduce at the input resolution, 3×3 and 1×1 expand at the output resolution.
    path = conv_macs(cin, d, 1, in_hw) + conv_macs(d, d, 3, out_hw) + conv_macs(d, cout, 1, out_hw)
    row = cin * d + d * d * 9 + d * cout  # one path's weights
    fixed = 0
    params = n * c * row + bn_params(c * d) * 2 + bn_params(cout)
    if b.stride != 1 or cin != cout:
        fixed += conv_macs(cin, cout, 1, out_hw)
        params += conv_params(cin, cout, 1) + bn_params(cout)
    if config.cond_dim is None:
        fixed += routing_macs(b.routing, cin, c)
        params += routing_params(b.routing, cin, c)
    else:
        fixed += _question_gate_macs(cin, config.cond_dim, c, b.routing, in_hw)
        params += _question_gate_params(cin, config.cond_dim, c, b.routing)
    if n > 1:  # CondConv paths: the block's expert routing, and mixing n kernels per example
        fixed += routing_macs(config.expert_routing, cin, n)
        params += routing_params(config.expert_routing, cin, n)
        return LayerCost(b.name, "topk", c * path + n * c * row + fixed, k * path + n * k * row + fixed, params)
    return LayerCost(b.name, "topk", c * path + fixed, k * path + fixed, params)


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


def _gateconnect_module(b: BlockPlan) -> LayerCost:
    s, cin, cout = b.stage, b.in_channels, b.out_channels
    c, w = s.cardinality, s.width
    in_hw, out_hw = b.in_size, b.out_size
    # x_j = Σ_k g_jk y_k as executed: a (C × inputs) matrix applied to every input element; a single
    # input is broadcast to the branches as it is.
    macs = c * b.num_inputs * cin * in_hw[0] * in_hw[1] if b.num_inputs > 1 else 0
    macs += c * (conv_macs(cin, w, 1, in_hw) + conv_macs(w, w, 3, out_hw) + conv_macs(w, cout, 1, out_hw))
    params = c * b.num_inputs + c * (cin * w + w * w * 9 + w * cout)  # gates and branch convolutions
    params += bn_params(c * w) * 2 + bn_params(c * cout)
    if b.stride != 1 or cin != cout:  # one projection, shared by the branches, applied to each
        macs += c * conv_macs(cin, cout, 1, out_hw)
        params += conv_params(cin, cout, 1) + bn_params(cout)
    return LayerCost(b.name, "gateconnect", macs, macs, params)


def count(config: NetConfig) -> CostReport:
    """MACs (dense and executed) and parameters of every part of ``config``, per example."""
    p = plan(config)
    c = config
    stem = conv_macs(c.in_channels, c.stem_channels, c.stem_kernel, p.stem_size)
    stem_params = conv_params(c.in_channels, c.stem_channels, c.stem_kernel) + bn_params(c.stem_channels)
    layers = [LayerCost("stem", "stem", stem, stem, stem_params)]
    for b in p.blocks:
        layers.append(_gateconnect_module(b) if b.stage.multi_stream else _topk_block(b, config))
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
