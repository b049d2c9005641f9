"""A user's network in: torchvision-named weights onto sparsearch layouts, and a user's model's grouped
bottlenecks converted in place into top-k blocks that carry its pretrained weights.

- :func:`from_torchvision`: a torchvision-layout ResNeXt ``state_dict`` (``conv1``, ``layer1.0.conv2``,
  ``fc``) renamed to the matching sparsearch layout (``stem.0``, ``blocks.conv2_0.conv``, ``head.2``); the
  mapping is the table :data:`TORCHVISION_NAMES`.
- :func:`to_condconv`: a chosen convolution of a model becomes a ``CondConv2d`` whose n experts start as
  the pretrained kernel and whose routing starts at equal weights that sum to one (zero trunk weights; a
  bias that gives 1/n after the routing's normalisation), so the converted layer computes exactly the
  convolution it replaces, for every routing: softmax, sigmoid (bias logit(1/n)), ReLU+L1 (bias 1),
  noisy top-k (bias 0, so the k kept weights are 1/k each: the layer is the pretrained one too) and
  constant (α = 1, so the experts start at W/n). Training moves the routing away from that point.
- :func:`to_gateconnect`: a stage of grouped bottlenecks (an ``nn.Sequential``) becomes a stack of
  GateConnect modules whose C branches are the groups, at fan-in K = C: each branch keeps its rows of
  the 1×1 convolutions, the grouped 3×3 is shared as it was, and the last batch norm is split so that
  the mean over branches is the block's sum. Exact in eval mode (running statistics); training then
  learns the connectivity, and the fan-in can be lowered (``set_fan_in``).
- :func:`convert_bottlenecks`: every residual bottleneck of a model whose middle convolution is grouped
  (1×1 → BN → ReLU → grouped 3×3 → BN → ReLU → 1×1 → BN, plus the shortcut, as torchvision and timm
  name it: ``conv1 bn1 conv2 bn2 conv3 bn3 downsample``) becomes a :class:`~sparsearch.layers.TopKBottleneck`
  whose C paths are the groups, with the weights copied. Each conversion is checked in float64 on a
  random input, at k = C with the constant gate: a block whose outputs differ (a forward that is not
  the standard bottleneck) is left as it was and listed, never silently changed.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from sparsearch.layers import CondConv2d, GateConnectModule, TopKBottleneck
from sparsearch.layers.controllers import ImageGate

__all__ = [
    "TORCHVISION_NAMES",
    "Converted",
    "GateConnectStage",
    "convert_bottlenecks",
    "from_torchvision",
    "is_torchvision",
    "set_routing",
    "to_condconv",
    "to_gateconnect",
]

# torchvision module names -> sparsearch names (inside a block, and around the blocks)
TORCHVISION_NAMES = {
    "conv1": "reduce",
    "bn1": "bn_reduce",
    "conv2": "conv",
    "bn2": "bn_conv",
    "conv3": "expand",
    "bn3": "bn_expand",
    "downsample.0": "shortcut.0",
    "downsample.1": "shortcut.1",
}
_BLOCK = re.compile(r"layer(\d)\.(\d+)\.(.+)")


def is_torchvision(state: dict[str, Tensor]) -> bool:
    """True for a state dict with torchvision's ResNet/ResNeXt names."""
    return "conv1.weight" in state and any(k.startswith("layer1.0.") for k in state)


def from_torchvision(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """``state`` renamed from torchvision's ResNeXt names to sparsearch's (conv2..conv5 stages)."""
    out = {}
    for key, value in state.items():
        if key.startswith("conv1."):
            name = "stem.0." + key.removeprefix("conv1.")
        elif key.startswith("bn1."):
            name = "stem.1." + key.removeprefix("bn1.")
        elif key.startswith("fc."):
            name = "head.2." + key.removeprefix("fc.")
        elif match := _BLOCK.fullmatch(key):
            stage, index, rest = match.groups()
            module, _, tensor = rest.rpartition(".")
            name = f"blocks.conv{int(stage) + 1}_{index}.{TORCHVISION_NAMES.get(module, module)}.{tensor}"
        else:
            name = key
        out[name] = value
    return out


@dataclass(frozen=True)
class Converted:
    """One block of the report: where, what it became (or why it stayed), and the float64 difference."""

    module: str
    converted: bool
    detail: str
    max_abs_diff: float | None = None


def _bottleneck(m: nn.Module) -> str | None:
    """Why ``m`` is not a grouped bottleneck, or None when it is one."""
    names = ("conv1", "bn1", "conv2", "bn2", "conv3", "bn3")
    if not all(isinstance(getattr(m, n, None), nn.Conv2d | nn.BatchNorm2d) for n in names):
        return "not a bottleneck (conv1, bn1, conv2, bn2, conv3, bn3)"
    c1, c2, c3 = m.conv1, m.conv2, m.conv3
    if c2.groups < 2:
        return "its 3×3 convolution is not grouped"
    if c1.kernel_size != (1, 1) or c3.kernel_size != (1, 1) or c2.kernel_size != (3, 3):
        return "not 1×1 → 3×3 → 1×1"
    if any(c.bias is not None for c in (c1, c2, c3)) or c1.stride != (1, 1) or c3.stride != (1, 1):
        return "biases or strides other than the standard bottleneck's"
    if c2.stride[0] != c2.stride[1] or c2.padding != (1, 1) or c2.dilation != (1, 1):
        return "its 3×3 convolution is not stride s, padding 1, dilation 1"
    if c1.out_channels != c2.in_channels or c2.out_channels != c2.in_channels:
        return "its grouped convolution changes the width"
    down = getattr(m, "downsample", None)
    if down is not None and not (
        isinstance(down, nn.Sequential)
        and len(down) == 2
        and isinstance(down[0], nn.Conv2d)
        and isinstance(down[1], nn.BatchNorm2d)
        and down[0].kernel_size == (1, 1)
        and down[0].bias is None
    ):
        return "its shortcut is not a 1×1 convolution and a batch norm"
    return None


def _topk(m: nn.Module) -> TopKBottleneck:
    c1, c2, c3 = m.conv1, m.conv2, m.conv3
    groups = c2.groups
    block = TopKBottleneck(
        c1.in_channels, c3.out_channels, groups, c2.out_channels // groups, groups, c2.stride[0], "constant"
    )
    with torch.no_grad():
        for ours, theirs in (("reduce", c1), ("conv", c2), ("expand", c3)):
            getattr(block, ours).weight.copy_(theirs.weight)
        for ours, theirs in (("bn_reduce", m.bn1), ("bn_conv", m.bn2), ("bn_expand", m.bn3)):
            getattr(block, ours).load_state_dict(theirs.state_dict())
        down = getattr(m, "downsample", None)
        if down is not None:
            if isinstance(block.shortcut, nn.Identity):
                raise ValueError("the block has a projection where its shapes need none")
            block.shortcut.load_state_dict(down.state_dict())
        elif not isinstance(block.shortcut, nn.Identity):
            raise ValueError("the block changes shape but has no projection")
    return block.train(m.training)


def _difference(a: nn.Module, b: nn.Module, channels: int, size: int = 9, activation: bool = False) -> float:
    """Largest output difference of ``a`` and ``b`` in eval mode, float64, on one random input (non-negative
    with ``activation``: what a stage of a ReLU network reads)."""
    a64, b64 = copy.deepcopy(a).double().eval(), copy.deepcopy(b).double().eval()
    x = torch.randn(2, channels, size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x = x.abs() if activation else x
    with torch.no_grad():
        return float((a64(x) - b64(x)).abs().max())


def convert_bottlenecks(model: nn.Module, atol: float = 1e-6) -> list[Converted]:
    """Replace, in place, every grouped bottleneck of ``model`` by an equivalent TopKBottleneck (k = C,
    constant gate); returns one entry per grouped convolution met, converted or not, and why."""
    report: list[Converted] = []
    inside: set[str] = set()
    for name, module in list(model.named_modules()):
        if any(name.startswith(p + ".") for p in inside):
            continue
        why = _bottleneck(module)
        if why is None:
            inside.add(name)
            try:
                block = _topk(module)
                diff = _difference(module, block, module.conv1.in_channels)
            except (ValueError, RuntimeError) as err:
                report.append(Converted(name, False, f"left as it is: {err}"))
                continue
            if not diff <= atol:
                report.append(Converted(name, False, f"left as it is: its forward differs ({diff:.3g})", diff))
                continue
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, block)
            c = module.conv2.groups
            detail = f"TopKBottleneck: C = {c} paths of width {module.conv2.out_channels // c}, k = C"
            report.append(Converted(name, True, detail, diff))
        elif isinstance(module, nn.Conv2d) and module.groups > 1 and module.groups != module.in_channels:
            owner = name.rpartition(".")[0]
            reason = _bottleneck(model.get_submodule(owner)) if owner else "at the top level"
            report.append(Converted(name, False, f"a grouped convolution left as it is ({reason})"))
    return report


def set_routing(block: TopKBottleneck, routing: str) -> float:
    """Give a converted block (constant gate, k = C) a gate of ``routing`` that changes nothing yet: the
    gate's last layer starts at zero weights, so every path gets one weight g₀ (softmax and noisy top-k
    1/C, sigmoid 1/2, ReLU+L1 1/C with bias 1), and the expand batch norm's statistics are scaled by g₀
    (mean g₀·μ, variance and ε g₀²·) so that BN(Σ g₀·e) = BN'(Σ e) exactly. Training then learns to rank.
    Returns the float64 output difference at k = C; raises ValueError for a routing that cannot start
    from equal positive weights."""
    if block.gate.routing.name != "constant" or block.k != block.cardinality or block.experts != 1:
        raise ValueError("only a converted block (constant gate, k = C, no experts) takes a new routing")
    before = copy.deepcopy(block)
    c = block.cardinality
    gate = ImageGate(block.in_channels, c, c, routing)
    linears = [m for m in gate.routing.modules() if isinstance(m, nn.Linear)]
    g0 = None
    with torch.no_grad():
        for m in linears:
            m.weight.zero_()
        for bias in (0.0, 1.0):
            for m in linears:
                if m.bias is not None:
                    m.bias.fill_(bias)
            weights = gate.routing.eval()(torch.zeros(1, block.in_channels)).weights
            if weights.numel() == c and bool((weights == weights.flatten()[0]).all()) and float(weights[0, 0]) > 0:
                g0 = float(weights[0, 0])
                break
        if g0 is None:
            raise ValueError(f"routing {routing!r} gives no equal positive weights at zero input")
        bn = block.bn_expand
        bn.running_mean.mul_(g0)
        bn.running_var.mul_(g0 * g0)
        bn.eps = bn.eps * g0 * g0
    block.gate = gate.train(block.training)
    return _difference(before, block, block.in_channels)


def to_condconv(model: nn.Module, name: str, experts: int, routing: str = "sigmoid", k: int | None = None) -> Converted:
    """Replace the ``nn.Conv2d`` ``name`` of ``model`` by a CondConv2d of ``experts`` experts that computes
    exactly what it did (see the module docstring); returns the report entry with the float64 check."""
    conv = model.get_submodule(name)
    if not isinstance(conv, nn.Conv2d) or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        return Converted(name, False, "left as it is: not an nn.Conv2d with numeric zero padding")
    if routing == "noisy_topk" and k is None:
        k = experts
    layer = CondConv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        conv.bias is not None,
        num_experts=experts,
        routing=routing,
        routing_k=k,
    )
    share = 1 / experts if routing == "constant" else 1.0  # constant routing sums its n weights of 1
    with torch.no_grad():
        layer.weight.copy_(conv.weight.unsqueeze(0).expand_as(layer.weight) * share)
        if conv.bias is not None:
            layer.bias.copy_(conv.bias.unsqueeze(0).expand_as(layer.bias) * share)
        last = [m for m in layer.router.modules() if isinstance(m, nn.Linear)]
        if last:
            last[-1].weight.zero_()
            start = {"sigmoid": math.log(1 / (experts - 1)) if experts > 1 else 10.0, "relu_l1": 1.0}
            last[-1].bias.fill_(start.get(routing, 0.0))
        noise = getattr(layer.router, "noise", None)
        if isinstance(noise, nn.Linear):  # noisy top-k: no noise in eval; zero scale trunk
            noise.weight.zero_()
    layer.train(conv.training)
    diff = _difference(conv, layer, conv.in_channels)
    if not diff <= 1e-6:
        return Converted(name, False, f"left as it is: the converted layer differs ({diff:.3g})", diff)
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, layer)
    return Converted(name, True, f"CondConv2d: {experts} experts from the pretrained kernel, {routing} routing", diff)


class GateConnectStage(nn.Module):
    """A stage of GateConnect modules in a single-stream network: the first reads the stage input, the
    others read the previous module's C branch outputs; the stage returns ReLU(mean of the last ones)."""

    def __init__(self, modules: list[GateConnectModule]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(modules)

    def forward(self, x: Tensor) -> Tensor:
        y = x[:, None]
        for block in self.blocks:
            y = block(y)
        return torch.relu(y.mean(dim=1))


def _branches(m: nn.Module, num_inputs: int) -> GateConnectModule:
    c1, c2, c3 = m.conv1, m.conv2, m.conv3
    c, w, out = c2.groups, c2.out_channels // c2.groups, c3.out_channels
    module = GateConnectModule(c1.in_channels, out, c, w, num_inputs, c2.stride[0], "learned", num_inputs=num_inputs)
    with torch.no_grad():
        module.reduce.weight.copy_(c1.weight.view(c, w, -1, 1, 1).reshape(c * w, -1, 1, 1))
        module.conv.weight.copy_(c2.weight)
        expand = c3.weight.view(out, c, w).permute(1, 0, 2).reshape(c * out, w, 1, 1)
        module.expand.weight.copy_(expand)  # branch j: conv3's columns of group j
        module.bn_reduce.load_state_dict(m.bn1.state_dict())
        module.bn_conv.load_state_dict(m.bn2.state_dict())
        bn, split = m.bn3, module.bn_expand  # mean over branches of bn_j(e_j) = bn3(sum of e_j)
        split.weight.copy_(bn.weight.repeat(c) * c)
        split.bias.copy_(bn.bias.repeat(c))
        split.running_mean.copy_(bn.running_mean.repeat(c) / c)
        split.running_var.copy_(bn.running_var.repeat(c))
        split.eps = bn.eps
        down = getattr(m, "downsample", None)
        if down is not None:
            module.shortcut.load_state_dict(down.state_dict())
    return module.train(m.training)


def to_gateconnect(model: nn.Module, name: str) -> Converted:
    """Replace the stage ``name`` of ``model`` (an ``nn.Sequential`` of grouped bottlenecks of one
    cardinality) by a :class:`GateConnectStage` that computes the same in eval mode on the activations it
    reads (its first module applies a ReLU to its input, the identity on a ReLU network's activations;
    checked in float64)."""
    stage = model.get_submodule(name)
    blocks = list(stage) if isinstance(stage, nn.Sequential) else []
    reasons = [_bottleneck(b) for b in blocks] or ["not an nn.Sequential of blocks"]
    if any(reasons):
        return Converted(name, False, f"left as it is: {next(r for r in reasons if r)}")
    if len({b.conv2.groups for b in blocks}) != 1:
        return Converted(name, False, "left as it is: its blocks have different cardinalities")
    c = blocks[0].conv2.groups
    try:
        converted = GateConnectStage([_branches(b, 1 if i == 0 else c) for i, b in enumerate(blocks)])
    except ValueError as err:
        return Converted(name, False, f"left as it is: {err}")
    diff = _difference(stage, converted, blocks[0].conv1.in_channels, activation=True)
    if not diff <= 1e-6:
        return Converted(name, False, f"left as it is: the converted stage differs ({diff:.3g})", diff)
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, converted)
    return Converted(name, True, f"GateConnect stage: {len(blocks)} modules of C = {c} branches, K = C", diff)
