from __future__ import annotations

import pytest
import torch

from sparsearch.cost import count
from sparsearch.cost.verify import flop_counter_flops, thop_macs
from sparsearch.models import build_model, layout

CASES = {
    # static: every block runs all paths without a gate, thop counts the nn.Conv2d children itself
    "static resnext": dict(name="resnext101_32x4d", input_size=32, cardinality=4, num_classes=10),
    "static clevr": dict(name="clevr_cnn", input_size=64),
    # conditional: top-k, experts, question gates, GateConnect go through the formula hooks
    "topk+experts": dict(name="clevr_cnn", input_size=64, k=3, routing="softmax", experts={"conv3": 2}),
    "gateconnect": dict(name="gateconnect_cifar", depth=20, width=4, fan_in=2, input_size=16, num_classes=10),
    "cc_mobilenet_v2": dict(name="cc_mobilenet_v2", width=0.35, experts=4, input_size=64, num_classes=10),
    "cc_resnet50": dict(name="cc_resnet50", experts=2, input_size=32, num_classes=10),
    "static mobilenet_v1": dict(name="cc_mobilenet_v1", width=0.25, input_size=64, num_classes=10),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_analytic_flop_counter_and_thop_agree(case: str) -> None:
    args = dict(CASES[case])
    config = layout(args.pop("name"), **args)
    model = build_model(config).eval()
    x = torch.randn(1, 3, config.input_size, config.input_size)
    analytic = count(config).executed_flops
    assert flop_counter_flops(model, x) == analytic
    assert 2 * thop_macs(model, x) == analytic
    assert not any("total_ops" in m._buffers for m in model.modules())  # thop's counters removed
