"""The modules of seed 001's CondConv networks, built from a :class:`~sparsearch.config.CondNetConfig`."""

from __future__ import annotations

from torch import Tensor, nn

from sparsearch.config.condnet import CondNetConfig, LayerSpec, condnet_plan
from sparsearch.layers import CondConv2d, CondLinear, create_routing
from sparsearch.layers.pool import ChannelsLastMaxPool2d
from sparsearch.models.network import Network
from sparsearch.models.registry import register_builder

__all__ = ["CondNet", "CondNetBlock"]


class CondNetBlock(nn.Module):
    def __init__(self, spec: LayerSpec, experts: int, routing: str) -> None:
        super().__init__()
        self.spec = spec
        cond = experts > 1
        self.router = (
            create_routing(routing, spec.convs[0].cin, experts) if cond and spec.cond and spec.shared_routing else None
        )
        self.convs = nn.ModuleList()
        for c in spec.convs:
            if cond and c.cond:
                conv: nn.Module = CondConv2d(
                    c.cin,
                    c.cout,
                    c.kernel,
                    c.stride,
                    c.kernel // 2,
                    groups=c.groups,
                    bias=False,
                    num_experts=experts,
                    routing="constant" if self.router is not None else routing,
                )
            else:
                conv = nn.Conv2d(c.cin, c.cout, c.kernel, c.stride, c.kernel // 2, groups=c.groups, bias=False)
            self.convs.append(conv)
        self.bns = nn.ModuleList(nn.BatchNorm2d(c.cout) for c in spec.convs)
        self.acts = [_ACTS[c.act] for c in spec.convs]
        if spec.residual == "projection":
            first, last = spec.convs[0], spec.convs[-1]
            stride = max(c.stride for c in spec.convs)
            self.shortcut: nn.Module = nn.Sequential(
                nn.Conv2d(first.cin, last.cout, 1, stride, bias=False), nn.BatchNorm2d(last.cout)
            )
        else:
            self.shortcut = nn.Identity()

    def shared_expert_group(self) -> tuple[nn.Module, list[str]] | None:
        """(the block's shared routing, the CondConv layers it drives), or None when each routes itself."""
        if self.router is None:
            return None
        return self.router, [f"convs.{i}" for i, c in enumerate(self.convs) if isinstance(c, CondConv2d)]

    def forward(self, x: Tensor) -> Tensor:
        alpha = None if self.router is None else self.router(x.mean(dim=(2, 3))).weights  # (B, n)
        h = x
        for conv, bn, act in zip(self.convs, self.bns, self.acts, strict=True):
            h = act(bn(conv(h, alpha) if isinstance(conv, CondConv2d) and alpha is not None else conv(h)))
        if self.spec.residual != "none":
            h = h + self.shortcut(x)
        return _ACTS[self.spec.post_act](h)


_ACTS = {"relu": nn.functional.relu, "relu6": nn.functional.relu6, "none": lambda t: t}


class CondNet(Network):
    """A seed-001 CondConv network built from a :class:`CondNetConfig`; returns logits."""

    def __init__(self, config: CondNetConfig) -> None:
        super().__init__()
        self.config = config
        layers, head_in = condnet_plan(config)
        self.layers = nn.ModuleList(CondNetBlock(spec, config.experts, config.routing) for spec in layers)
        self.pool = ChannelsLastMaxPool2d(3, 2, 1) if config.arch == "resnet50" else nn.Identity()
        if config.experts > 1:
            self.classifier: nn.Module = CondLinear(
                head_in, config.num_classes, num_experts=config.experts, routing=config.routing
            )
        else:
            self.classifier = nn.Linear(head_in, config.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(self.layers[0](x))  # the stem (and ResNet-50's max pool)
        for block in self.layers[1:]:
            x = block(x)
        return self.classifier(x.mean(dim=(2, 3)))


register_builder(CondNetConfig, CondNet)
