from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from sparsearch.layers import CondConv2d, CondLinear
from sparsearch.layers.condconv import pick_form

CONV_CASES = [
    dict(in_channels=16, out_channels=32, kernel_size=3, padding=1),
    dict(in_channels=16, out_channels=32, kernel_size=1),
    dict(in_channels=16, out_channels=24, kernel_size=3, stride=2, padding=1, groups=4),
    dict(in_channels=16, out_channels=16, kernel_size=3, padding=2, dilation=2, groups=16, bias=False),
    dict(in_channels=16, out_channels=32, kernel_size=(1, 3), padding=(0, 1), per_channel=True),
    dict(in_channels=8, out_channels=8, kernel_size=3, padding=1, routing="softmax", hidden="small"),
]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: f"k{c['kernel_size']}g{c.get('groups', 1)}")
@pytest.mark.parametrize("batch", [1, 5])
def test_mixed_kernel_form_equals_mixture_of_experts_form(case: dict, batch: int) -> None:
    layer = CondConv2d(**case, num_experts=4)
    x = torch.randn(batch, case["in_channels"], 9, 9)
    alpha = layer.route(x)
    layer.execution = "experts"
    experts = layer(x, alpha)
    layer.execution = "mixed"
    mixed = layer(x, alpha)
    assert experts.shape == mixed.shape
    assert (experts - mixed).abs().max() <= 1e-5
    # ... and both equal the definition Σ_i α_i (W_i * x + b_i), one convolution per expert.
    a = alpha if alpha.dim() == 3 else alpha[:, :, None].expand(-1, -1, layer.out_channels)
    reference = sum(
        a[:, i, :, None, None]
        * nn.functional.conv2d(
            x,
            layer.weight[i],
            None if layer.bias is None else layer.bias[i],
            layer.stride,
            layer.padding,
            layer.dilation,
            layer.groups,
        )
        for i in range(layer.num_experts)
    )
    assert (reference - mixed).abs().max() <= 1e-5


def test_gradients_agree_between_forms() -> None:
    layer = CondConv2d(8, 8, 3, padding=1, num_experts=4)
    x = torch.randn(3, 8, 6, 6)
    grads = []
    for form in ("experts", "mixed"):
        layer.zero_grad()
        layer.execution = form
        layer(x).square().sum().backward()
        grads.append([p.grad.clone() for p in layer.parameters()])
    for ga, gb in zip(*grads, strict=True):
        assert torch.allclose(ga, gb, atol=1e-4, rtol=1e-4)


def test_weight_and_routing_shapes() -> None:
    layer = CondConv2d(16, 32, 3, groups=2, num_experts=8)
    assert layer.weight.shape == (8, 32, 8, 3, 3)  # (n, out, in/groups, kh, kw)
    assert layer.bias.shape == (8, 32)
    assert layer.route(torch.randn(5, 16, 7, 7)).shape == (5, 8)
    per_channel = CondConv2d(16, 32, 3, per_channel=True, num_experts=8)
    assert per_channel.route(torch.randn(5, 16, 7, 7)).shape == (5, 8, 32)


def test_one_expert_with_constant_routing_equals_nn_conv2d() -> None:
    torch.manual_seed(1)
    conv = nn.Conv2d(16, 32, 3, stride=2, padding=1)
    torch.manual_seed(1)
    cond = CondConv2d(16, 32, 3, stride=2, padding=1, num_experts=1, routing="constant")
    assert torch.equal(cond.weight[0], conv.weight)  # same initialisation, draw for draw
    assert torch.equal(cond.bias[0], conv.bias)
    x = torch.randn(4, 16, 10, 10)
    for form in ("experts", "mixed"):
        cond.execution = form
        assert (cond(x) - conv(x)).abs().max() <= 1e-5


def test_each_expert_is_initialised_with_its_own_fan_in() -> None:
    layer = CondConv2d(16, 32, 3, num_experts=8)
    bound = 1 / math.sqrt(16 * 3 * 3)  # kaiming_uniform(a=√5) on one expert: 1/√fan_in = 1/12
    for i in range(8):
        w = layer.weight[i].abs().max().item()
        assert 0.95 * bound < w <= bound  # the whole 5-D tensor's fan (32·16·9) would give 0.0147
    assert layer.bias.abs().max().item() <= bound


def test_flop_counter_sees_one_convolution_per_example_in_mixed_form() -> None:
    layer = CondConv2d(16, 32, 3, padding=1, num_experts=4)
    x = torch.randn(2, 16, 8, 8)
    routing = 2 * 2 * 16 * 4  # Linear(16 -> 4) on the pooled input: 256
    bias_mix = 2 * 2 * 4 * 32  # α @ b: 512
    kernel = 32 * 16 * 3 * 3  # |W| = 4608
    conv = 2 * 2 * 64 * kernel  # one 3×3 conv per example on 8×8: 1179648
    counts = {}
    for form in ("mixed", "experts"):
        layer.execution = form
        with FlopCounterMode(display=False) as counter:
            layer(x)
        counts[form] = counter.get_total_flops()
    assert counts["mixed"] == routing + bias_mix + 2 * 2 * 4 * kernel + conv == 1254144  # + mixing n·|W|
    assert counts["experts"] == routing + bias_mix + 4 * conv + 2 * 2 * 4 * 32 * 64 == 4752128  # + α-sum


def test_auto_picks_mixed_for_convolutions_and_experts_for_batched_linear() -> None:
    assert pick_form(batch=1, experts=8, kernel_size=100, conv_macs=100) == "mixed"
    assert pick_form(batch=32, experts=8, kernel_size=100, conv_macs=100 * 49) == "mixed"
    assert pick_form(batch=32, experts=8, kernel_size=100, conv_macs=100) == "experts"
    assert pick_form(batch=32, experts=8, kernel_size=100, conv_macs=200) == "experts"  # 2·(800+200) > 1600
    assert pick_form(batch=32, experts=8, kernel_size=100, conv_macs=400) == "mixed"  # 2·(800+400) <= 3200


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("batch", [1, 6])
def test_cond_linear_forms_agree_and_match_the_definition(per_channel: bool, batch: int) -> None:
    layer = CondLinear(20, 12, num_experts=4, per_channel=per_channel)
    x = torch.randn(batch, 20)
    outs = []
    for form in ("experts", "mixed", "auto"):
        layer.execution = form
        outs.append(layer(x))
    a = layer.route(x)
    a = a if a.dim() == 3 else a[:, :, None].expand(-1, -1, 12)
    reference = sum(a[:, i] * nn.functional.linear(x, layer.weight[i], layer.bias[i]) for i in range(4))
    for out in outs:
        assert (out - reference).abs().max() <= 1e-5


def test_shared_routing_weights_and_bad_arguments() -> None:
    layer = CondConv2d(8, 8, 1, num_experts=4)
    x = torch.randn(2, 8, 3, 3)
    shared = torch.full((2, 4), 0.25)
    assert torch.allclose(
        layer(x, shared), nn.functional.conv2d(x, layer.weight.mean(0), layer.bias.mean(0)), atol=1e-6
    )
    message = r"routing weights must have shape \(2, 4\) or \(2, 4, 8\), got \(2, 3\)"
    with pytest.raises(ValueError, match=message):
        layer(x, torch.ones(2, 3))
    with pytest.raises(ValueError, match="num_experts must be a positive int, got num_experts=0"):
        CondConv2d(8, 8, 1, num_experts=0)
    with pytest.raises(ValueError, match="divisible by groups"):
        CondConv2d(8, 6, 1, groups=4)
    with pytest.raises(ValueError, match="execution must be one of"):
        CondLinear(8, 8, execution="fused")
