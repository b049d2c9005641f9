"""Configurations of the sparse ResNeXt family and their shapes, without building any module.

A :class:`NetConfig` is one point of a search space: a stem, stages of multi-branch blocks with the
four knobs per block (top-k ``k``, CondConv ``experts``, gate ``routing``; GateConnect ``fan_in`` per
stage), and a head. :func:`plan` propagates shapes through it; the cost module and the model builder
both read the plan, so a configuration's cost never needs the model.

Off values: ``k = cardinality``, ``experts = 1``, ``routing = "constant"``, ``fan_in = None``; a
configuration with every knob off is the plain ResNeXt.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from sparsearch.choices import CONNECTIVITIES
from sparsearch.config.family import ELASTIC, KNOBS, KnobUnit, NetworkFamily, TaskFit, build_fields, register_family
from sparsearch.config.routing import routing_names
from sparsearch.errors import ConfigError
from sparsearch.limits import MAX, check_int, shown

__all__ = ["HEADS", "BlockPlan", "NetConfig", "Plan", "StageConfig", "plan", "with_knobs"]

HEADS = ("classifier", "features", "conv")
# The bound (a key of sparsearch.limits.MAX) of each size field.
_BOUND = {
    "out_channels": "channels",
    "width": "channels",
    "stem_channels": "channels",
    "stem_kernel": "kernel",
    "stem_stride": "stride",
}


def _per_block(value: object, depth: int, key: str, stage: str) -> tuple:
    """An int/str for every block, or one value per block."""
    values = tuple(value) if isinstance(value, list | tuple) else (value,) * depth
    if len(values) != depth:
        raise ConfigError(f"{key} has {len(values)} values but stage {stage} has {depth} blocks")
    return values


@dataclass(frozen=True)
class StageConfig:
    """A stack of ``depth`` blocks; the first has ``stride`` and changes the channel count."""

    name: str  # stage name in messages and cost tables, e.g. "conv3"
    depth: int  # blocks in the stage
    out_channels: int  # channels of each block's output
    cardinality: int  # C: paths (single-stream) or branches (GateConnect)
    width: int  # d: channels of each path or branch bottleneck
    stride: int = 1  # stride of the first block's 3×3 convolution (and shortcut)
    k: int | tuple[int, ...] = 0  # top-k paths run per example, per block; 0 means C (all paths)
    experts: int | tuple[int, ...] = 1  # CondConv experts per path convolution, per block
    routing: str | tuple[str, ...] = "constant"  # gate routing per block; "constant" = no gate
    fan_in: int | None = None  # GateConnect fan-in K for the stage; None = the fixed ResNeXt sum

    def __post_init__(self) -> None:
        where = f"stage {self.name}"
        for key in ("depth", "out_channels", "cardinality", "width", "stride"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{key}={shown(value)} must be a positive integer in {where}")
            check_int(key, value, 1, MAX[_BOUND.get(key, key)])
        c = self.cardinality
        ks = tuple(c if k == 0 else k for k in _per_block(self.k, self.depth, "k", self.name))
        experts = _per_block(self.experts, self.depth, "experts", self.name)
        routings = _per_block(self.routing, self.depth, "routing", self.name)
        for i, (k, n, r) in enumerate(zip(ks, experts, routings, strict=True)):
            block = f"{where} block {i}"
            if not isinstance(k, int) or isinstance(k, bool) or k < 1:
                raise ConfigError(f"k={k!r} must be a positive integer in {block}")
            if k > c:
                raise ConfigError(f"k={k} exceeds cardinality {c} in {block}")
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                raise ConfigError(f"experts={shown(n)} must be a positive integer in {block}")
            check_int("experts", n)
            if r not in routing_names():
                raise ConfigError(f"routing={r!r} in {block}; known: {', '.join(routing_names())}")
            if r == "constant" and k < c:
                ranking = ", ".join(n for n in routing_names() if n != "constant")
                raise ConfigError(
                    f"routing 'constant' cannot rank paths: k={k} < cardinality {c} in {block}; "
                    f"set a routing that ranks them as well (e.g. --set routing=softmax; any of {ranking})"
                )
        if self.fan_in is not None:
            if not isinstance(self.fan_in, int) or isinstance(self.fan_in, bool) or not 1 <= self.fan_in <= c:
                raise ConfigError(f"fan_in={self.fan_in!r} must be in 1..{c} (the cardinality) in {where}")
            if any(k < c for k in ks) or any(n > 1 for n in experts):
                raise ConfigError(f"a GateConnect stage (fan_in set) takes neither top-k nor experts, in {where}")
        object.__setattr__(self, "k", ks)
        object.__setattr__(self, "experts", experts)
        object.__setattr__(self, "routing", routings)

    @property
    def multi_stream(self) -> bool:
        """True for a GateConnect stage: C branch outputs flow between its modules."""
        return self.fan_in is not None


@register_family
@dataclass(frozen=True)
class NetConfig(NetworkFamily):
    """A network of the sparse ResNeXt family."""

    family = "resnext"
    description = "a ResNeXt-family network"
    per_block_latency = True

    stages: tuple[StageConfig, ...]
    input_size: int = 224  # H = W of the input image
    in_channels: int = 3
    stem_channels: int = 64
    stem_kernel: int = 7  # the stem is one k×k convolution + BN + ReLU
    stem_stride: int = 2
    stem_pool: bool = True  # a 3×3 max pool of stride 2 after the stem (ImageNet layouts)
    head: str = "classifier"  # "classifier": pool + linear; "features": the last grid; "conv": 1×1 conv
    num_classes: int = 1000  # outputs of the classifier head
    head_channels: int = 0  # outputs of the 1×1 conv head
    cond_dim: int | None = None  # question vector width: gates become question-conditioned (VQA)
    expert_routing: str = "sigmoid"  # routing function of the CondConv experts
    connectivity: str = "learned"  # GateConnect stages: "learned" or "fixed_random"

    def __post_init__(self) -> None:
        if not self.stages:
            raise ConfigError("a network needs at least one stage, got an empty stage list")
        if not isinstance(self.stages, list | tuple) or len(self.stages) > MAX["stages"]:
            raise ConfigError(f"stages: a list of at most {MAX['stages']} stages, got {shown(self.stages)}")
        for key in ("input_size", "in_channels", "stem_channels", "stem_kernel", "stem_stride"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{key}={shown(value)} must be a positive integer")
            check_int(key, value, 1, MAX[_BOUND.get(key, key)])
        if self.head not in HEADS:
            raise ConfigError(f"head={shown(self.head)}; allowed: {', '.join(HEADS)}")
        if self.head == "classifier":
            check_int("num_classes", self.num_classes, 1, MAX["classes"])
        if self.head == "conv":
            check_int("head_channels", self.head_channels, 1, MAX["channels"])
        if self.cond_dim is not None:
            check_int("cond_dim", self.cond_dim, 1, MAX["channels"])
        if self.expert_routing not in routing_names() or self.expert_routing == "noisy_topk":
            raise ConfigError(f"expert_routing={self.expert_routing!r}; allowed: constant, relu_l1, sigmoid, softmax")
        if self.connectivity not in CONNECTIVITIES:
            raise ConfigError(f"connectivity={self.connectivity!r}; allowed: {', '.join(CONNECTIVITIES)}")
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ConfigError(f"stage names must be unique, got {names}")
        object.__setattr__(self, "stages", tuple(self.stages))

    @property
    def multi_stream(self) -> bool:
        return any(s.multi_stream for s in self.stages)

    def shareable_knobs(self) -> tuple[str, ...]:
        """Top-k blocks switch in place: experts (the first n of the largest count; n = 1 the first
        expert's kernel alone) and routing (each routing function on the gate's one trunk)."""
        return (*ELASTIC, "experts", "routing")

    def knob_units(self) -> tuple[KnobUnit, ...]:
        return tuple(
            KnobUnit(
                s.name,
                s.depth,
                s.cardinality,
                KNOBS,
                ("k", "experts", "routing"),
                {"k": s.k, "experts": s.experts, "routing": s.routing, "fan_in": (s.fan_in,) * s.depth},
            )
            for s in self.stages
        )

    def with_knobs(self, **knobs: Any) -> NetConfig:
        """A copy with knobs set in every stage, or per stage with a dict ``{stage name: value}``.

        Example: ``cfg.with_knobs(k=16, routing="softmax")`` or ``cfg.with_knobs(k={"conv4": 8})``.
        """
        unknown = set(knobs) - set(KNOBS)
        if unknown:
            raise ConfigError(f"unknown knob(s) {sorted(unknown)}; knobs: {', '.join(KNOBS)}")
        names = {s.name for s in self.stages}
        for key, value in knobs.items():
            if isinstance(value, dict) and set(value) - names:
                raise ConfigError(
                    f"{key} names unknown stage(s) {sorted(set(value) - names)}; "
                    f"stages: {', '.join(s.name for s in self.stages)}"
                )
        stages = []
        for stage in self.stages:
            changes = {}
            for key, value in knobs.items():
                if isinstance(value, dict):
                    if stage.name in value:
                        changes[key] = value[stage.name]
                else:
                    changes[key] = value
            stages.append(replace(stage, **changes))
        return replace(self, stages=tuple(stages))

    def scaled(self, width: float, depth: tuple[int, ...] | None) -> NetConfig:
        """Channels × width (at least one per path), blocks per stage from ``depth``; knobs kept per
        block by position (block i of the proxy takes block ⌊i·target/proxy⌋ of the target)."""

        def ch(n: int) -> int:
            return max(1, round(n * width))

        stages = []
        for i, s in enumerate(self.stages):
            blocks = depth[i] if depth is not None else s.depth
            pick = [j * s.depth // blocks for j in range(blocks)]
            stages.append(
                replace(
                    s,
                    depth=blocks,
                    out_channels=ch(s.out_channels),
                    width=ch(s.width),
                    k=tuple(s.k[j] for j in pick),
                    experts=tuple(s.experts[j] for j in pick),
                    routing=tuple(s.routing[j] for j in pick),
                )
            )
        head_channels = ch(self.head_channels) if self.head == "conv" else self.head_channels
        return replace(self, stages=tuple(stages), stem_channels=ch(self.stem_channels), head_channels=head_channels)

    def for_task(self, fit: TaskFit) -> NetConfig:
        config = replace(self, in_channels=fit.in_channels)
        if fit.task == "classification":
            return replace(config, head="classifier", num_classes=fit.classes, cond_dim=None)
        head = "features" if config.head == "classifier" else config.head
        return replace(config, head=head, cond_dim=fit.cond_dim)

    def with_connectivity(self, connectivity: str) -> NetConfig:
        if not self.multi_stream:
            return super().with_connectivity(connectivity)
        return replace(self, connectivity=connectivity)

    def feature_channels(self) -> int:
        return self.stages[-1].out_channels

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NetConfig:
        data = dict(data)
        stages = data.pop("stages", None)
        if not isinstance(stages, list | tuple):
            raise ConfigError("model config: 'stages' must be a list")
        data["stages"] = [build_fields(StageConfig, s, f"model config stage {i}") for i, s in enumerate(stages)]
        return build_fields(cls, data, "model config")


def with_knobs(config: NetworkFamily, **knobs: object) -> NetworkFamily:
    """``config.with_knobs(**knobs)``: e.g. ``with_knobs(cfg, k=16, routing="softmax")`` or
    ``with_knobs(cfg, k={"conv4": 8})``."""
    return config.with_knobs(**knobs)


class BlockPlan(NamedTuple):
    """One block with its shapes: what the cost formulas and the builder need."""

    name: str  # "conv3.0"
    stage: StageConfig
    in_channels: int
    out_channels: int
    stride: int
    k: int
    experts: int
    routing: str
    in_size: tuple[int, int]  # (H, W) of the block input
    out_size: tuple[int, int]  # (H, W) after the block
    num_inputs: int  # GateConnect: branches feeding each branch (1 after a single-stream tensor)
    fan_in: int | None  # GateConnect: inputs summed per branch, at most num_inputs; None otherwise


@dataclass(frozen=True)
class Plan:
    """Shapes through the network: the stem, every block, the head."""

    config: NetConfig
    stem_size: tuple[int, int]  # after the stem convolution
    pooled_size: tuple[int, int]  # after the optional max pool
    blocks: tuple[BlockPlan, ...] = field(default_factory=tuple)

    @property
    def out_size(self) -> tuple[int, int]:
        return self.blocks[-1].out_size

    @property
    def out_channels(self) -> int:
        return self.blocks[-1].out_channels


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def plan(config: NetConfig) -> Plan:
    """Propagate shapes through ``config``."""
    s = _conv_out(config.input_size, config.stem_kernel, config.stem_stride, config.stem_kernel // 2)
    stem = (s, s)
    if config.stem_pool:
        s = _conv_out(s, 3, 2, 1)
    pooled = (s, s)
    blocks = []
    channels, size, branches = config.stem_channels, pooled, 1
    for stage in config.stages:
        for i in range(stage.depth):
            stride = stage.stride if i == 0 else 1
            out_size = (_conv_out(size[0], 3, stride, 1), _conv_out(size[1], 3, stride, 1))
            inputs = branches if stage.multi_stream else 1
            blocks.append(
                BlockPlan(
                    f"{stage.name}.{i}",
                    stage,
                    channels,
                    stage.out_channels,
                    stride,
                    stage.k[i],
                    stage.experts[i],
                    stage.routing[i],
                    size,
                    out_size,
                    inputs,
                    min(stage.fan_in, inputs) if stage.multi_stream else None,
                )
            )
            channels, size = stage.out_channels, out_size
            branches = stage.cardinality if stage.multi_stream else 1
    return Plan(config, stem, pooled, tuple(blocks))
