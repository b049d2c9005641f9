"""A supernet's top-k block switches experts and routing in place: each setting computes exactly what a
block built with it computes, given the same weights (float64, every execution, train and eval)."""

from __future__ import annotations

import pytest
import torch

from sparsearch.layers import TopKBottleneck

SHAPE = dict(in_channels=16, out_channels=24, cardinality=8, width=4, k=3, stride=2, cond_dim=6)
EXPERT_TENSORS = (
    "reduce.weight",
    "conv.weight",
    "expand.weight",
    "expert_router.trunk.weight",
    "expert_router.trunk.bias",
)


def _built_with(state: dict, experts: int, routing: str) -> TopKBottleneck:
    """A block built with ``experts`` and ``routing``, holding the supernet's first experts' weights."""
    block = TopKBottleneck(**SHAPE, routing=routing, experts=experts).double()
    mine = {}
    for key, value in state.items():
        if key in EXPERT_TENSORS:
            if experts == 1:
                if key.startswith("expert_router"):
                    continue
                value = value[0]
            else:
                value = value[:experts]
        mine[key] = value
    block.load_state_dict(mine)
    return block


def _forward(block: TopKBottleneck, x: torch.Tensor, cond: torch.Tensor, execution: str, train: bool) -> torch.Tensor:
    block.execution = execution
    block.train(train)
    return block(x, cond)


@pytest.mark.parametrize("experts", [1, 2, 4])
@pytest.mark.parametrize("routing", ["softmax", "sigmoid", "relu_l1"])
def test_a_switched_block_computes_what_a_block_built_with_the_setting_computes(experts, routing):
    torch.manual_seed(0)
    supernet = TopKBottleneck(**SHAPE, routing="softmax", experts=4).double()
    with torch.no_grad():  # batch-norm statistics away from their reset values
        for m in supernet.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    supernet.set_experts(experts)
    supernet.set_routing(routing)
    built = _built_with(supernet.state_dict(), experts, routing)
    x, cond = torch.randn(5, 16, 9, 9, dtype=torch.float64), torch.randn(5, 6, dtype=torch.float64)
    for execution in ("masked", "sparse"):
        for train in (True, False):
            got = _forward(supernet, x, cond, execution, train)
            want = _forward(built, x, cond, execution, train)
            torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_switching_back_restores_the_full_block_and_the_trunk_stays_one_set_of_weights():
    torch.manual_seed(1)
    block = TopKBottleneck(**SHAPE, routing="softmax", experts=4).double().eval()
    x, cond = torch.randn(3, 16, 9, 9, dtype=torch.float64), torch.randn(3, 6, dtype=torch.float64)
    before = block(x, cond)
    trunk = block.gate.routing.trunk
    block.set_routing("sigmoid")
    block.set_experts(1)
    assert block.gate.routing.trunk is trunk  # routing heads share the gate's trunk
    block.set_routing("softmax")
    block.set_experts(4)
    torch.testing.assert_close(block(x, cond), before, rtol=0, atol=0)
    assert sorted(n for n, _ in block.named_parameters()) == sorted(
        n for n, _ in TopKBottleneck(**SHAPE, routing="softmax", experts=4).named_parameters()
    )


def test_a_setting_the_block_cannot_hold_is_refused():
    block = TopKBottleneck(**SHAPE, routing="softmax", experts=2)
    with pytest.raises(ValueError, match=r"experts=4 must be in 1\.\.2"):
        block.set_experts(4)
    with pytest.raises(ValueError, match="cannot share the gate trunk"):
        block.set_routing("noisy_topk")  # a noise layer besides the trunk
    plain = TopKBottleneck(**SHAPE, routing="softmax")
    with pytest.raises(ValueError, match=r"must be in 1\.\.1"):
        plain.set_experts(2)
