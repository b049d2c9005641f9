"""The sparse ResNeXt family built from a :class:`~sparsearch.models.config.NetConfig`.

Single-stream stages are stacks of :class:`~sparsearch.layers.TopKBottleneck` (top-k paths, CondConv
experts, gate routing); GateConnect stages (``fan_in`` set) are stacks of
:class:`~sparsearch.layers.GateConnectModule` whose C branch outputs flow from module to module.
Where a GateConnect stage meets a single-stream stage or the head, its branches are aggregated as a
module aggregates its inputs (the mean, then the ReLU: the fixed ResNeXt aggregation); where a
single-stream tensor enters a GateConnect stage, every branch reads it.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from sparsearch.config import NetConfig, Plan, plan
from sparsearch.layers import GateConnectModule, TopKBottleneck
from sparsearch.layers.pool import ChannelsLastMaxPool2d
from sparsearch.models.network import Network
from sparsearch.models.registry import register_builder

__all__ = ["SparseResNeXt", "merge_branches"]


def merge_branches(x: Tensor) -> Tensor:
    """(B, C, ch, H, W) pre-activation branch outputs -> (B, ch, H, W): their mean, then the ReLU."""
    return F.relu(x.mean(dim=1))


class SparseResNeXt(Network):
    """Stem -> stages -> head; ``forward(x, cond=None)``, ``cond`` = question features for VQA gates.

    Returns logits (B, classes) for the classifier head, else the last feature grid (B, ch, H, W).
    """

    def __init__(self, config: NetConfig) -> None:
        super().__init__()
        self.config = config
        self.plan: Plan = plan(config)
        c = config
        self.stem = nn.Sequential(
            nn.Conv2d(c.in_channels, c.stem_channels, c.stem_kernel, c.stem_stride, c.stem_kernel // 2, bias=False),
            nn.BatchNorm2d(c.stem_channels),
            nn.ReLU(inplace=True),
        )
        if c.stem_pool:
            self.stem.append(ChannelsLastMaxPool2d(3, 2, 1))
        self.blocks = nn.ModuleDict()
        for b in self.plan.blocks:
            s = b.stage
            if s.multi_stream:
                block: nn.Module = GateConnectModule(
                    b.in_channels,
                    b.out_channels,
                    s.cardinality,
                    s.width,
                    b.fan_in,
                    b.stride,
                    c.connectivity,
                    num_inputs=b.num_inputs,
                )
            else:
                block = TopKBottleneck(
                    b.in_channels,
                    b.out_channels,
                    s.cardinality,
                    s.width,
                    b.k,
                    b.stride,
                    b.routing,
                    cond_dim=c.cond_dim,
                    experts=b.experts,
                    expert_routing=c.expert_routing,
                )
            self.blocks[b.name.replace(".", "_")] = block
        last = self.plan.out_channels
        if c.head == "classifier":
            self.head: nn.Module = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(last, c.num_classes))
        elif c.head == "conv":
            self.head = nn.Sequential(
                nn.Conv2d(last, c.head_channels, 1, bias=False), nn.BatchNorm2d(c.head_channels), nn.ReLU(inplace=True)
            )
        else:
            self.head = nn.Identity()

    @property
    def out_channels(self) -> int:
        """Channels of the features the head reads (the backbone's output for ``head="features"``)."""
        return self.config.head_channels if self.config.head == "conv" else self.plan.out_channels

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        x = self.stem(x)
        streams = False  # True while x holds stacked GateConnect branches (B, C, ch, H, W)
        for b, block in zip(self.plan.blocks, self.blocks.values(), strict=True):
            if b.stage.multi_stream:
                x = block(x if streams else x[:, None])
                streams = True
            else:
                if streams:
                    x, streams = merge_branches(x), False
                x = block(x, cond)
        if streams:
            x = merge_branches(x)
        return self.head(x)

    def balance_loss(self) -> Tensor | float:
        """Sum of the top-k blocks' CV² balancing terms from the last forward (seed 000, App. C)."""
        terms = [m.balance_loss for m in self.modules() if isinstance(m, TopKBottleneck) and m.balance_loss is not None]
        return sum(terms) if terms else 0.0

    def set_knobs(self, config: NetConfig) -> None:
        """The knobs of ``config`` on every block (a configuration of the same shapes): k and fan-in, and
        the experts (at most those built) and routing of top-k blocks (see ``TopKBottleneck.set_experts``
        and ``set_routing``)."""
        for b in plan(config).blocks:
            block = self.blocks[b.name.replace(".", "_")]
            if isinstance(block, TopKBottleneck):
                block.set_experts(b.experts)
                block.set_routing(b.routing)
                block.set_k(b.k)
            elif isinstance(block, GateConnectModule):
                block.set_fan_in(b.fan_in)


register_builder(NetConfig, SparseResNeXt)
