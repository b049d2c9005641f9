"""The inference form (folded norms, fused epilogues, whole-path gathers, grouped paths) equals the network it
was folded from: in float64 to 1e-9, for every routing, experts, strides and shortcuts, both executions."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparsearch.layers import FusedTopKBottleneck, TopKBottleneck, routing_names
from sparsearch.layers.pool import ChannelsLastConvPool
from sparsearch.models.inference import for_inference

TOL = 1e-9


def _randomise_norms(model: nn.Module) -> None:
    """Non-trivial running statistics and affine parameters, so that every fold is exercised."""
    g = torch.Generator().manual_seed(11)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)


def _inputs(channels: int, batch: int = 5, size: int = 9, cond_dim: int | None = None):
    torch.manual_seed(3)
    # Per-example channel offsets make the pooled features, hence the chosen paths, differ.
    x = torch.randn(batch, channels, size, size) + 3 * torch.randn(batch, channels, 1, 1)
    cond = torch.randn(batch, cond_dim) if cond_dim else None
    return x.double(), None if cond is None else cond.double()


def _block(routing: str, k: int, *, experts: int = 1, stride: int = 1, cin: int = 16, cout: int = 16, cond=None):
    torch.manual_seed(0)
    block = TopKBottleneck(cin, cout, 6, 4, k, stride, routing, experts=experts, cond_dim=cond)
    _randomise_norms(block)
    return block.double().eval()


def _check(block: TopKBottleneck, x, cond, strategy: str, portable: bool = False) -> None:
    fused = FusedTopKBottleneck.from_block(block, strategy)
    fused.portable = portable
    with torch.no_grad():
        expected = block(x, cond)
        got = fused(x, cond)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert (got - expected).abs().max().item() <= TOL
    assert torch.equal(fused.last_gates.index, block.last_gates.index)


RANKING = [r for r in routing_names() if r != "constant"]


@pytest.mark.parametrize("strategy", ["gather", "grouped"])
@pytest.mark.parametrize("routing", RANKING)
def test_every_routing_k_below_and_at_c(routing: str, strategy: str) -> None:
    for k in (1, 3, 6):
        for execution in ("sparse", "masked"):
            block = _block(routing, k)
            block.execution = execution
            _check(block, *_inputs(16), strategy)


@pytest.mark.parametrize("strategy", ["gather", "grouped"])
@pytest.mark.parametrize("stride,cin,cout", [(1, 16, 16), (2, 16, 24), (1, 8, 16)], ids=["identity", "down", "wide"])
def test_strides_and_shortcuts(stride: int, cin: int, cout: int, strategy: str) -> None:
    _check(_block("softmax", 2, stride=stride, cin=cin, cout=cout), *_inputs(cin, size=10), strategy)


def test_constant_routing_is_the_plain_block() -> None:
    _check(_block("constant", 6), *_inputs(16), "gather")


@pytest.mark.parametrize("active", [1, 2, 3])
def test_condconv_experts_every_active_count(active: int) -> None:
    for k in (2, 6):
        block = _block("softmax", k, experts=3, stride=2, cout=24)
        block.set_experts(active)
        for strategy in ("gather", "grouped"):  # experts take the gather form in either
            _check(block, *_inputs(16), strategy)


def test_question_gate() -> None:
    block = _block("relu_l1", 2, cond=7)
    _check(block, *_inputs(16, cond_dim=7), "gather")
    _check(block, *_inputs(16, cond_dim=7), "grouped")


@pytest.mark.parametrize("experts", [1, 3])
def test_portable_3x3_equals(experts: int) -> None:
    _check(_block("softmax", 2, experts=experts, stride=2), *_inputs(16, size=7), "gather", portable=True)


def test_batch_one_and_uneven_paths() -> None:
    """Grouping pads every path to the fullest: one example, and a batch where one path takes all."""
    block = _block("softmax", 2)
    _check(block, *_inputs(16, batch=1), "grouped")
    x = torch.randn(1, 16, 9, 9).double().expand(4, -1, -1, -1).contiguous()  # every example picks alike
    _check(block, x, None, "grouped")


def test_refuses_training() -> None:
    fused = FusedTopKBottleneck.from_block(_block("softmax", 2))
    with pytest.raises(RuntimeError, match="for inference"):
        fused.train()
    with pytest.raises(ValueError, match="strategy"):
        FusedTopKBottleneck.from_block(_block("softmax", 2), "fast")


def _network(name: str = "default"):
    from sparsearch.models import build_model
    from sparsearch.spaces import get_space

    space = get_space(name)
    config = space.proxy_config(space.expand({"k": 2, "routing": "softmax"}))
    torch.manual_seed(0)
    model = build_model(config)
    _randomise_norms(model)
    return model.double().eval()


@pytest.mark.parametrize("strategy", ["gather", "grouped"])
def test_whole_network_stem_head_and_blocks(strategy: str) -> None:
    model = _network()
    fused = for_inference(model, strategy)
    kinds = [type(m) for m in fused.modules()]
    assert FusedTopKBottleneck in kinds and TopKBottleneck not in kinds
    from sparsearch.models import find_network

    inputs = tuple(t.double() if t.is_floating_point() else t for t in find_network(model).example_inputs(3))
    with torch.no_grad():
        expected, got = model(*inputs), fused(*inputs)
    assert (got - expected).abs().max().item() <= TOL
    assert any(p is not q for p, q in zip(model.parameters(), fused.parameters(), strict=False))  # a copy


def test_sequential_folds_conv_bn_and_moves_relu_after_the_pool() -> None:
    torch.manual_seed(0)
    seq = nn.Sequential(
        nn.Conv2d(3, 8, 3, 2, 1, bias=True), nn.BatchNorm2d(8), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)
    )
    _randomise_norms(seq)
    seq = seq.double().eval()
    fused = for_inference(seq)
    assert [type(m) for m in fused] == [ChannelsLastConvPool, nn.ReLU]
    x = torch.randn(2, 3, 17, 17).double()
    with torch.no_grad():
        assert (fused(x) - seq(x)).abs().max().item() <= TOL


def test_a_block_alone_and_a_user_sequential() -> None:
    block = _block("softmax", 2)
    fused = for_inference(block)
    assert isinstance(fused, FusedTopKBottleneck) and isinstance(block, TopKBottleneck)  # the source unchanged
    x, _ = _inputs(16)
    with torch.no_grad():
        assert (fused(x) - block(x)).abs().max().item() <= TOL
    torch.manual_seed(0)
    seq = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, groups=1), nn.BatchNorm2d(8, affine=False), nn.ReLU())
    seq = seq.double().eval()
    seq[1].running_mean.uniform_(-0.5, 0.5)
    seq[1].running_var.uniform_(0.5, 1.5)
    fused = for_inference(seq)
    assert [type(m) for m in fused] == [nn.Conv2d, nn.ReLU]
    x = torch.randn(2, 3, 9, 9).double()
    with torch.no_grad():
        assert (fused(x) - seq(x)).abs().max().item() <= TOL
