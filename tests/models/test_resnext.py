from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from sparsearch.cost import count
from sparsearch.layers import TopKBottleneck
from sparsearch.models import NetConfig, SparseResNeXt, create_model, layout, model_names


def _flops(model: torch.nn.Module, *args: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter:
        model(*args)
    return counter.get_total_flops()


def _execution(model: torch.nn.Module, execution: str) -> torch.nn.Module:
    for m in model.modules():
        if isinstance(m, TopKBottleneck):
            m.execution = execution
    return model


SMALL = {  # every registered layout, small enough to run in a test, with conditional knobs on
    "clevr_cnn": dict(
        input_size=64,
        k={"conv2": 6, "conv3": 3, "conv4": 12},
        routing={"conv2": "softmax", "conv3": "relu_l1", "conv4": "constant"},
        experts={"conv3": 4},
    ),
    "gateconnect_cifar": dict(depth=20, width=4, fan_in=2, input_size=16, num_classes=10),
    "gateconnect_mini_imagenet": dict(depth=20, width=4, fan_in=1, input_size=24, num_classes=10),
    "resnext": dict(depth=[1, 1, 2, 1], cardinality=4, width=2, input_size=32, k={"conv3": 2}, routing="softmax"),
    "resnext50_32x4d": dict(input_size=32, k={"conv5": 8}, routing="relu_l1", num_classes=10),
    "resnext101_32x8d": dict(input_size=32, num_classes=10),
    "resnext101_64x4d": dict(input_size=32, k={"conv2": 16}, routing="softmax", num_classes=10),
    "resnext101_32x4d": dict(
        input_size=32,
        cardinality=4,
        k={"conv4": 2, "conv5": 1},
        routing="sigmoid",
        experts={"conv5": 2},
        num_classes=10,
    ),
}


def test_every_registered_resnext_layout_is_exercised() -> None:
    assert sorted(SMALL) == [name for name in model_names() if isinstance(layout(name), NetConfig)]


@pytest.mark.parametrize("name", sorted(SMALL))
def test_analytic_cost_equals_flop_counter_and_parameter_count(name: str) -> None:
    config = layout(name, **SMALL[name])
    model = SparseResNeXt(config).eval()
    x = torch.randn(2, 3, config.input_size, config.input_size)
    report = count(config)
    assert sum(p.numel() for p in model.parameters()) == report.params
    assert _flops(_execution(model, "sparse"), x) == 2 * report.executed_flops  # batch of 2
    assert _flops(_execution(model, "masked"), x) == 2 * report.dense_flops
    if name.startswith("gateconnect"):
        assert report.executed_flops == report.dense_flops  # every branch runs until pruned


def test_question_conditioned_gates_are_counted_too() -> None:
    config = layout("clevr_cnn", input_size=64, cond_dim=16, k=6, routing="relu_l1")
    model = SparseResNeXt(config).eval()
    x, q = torch.randn(3, 3, 64, 64), torch.randn(3, 16)
    assert _flops(model, x, q) == 3 * count(config).executed_flops
    assert sum(p.numel() for p in model.parameters()) == count(config).params


def test_all_knobs_off_is_the_plain_network() -> None:
    model = create_model("clevr_cnn", input_size=64)
    blocks = [m for m in model.modules() if isinstance(m, TopKBottleneck)]
    assert all(b.k == b.cardinality and b.experts == 1 for b in blocks)
    assert all(sum(p.numel() for p in b.gate.parameters()) == 0 for b in blocks)  # no gate at all
    report = count(layout("clevr_cnn", input_size=64))
    assert report.dense_macs == report.executed_macs


def test_outputs_and_training_step() -> None:
    model = create_model("gateconnect_cifar", depth=20, width=4, fan_in=2, input_size=16, num_classes=10)
    logits = model(torch.randn(4, 3, 16, 16))
    assert logits.shape == (4, 10)
    logits.sum().backward()
    features = create_model("resnext101_32x4d", input_size=64, cardinality=4, head="features")
    assert features(torch.randn(1, 3, 64, 64)).shape == (1, 2048, 2, 2)
    assert features.out_channels == 2048
    clevr = create_model("clevr_cnn", k=6, routing="softmax", input_size=64)
    out = clevr(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 24, 4, 4)  # the CLEVR CNN's 24-channel 1×1 head
    assert clevr.balance_loss().item() >= 0
