"""Cost of a user's converted network: its blocks analytically, the rest as measured when it was read."""

from __future__ import annotations

from sparsearch.config import UserNetConfig
from sparsearch.cost.count import CostReport, LayerCost, register_count, topk_block_cost

__all__ = ["count_user"]


def count_user(config: UserNetConfig) -> CostReport:
    """A user's network: its converted blocks analytically, everything else as FlopCounterMode measured
    it when the factory's model was read (the ``rest`` row)."""
    rows = [LayerCost("rest", "measured", config.rest_macs, config.rest_macs, config.rest_params)]
    for b in config.blocks:
        dense, executed, params = topk_block_cost(
            b.in_channels,
            b.out_channels,
            b.cardinality,
            b.width,
            b.k,
            1,
            b.stride,
            b.in_size,
            b.out_size,
            b.routing,
        )
        rows.append(LayerCost(b.name, "topk", dense, executed, params))
    return CostReport(tuple(rows))


register_count(UserNetConfig, count_user)
