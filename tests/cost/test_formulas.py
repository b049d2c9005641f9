from __future__ import annotations

import pytest
from torch import nn

from sparsearch.cost.formulas import (
    bn_params,
    conv_macs,
    conv_params,
    linear_macs,
    linear_params,
    routing_macs,
    routing_params,
)
from sparsearch.layers import create_routing


def test_formulas_show_their_arithmetic() -> None:
    assert conv_macs(64, 128, 3, (28, 28)) == 128 * 64 * 9 * 784 == 57802752
    assert conv_macs(128, 128, 3, (28, 28), groups=32) == 128 * 4 * 9 * 784 == 3612672
    assert routing_macs("softmax", 256, 32) == 256 * 32
    assert routing_macs("constant", 256, 32) == routing_params("constant", 256, 32) == 0
    assert routing_params("noisy_topk", 10, 4) == 2 * (10 * 4 + 4)  # gate and noise projections
    assert routing_macs("sigmoid", 64, 4, hidden="small") == 64 * 8 + 8 * 4


def test_parameter_formulas_equal_what_torch_allocates() -> None:
    def n(module: nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    assert conv_params(64, 128, 3) == n(nn.Conv2d(64, 128, 3, bias=False))
    assert conv_params(128, 128, 3, groups=32, bias=True) == n(nn.Conv2d(128, 128, 3, groups=32))
    assert linear_params(256, 10) == n(nn.Linear(256, 10)) and linear_params(256, 10, bias=False) == 2560
    assert bn_params(64) == n(nn.BatchNorm2d(64))
    assert linear_macs(256, 10) == 2560


@pytest.mark.parametrize("kind", ["softmax", "sigmoid", "relu_l1", "noisy_topk", "constant"])
@pytest.mark.parametrize(("channels", "hidden"), [(None, "none"), (None, "small"), (16, "none"), (None, "large")])
def test_routing_parameters_equal_the_built_routing_function(kind, channels, hidden) -> None:
    routing = create_routing(kind, 64, 4, channels=channels, hidden=hidden, k=2)
    assert routing_params(kind, 64, 4, channels, hidden) == sum(p.numel() for p in routing.parameters())
