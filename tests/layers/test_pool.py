"""The channels-last max-pool gives the plain max-pool's values and gradients, in the input's layout."""

from __future__ import annotations

import torch
from torch import nn

from sparsearch.layers.pool import ChannelsLastMaxPool2d


def test_values_and_gradients_equal_the_plain_max_pool() -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 8, 13, 11, dtype=torch.float64)
    x[0, 0, :3, :3] = 1.0  # ties inside one window
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    got, want = ChannelsLastMaxPool2d(3, 2, 1)(a), nn.MaxPool2d(3, 2, 1)(b)
    assert torch.equal(got, want) and got.is_contiguous()
    grad = torch.randn_like(want)
    got.backward(grad)
    want.backward(grad)
    assert torch.equal(a.grad, b.grad)
    last = x.contiguous(memory_format=torch.channels_last)
    assert torch.equal(ChannelsLastMaxPool2d(3, 2, 1)(last), want)
