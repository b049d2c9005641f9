"""CondConv placements of seed 001 on MobileNetV1, MobileNetV2 and ResNet-50.

- CC-MobileNetV1: CondConv in the depthwise and pointwise layers of the final 8 separable blocks, one
  routing function per block computed from the block input; the classifier is a CondLinear.
- CC-MobileNetV2: CondConv in the three layers of the last 6 inverted residual blocks (routing shared
  within a block), in the final 1×1 convolution and in the classifier.
- CC-ResNet-50: CondConv in the three convolutions of the final 3 residual blocks (each layer routes
  from its own input, CondConv's default) and in the classifier.

``experts = 1`` gives the base network. Like the ResNeXt family, a configuration is expanded into
block specs (:func:`condnet_plan`) that the cost module and the builder
(:mod:`sparsearch.models.condconv_nets`) both read.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from sparsearch.config.family import KnobUnit, NetworkFamily, TaskFit, build_fields, register_family
from sparsearch.config.routing import routing_names
from sparsearch.errors import ConfigError
from sparsearch.limits import MAX, check_int, check_number, shown

__all__ = ["ARCHS", "CondNetConfig", "ConvSpec", "LayerSpec", "condnet_plan"]

ARCHS = ("mobilenet_v1", "mobilenet_v2", "resnet50")


@register_family
@dataclass(frozen=True)
class CondNetConfig(NetworkFamily):
    """A CondConv network of seed 001."""

    family = "condconv"
    description = "a CondConv network"
    scales_depth = False  # MobileNets and ResNet-50 keep their blocks; the proxy scales the width
    UNIT = "condconv"  # the one knob unit: experts and routing are set network-wide

    arch: str  # "mobilenet_v1", "mobilenet_v2" or "resnet50"
    width: float = 1.0  # width multiplier (MobileNets: 0.25, 0.5, 0.75, 1.0, 1.4)
    experts: int = 1  # CondConv experts per layer in the CondConv part; 1 = the base network
    routing: str = "sigmoid"  # routing function of the CondConv layers (seed 001's default)
    input_size: int = 224
    num_classes: int = 1000

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ConfigError(f"arch={self.arch!r}; allowed: {', '.join(ARCHS)}")
        if not isinstance(self.experts, int) or isinstance(self.experts, bool) or self.experts < 1:
            raise ConfigError(f"experts={shown(self.experts)} must be a positive integer")
        check_int("experts", self.experts)
        if isinstance(self.width, bool) or not isinstance(self.width, int | float) or self.width <= 0:
            raise ConfigError(f"width={shown(self.width)} must be a positive number")
        check_number("width", self.width, 0, MAX["width_multiplier"], low_open=True)
        if self.arch == "resnet50" and self.width != 1.0:
            raise ConfigError(f"width={self.width} is not available for resnet50; allowed: 1.0")
        if self.routing not in routing_names() or self.routing == "noisy_topk":
            raise ConfigError(f"routing={self.routing!r}; allowed: constant, relu_l1, sigmoid, softmax")
        for key in ("input_size", "num_classes"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{key}={shown(value)} must be a positive integer")
        check_int("input_size", self.input_size)
        check_int("num_classes", self.num_classes, 1, MAX["classes"])

    def knob_units(self) -> tuple[KnobUnit, ...]:
        current = {"experts": (self.experts,), "routing": (self.routing,)}
        return (KnobUnit(self.UNIT, 1, 0, ("experts", "routing"), (), current, routes="experts"),)

    def with_knobs(self, **knobs: Any) -> CondNetConfig:
        """Experts and routing for every CondConv layer: a value, or ``{"condconv": value}``."""
        unknown = sorted(set(knobs) - {"experts", "routing"})
        if unknown:
            raise ConfigError(f"model {self.arch!r} has no knob {unknown[0]!r}; its knobs: experts, routing")
        values = {}
        for key, value in knobs.items():
            if isinstance(value, dict):
                if set(value) - {self.UNIT}:
                    unknown_units = sorted(set(value) - {self.UNIT})
                    raise ConfigError(f"{key} names unknown unit(s) {unknown_units}; units: {self.UNIT}")
                if self.UNIT not in value:
                    continue
                value = value[self.UNIT]
            values[key] = value
        return replace(self, **values)

    def scaled(self, width: float, depth: tuple[int, ...] | None) -> CondNetConfig:
        if depth is not None:
            raise ConfigError("a CondConv network keeps its depth; scale it with proxy.width")
        return replace(self, width=self.width * width)

    def for_task(self, fit: TaskFit) -> CondNetConfig:
        if fit.task != "classification":
            raise ConfigError(f"model {self.arch}: the CondConv networks classify; they cannot host {fit.task}")
        if fit.in_channels != 3:
            raise ConfigError(f"the CondConv networks take 3-channel images; the data has {fit.in_channels}")
        return replace(self, num_classes=fit.classes)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CondNetConfig:
        return build_fields(cls, data, "model config")


class ConvSpec(NamedTuple):
    cin: int
    cout: int
    kernel: int
    stride: int
    groups: int
    act: str  # "relu", "relu6" or "none" after the batch norm
    cond: bool  # a CondConv layer when the network has experts > 1


class LayerSpec(NamedTuple):
    """A block (a few convolutions with an optional residual) with its shapes."""

    name: str
    convs: tuple[ConvSpec, ...]
    residual: str  # "none", "identity" or "projection"
    shared_routing: bool  # one routing for the block's CondConv layers, from the block input
    post_act: str  # activation after the residual sum ("relu" in ResNet-50)
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    conv_hw: tuple[tuple[int, int], ...]  # output size of each convolution

    @property
    def cond(self) -> bool:
        return any(c.cond for c in self.convs)


def _divisible(value: float, divisor: int = 8) -> int:
    """MobileNetV2's channel rounding (round to a multiple of 8, never below 90%)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _mobilenet_v1(w: float) -> tuple[list[tuple[str, list[ConvSpec], str, bool, str]], int]:
    def ch(c: int) -> int:
        return max(8, int(c * w))

    plan = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
    blocks, cin = [], ch(32)
    stem = [("stem", [ConvSpec(3, cin, 3, 2, 1, "relu", False)], "none", False, "none")]
    for i, (c, s) in enumerate(plan):
        cond = i >= len(plan) - 8  # the final 8 separable blocks
        convs = [ConvSpec(cin, cin, 3, s, cin, "relu", cond), ConvSpec(cin, ch(c), 1, 1, 1, "relu", cond)]
        blocks.append((f"sep{i + 1}", convs, "none", True, "none"))
        cin = ch(c)
    return stem + blocks, cin


def _mobilenet_v2(w: float) -> tuple[list[tuple[str, list[ConvSpec], str, bool, str]], int]:
    settings = [
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ]
    total = sum(n for _, _, n, _ in settings)
    cin = _divisible(32 * w)
    layers = [("stem", [ConvSpec(3, cin, 3, 2, 1, "relu6", False)], "none", False, "none")]
    index = 0
    for t, c, n, s in settings:
        cout = _divisible(c * w)
        for j in range(n):
            cond = index >= total - 6  # the last 6 inverted residual blocks
            hidden = cin * t
            convs = [] if t == 1 else [ConvSpec(cin, hidden, 1, 1, 1, "relu6", cond)]
            convs += [
                ConvSpec(hidden, hidden, 3, s if j == 0 else 1, hidden, "relu6", cond),
                ConvSpec(hidden, cout, 1, 1, 1, "none", cond),
            ]
            residual = "identity" if (s == 1 or j > 0) and cin == cout else "none"
            layers.append((f"ir{index + 1}", convs, residual, True, "none"))
            cin, index = cout, index + 1
    last = _divisible(1280 * max(1.0, w))
    layers.append(("conv_last", [ConvSpec(cin, last, 1, 1, 1, "relu6", True)], "none", True, "none"))
    return layers, last


def _resnet50(w: float) -> tuple[list[tuple[str, list[ConvSpec], str, bool, str]], int]:
    layers = [("stem", [ConvSpec(3, 64, 7, 2, 1, "relu", False)], "none", False, "none")]
    cin, index, total = 64, 0, 16
    for stage, (blocks, width) in enumerate(((3, 64), (4, 128), (6, 256), (3, 512))):
        for j in range(blocks):
            cond = index >= total - 3  # the final 3 residual blocks
            stride = 2 if stage > 0 and j == 0 else 1
            convs = [
                ConvSpec(cin, width, 1, 1, 1, "relu", cond),
                ConvSpec(width, width, 3, stride, 1, "relu", cond),
                ConvSpec(width, 4 * width, 1, 1, 1, "none", cond),
            ]
            residual = "projection" if j == 0 else "identity"
            layers.append((f"conv{stage + 2}.{j}", convs, residual, False, "relu"))
            cin, index = 4 * width, index + 1
    return layers, cin


_ARCH = {"mobilenet_v1": _mobilenet_v1, "mobilenet_v2": _mobilenet_v2, "resnet50": _resnet50}


def condnet_plan(config: CondNetConfig) -> tuple[tuple[LayerSpec, ...], int]:
    """Block specs with shapes, and the classifier's input width."""
    raw, head_in = _ARCH[config.arch](config.width)
    size = (config.input_size, config.input_size)
    layers = []
    for name, convs, residual, shared, post in raw:
        in_hw, sizes = size, []
        for c in convs:
            size = tuple((s + 2 * (c.kernel // 2) - c.kernel) // c.stride + 1 for s in size)
            sizes.append(size)
        if name == "stem" and config.arch == "resnet50":
            size = tuple((s + 2 - 3) // 2 + 1 for s in size)  # 3×3 max pool, stride 2
        layers.append(LayerSpec(name, tuple(convs), residual, shared, post, in_hw, size, tuple(sizes)))
    return tuple(layers), head_in
