"""The grouped-branch trunk and the compacted branch module."""

from __future__ import annotations

import pytest
import torch

from sparsearch.layers import BranchModule, GateConnectModule


def _module(fan_in: int, num_inputs: int = 4) -> GateConnectModule:
    torch.manual_seed(0)
    m = GateConnectModule(8, 8, 4, 2, fan_in, num_inputs=num_inputs).eval()
    with torch.no_grad():
        for bn in (m.bn_reduce, m.bn_conv, m.bn_expand):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 1.5)
            bn.weight.uniform_(0.5, 1.5)
    return m


def test_a_branch_module_of_every_branch_computes_what_its_gateconnect_module_does() -> None:
    source = _module(2).double()
    source.freeze()
    sources = [source.connectivity_matrix()[j].nonzero().flatten().tolist() for j in range(4)]
    branches = BranchModule.from_module(source, [0, 1, 2, 3], sources, 4).double().eval()
    x = torch.randn(3, 4, 8, 6, 6, dtype=torch.float64)
    assert torch.allclose(branches(x), source(x), atol=1e-12)


def test_kept_branches_are_the_source_branches() -> None:
    source = _module(1).double()
    source.freeze()
    sources = [source.connectivity_matrix()[j].nonzero().flatten().tolist() for j in range(4)]
    kept = BranchModule.from_module(source, [1, 3], [sources[1], sources[3]], 4).double().eval()
    x = torch.randn(2, 4, 8, 5, 5, dtype=torch.float64)
    assert torch.allclose(kept(x), source(x)[:, [1, 3]], atol=1e-12)


def test_one_input_is_read_by_every_branch_through_the_relu() -> None:
    source = _module(1, num_inputs=1).double()
    kept = BranchModule.from_module(source, [0, 2], [[0], [0]], 1).double().eval()
    x = torch.randn(2, 1, 8, 5, 5, dtype=torch.float64)
    assert torch.allclose(kept(x), source(x)[:, [0, 2]], atol=1e-12)


def test_branches_must_read_equal_numbers_of_valid_inputs() -> None:
    with pytest.raises(ValueError, match="same positive number"):
        BranchModule(8, 8, 2, 1, [[0], [0, 1]], 2)
    with pytest.raises(ValueError, match="out of range"):
        BranchModule(8, 8, 2, 1, [[0], [2]], 2)
