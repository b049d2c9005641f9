"""Modules of compacted models: what a GateConnect module, a gate or a routing function becomes once
its learned structure is fixed.

- :class:`BranchModule`: the live branches of a GateConnect module with their fixed inputs. Each branch
  averages its K kept inputs (a gather and K - 1 additions instead of the C × inputs gate product), and
  the three branch convolutions are grouped convolutions with one group per live branch.
- :class:`SelectedRouting`: a routing function whose outputs are restricted to kept experts (or
  paths). It still computes every logit, so normalised weights (softmax, L1) keep the values they had
  in the source model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sparsearch.layers import GateConnectModule
from sparsearch.layers.routing import RoutingOutput

__all__ = ["BranchModule", "SelectedRouting", "slice_bn"]


class BranchModule(nn.Module):
    """Live branches of a GateConnect module; ``(B, inputs, in, H, W) -> (B, branches, out, H', W')``.

    Args:
        in_channels, out_channels, width, stride: as in the source module.
        sources: for each kept branch, the input indices it averages (all branches read the same number).
        num_inputs: branches of the input tensor (1: a single tensor that every branch reads).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        width: int,
        stride: int,
        sources: list[list[int]],
        num_inputs: int,
    ) -> None:
        super().__init__()
        if not sources or len({len(s) for s in sources}) != 1 or not sources[0]:
            raise ValueError(f"every branch must read the same positive number of inputs, got {sources}")
        if any(not 0 <= i < num_inputs for s in sources for i in s):
            raise ValueError(f"source index out of range 0..{num_inputs - 1}: {sources}")
        n = len(sources)
        self.in_channels, self.out_channels, self.width, self.stride = in_channels, out_channels, width, stride
        self.conv_width = width  # outputs of each branch's 3×3 (differs from width after channel pruning)
        self.branches, self.num_inputs, self.fan_in = n, num_inputs, len(sources[0])
        self.register_buffer("source_index", torch.tensor([i for s in sources for i in s], dtype=torch.long))
        inner = n * width
        self.reduce = nn.Conv2d(n * in_channels, inner, 1, groups=n, bias=False)
        self.bn_reduce = nn.BatchNorm2d(inner)
        self.conv = nn.Conv2d(inner, inner, 3, stride, 1, groups=n, bias=False)
        self.bn_conv = nn.BatchNorm2d(inner)
        self.expand = nn.Conv2d(inner, n * out_channels, 1, groups=n, bias=False)
        self.bn_expand = nn.BatchNorm2d(n * out_channels)
        if stride != 1 or in_channels != out_channels:
            self.shortcut: nn.Module = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )
        else:
            self.shortcut = nn.Identity()

    @classmethod
    def from_module(
        cls, module: GateConnectModule, keep: list[int], sources: list[list[int]], num_inputs: int
    ) -> BranchModule:
        """The branches ``keep`` of ``module`` (its weights copied), reading ``sources`` out of ``num_inputs``."""
        new = cls(module.in_channels, module.out_channels, module.width, module.stride, sources, num_inputs)
        w, out = module.width, module.out_channels
        inner = torch.tensor([j * w + i for j in keep for i in range(w)])
        outer = torch.tensor([j * out + i for j in keep for i in range(out)])
        with torch.no_grad():
            for name, rows in (("reduce", inner), ("conv", inner), ("expand", outer)):
                getattr(new, name).weight.copy_(getattr(module, name).weight[rows])
            for name, rows in (("bn_reduce", inner), ("bn_conv", inner), ("bn_expand", outer)):
                setattr(new, name, slice_bn(getattr(module, name), rows))
            if not isinstance(module.shortcut, nn.Identity):
                new.shortcut.load_state_dict(module.shortcut.state_dict())
        return new.train(module.training)

    def forward(self, inputs: Tensor) -> Tensor:
        b, _, cin, h, w = inputs.shape
        n = self.branches
        if self.num_inputs == 1:  # a single tensor or a lone live branch: the source's ReLU, then every branch
            x = F.relu(inputs).expand(b, n, cin, h, w)
        else:
            x = inputs.index_select(1, self.source_index)  # (B, n·K, in, H, W)
            x = F.relu(x.view(b, n, self.fan_in, cin, h, w).mean(dim=2) if self.fan_in > 1 else x)
        residual = self.shortcut(x.reshape(b * n, cin, h, w))  # (B·n, out, H', W')
        y = F.relu(self.bn_reduce(self.reduce(x.reshape(b, n * cin, h, w))))
        y = F.relu(self.bn_conv(self.conv(y)))
        y = self.bn_expand(self.expand(y))  # (B, n·out, H', W')
        return y.view(b, n, self.out_channels, *y.shape[2:]) + residual.view(b, n, *residual.shape[1:])

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, branches={self.branches}, width={self.width}, "
            f"conv_width={self.conv_width}, "
            f"fan_in={self.fan_in}, num_inputs={self.num_inputs}, stride={self.stride}"
        )


@torch.no_grad()
def slice_bn(bn: nn.BatchNorm2d, rows: Tensor) -> nn.BatchNorm2d:
    """A batch norm over the channels ``rows`` of ``bn``: its affine parameters and statistics."""
    new = nn.BatchNorm2d(len(rows), bn.eps, bn.momentum)
    for key in ("weight", "bias", "running_mean", "running_var"):
        getattr(new, key).copy_(getattr(bn, key)[rows])
    new.num_batches_tracked.copy_(bn.num_batches_tracked)
    return new.train(bn.training)


class SelectedRouting(nn.Module):
    """``routing`` with its outputs restricted to the columns ``keep`` (experts or paths).

    Every logit is still computed, so the kept weights equal the source model's.
    """

    def __init__(self, routing: nn.Module, keep: list[int]) -> None:
        super().__init__()
        self.routing = routing
        self.register_buffer("keep", torch.tensor(keep, dtype=torch.long))
        self.name = routing.name
        self.has_parameters = routing.has_parameters
        self.in_features, self.num_experts = routing.in_features, len(keep)
        self.channels, self.hidden, self.k = routing.channels, routing.hidden, routing.k
        self.computed_experts = routing.num_experts  # logits computed: the source's count

    def forward(self, features: Tensor) -> RoutingOutput:
        weights, scores = self.routing(features)
        return RoutingOutput(weights.index_select(1, self.keep), scores.index_select(1, self.keep))
