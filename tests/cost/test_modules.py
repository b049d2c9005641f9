"""The module adapters cost a built module as the configuration count does."""

from __future__ import annotations

import torch

from sparsearch.config import layout, plan
from sparsearch.cost import count
from sparsearch.cost.modules import condconv_macs, gateconnect_cost, routing_cost, topk_cost
from sparsearch.layers import CondConv2d, create_routing
from sparsearch.models import build_model


def test_topk_and_gateconnect_adapters_equal_the_configuration_rows() -> None:
    for config in (
        layout("clevr_cnn", input_size=32, k=4, routing="softmax", cond_dim=8),
        layout("gateconnect_cifar", depth=20, fan_in=2, num_classes=10),
    ):
        net = build_model(config)
        rows = {row.name: row for row in count(config).layers}
        for b, module in zip(plan(config).blocks, net.blocks.values(), strict=True):
            row = rows[b.name]
            if config.stages[0].fan_in is None:
                assert topk_cost(module, b.in_size, b.out_size) == (row.dense_macs, row.executed_macs, row.params)
            else:
                assert gateconnect_cost(module, b.in_size, b.out_size) == (row.executed_macs, row.params)


def test_routing_and_condconv_adapters() -> None:
    routing = create_routing("softmax", 64, 4, hidden="small")
    assert routing_cost(routing) == (64 * 8 + 8 * 4, sum(p.numel() for p in routing.parameters()))
    layer = CondConv2d(8, 16, 3, padding=1, num_experts=4, routing="sigmoid")
    kernel = 16 * 8 * 9
    assert condconv_macs(layer, (10, 10)) == 4 * kernel + kernel * 100 + 8 * 4
    assert layer(torch.randn(2, 8, 10, 10)).shape == (2, 16, 10, 10)
