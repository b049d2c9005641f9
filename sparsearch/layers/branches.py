"""Grouped residual branches: the trunk a GateConnect module runs, and what it becomes once compacted.

- :class:`BranchTrunk`: n residual bottleneck branches (in -> w 1×1, w -> w 3×3, w -> out 1×1, BN,
  ReLU) run as three grouped convolutions over the stacked branch channels, with one shortcut shared
  by the branches (applied to each branch's input).
- :class:`BranchModule`: the live branches of a GateConnect module with their fixed inputs. Each branch
  averages its K kept inputs (a gather and K - 1 additions instead of the C × inputs gate product).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:
    from sparsearch.layers.gateconnect import GateConnectModule

__all__ = ["BranchModule", "BranchTrunk", "slice_bn"]


class BranchTrunk(nn.Module):
    """``branches`` residual bottlenecks as grouped convolutions: (B, n, in, H, W) -> (B, n, out, H', W')."""

    def __init__(self, in_channels: int, out_channels: int, branches: int, width: int, stride: int) -> None:
        super().__init__()
        inner = branches * width
        self.reduce = nn.Conv2d(branches * in_channels, inner, 1, groups=branches, bias=False)
        self.bn_reduce = nn.BatchNorm2d(inner)
        self.conv = nn.Conv2d(inner, inner, 3, stride, 1, groups=branches, bias=False)
        self.bn_conv = nn.BatchNorm2d(inner)
        self.expand = nn.Conv2d(inner, branches * out_channels, 1, groups=branches, bias=False)
        self.bn_expand = nn.BatchNorm2d(branches * out_channels)
        # One projection shared by the branches, so that a GateConnect module has the parameters of the
        # ResNeXt block it generalises (seed 003, Table 1: equal counts).
        if stride != 1 or in_channels != out_channels:
            self.shortcut: nn.Module = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )
        else:
            self.shortcut = nn.Identity()

    def run_branches(self, x: Tensor) -> Tensor:
        """Branch inputs (B, n, in, H, W) -> pre-activation outputs (B, n, out, H', W'): shortcut + F(x)."""
        b, n, cin, h, w = x.shape
        residual = self.shortcut(x.reshape(b * n, cin, h, w))  # (B·n, out, H', W')
        y = F.relu(self.bn_reduce(self.reduce(x.reshape(b, n * cin, h, w))))  # branches stacked on channels
        y = F.relu(self.bn_conv(self.conv(y)))
        y = self.bn_expand(self.expand(y))  # (B, n·out, H', W')
        return y.view(b, n, -1, *y.shape[2:]) + residual.view(b, n, *residual.shape[1:])


class BranchModule(BranchTrunk):
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
        if not sources or len({len(s) for s in sources}) != 1 or not sources[0]:
            raise ValueError(f"every branch must read the same positive number of inputs, got {sources}")
        if any(not 0 <= i < num_inputs for s in sources for i in s):
            raise ValueError(f"source index out of range 0..{num_inputs - 1}: {sources}")
        n = len(sources)
        super().__init__(in_channels, out_channels, n, width, stride)
        self.in_channels, self.out_channels, self.width, self.stride = in_channels, out_channels, width, stride
        self.conv_width = width  # outputs of each branch's 3×3 (differs from width after channel pruning)
        self.branches, self.num_inputs, self.fan_in = n, num_inputs, len(sources[0])
        self.register_buffer("source_index", torch.tensor([i for s in sources for i in s], dtype=torch.long))

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
        return self.run_branches(x)

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
