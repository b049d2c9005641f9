"""A user's network as a configuration: the model factory that builds it, and what conversion found in it.

A space may name a model factory instead of a layout (``target: {factory: my_models:make_model}``). The
network is the factory's model with its grouped bottlenecks converted into top-k blocks
(:mod:`sparsearch.models.convert`); :class:`UserNetConfig` records, without torch, what the conversion
found — each converted block's shapes — and what a FlopCounterMode pass measured for everything else, so
that the cost of any k and routing is counted from the record alone (:func:`sparsearch.cost.count`).

Blocks are grouped into stages by the module that holds them (``layer1.0`` and ``layer1.1`` form stage
``layer1``), which is where a space sets its knobs.

The factory is the user's code: it is imported only when the user named it — in a space file given on
the command line, or with ``sparsearch --factory MODULE:FUNCTION`` for a stored study or a checkpoint
that names it (:func:`trust_factory`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from sparsearch.config.family import KnobUnit, NetworkFamily, TaskFit, register_family
from sparsearch.config.routing import routing_names
from sparsearch.errors import ConfigError
from sparsearch.limits import MAX, check_int, shown

__all__ = [
    "UserBlock",
    "UserNetConfig",
    "UserStage",
    "check_factory_name",
    "is_trusted",
    "trust_factory",
    "user_config_from_dict",
]

_FACTORY = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")
_TRUSTED: set[str] = set()
MAX_BLOCKS = 1_000  # converted blocks of one network


def check_factory_name(spec: Any, where: str = "factory") -> str:
    """``module:function``, or a one-line error saying so."""
    if not isinstance(spec, str) or not _FACTORY.fullmatch(spec) or len(spec) > 200:
        raise ConfigError(f"{where}: expected module:function (e.g. my_models:make_model), got {shown(spec)}")
    return spec


def trust_factory(spec: str) -> None:
    """Allow the model factory ``spec`` to be imported in this process (the user named it)."""
    _TRUSTED.add(check_factory_name(spec))


def is_trusted(spec: str) -> bool:
    return spec in _TRUSTED


@dataclass(frozen=True)
class UserBlock:
    """One grouped bottleneck of the user's network, converted: its place, shapes and knobs."""

    name: str  # the module's path in the user's model, e.g. "layer1.0"
    stage: str  # the module holding it, e.g. "layer1" (where knobs are set)
    in_channels: int
    out_channels: int
    cardinality: int  # C: the groups of its 3×3 convolution, now paths
    width: int  # channels per path
    stride: int
    in_size: tuple[int, int]  # input height, width at the configuration's input size
    out_size: tuple[int, int]
    k: int = 0  # paths run per example; 0 means C
    routing: str = "constant"  # "constant": no gate (every path, the pretrained block)

    def __post_init__(self) -> None:
        where = f"block {shown(self.name)}"
        if not isinstance(self.name, str) or not isinstance(self.stage, str) or not self.name:
            raise ConfigError(f"{where}: name and stage must be strings")
        for key in ("in_channels", "out_channels", "cardinality", "width"):
            check_int(f"{where} {key}", getattr(self, key), 1, MAX["channels"])
        check_int(f"{where} stride", self.stride, 1, MAX["stride"])
        for key in ("in_size", "out_size"):
            size = getattr(self, key)
            if not isinstance(size, tuple) or len(size) != 2:
                raise ConfigError(f"{where} {key}: expected [height, width], got {shown(size)}")
            for v in size:
                check_int(f"{where} {key}", v, 1, MAX["input_size"])
        k = self.cardinality if self.k == 0 else self.k
        check_int(f"{where} k", k, 1, self.cardinality)
        object.__setattr__(self, "k", k)
        if self.routing not in routing_names():
            raise ConfigError(f"{where}: routing {shown(self.routing)}; allowed: {', '.join(routing_names())}")
        if self.routing == "constant" and k != self.cardinality:
            raise ConfigError(
                f"{where}: k={k} needs a routing that ranks paths (constant routing runs all {self.cardinality}); "
                "set a routing too, e.g. --set routing=softmax"
            )


class UserStage(NamedTuple):
    """The blocks one module holds, as a space sees them (knobs are set per stage or per block)."""

    name: str
    depth: int
    cardinality: int  # the smallest C of its blocks (k and fan-in ranges stop there)
    k: tuple[int, ...]
    routing: tuple[str, ...]
    experts: tuple[int, ...]


@register_family
@dataclass(frozen=True)
class UserNetConfig(NetworkFamily):
    """A user's converted network at one input size and one set of knobs."""

    family = "user"
    description = "a user's network"

    factory: str  # module:function
    input_size: int
    in_channels: int
    num_classes: int
    pretrained: bool  # keep the factory's weights (else every module's parameters are re-initialised)
    blocks: tuple[UserBlock, ...]
    rest_macs: int  # FlopCounterMode MACs per example of everything but the converted blocks
    rest_params: int  # parameters of everything but the converted blocks
    head: str = "classifier"

    def __post_init__(self) -> None:
        check_factory_name(self.factory, "model factory")
        check_int("input_size", self.input_size, 1, MAX["input_size"])
        check_int("in_channels", self.in_channels, 1, MAX["channels"])
        check_int("num_classes", self.num_classes, 1, MAX["classes"])
        if not isinstance(self.pretrained, bool):
            raise ConfigError(f"pretrained must be true or false, got {shown(self.pretrained)}")
        if not isinstance(self.blocks, tuple) or not all(isinstance(b, UserBlock) for b in self.blocks):
            raise ConfigError("blocks must be a list of converted blocks")
        if not self.blocks or len(self.blocks) > MAX_BLOCKS:
            raise ConfigError(
                f"model factory {self.factory}: {len(self.blocks)} converted blocks; a search needs 1..{MAX_BLOCKS}"
            )
        check_int("rest_macs", self.rest_macs, 0)
        check_int("rest_params", self.rest_params, 0, MAX["params"])
        if self.head != "classifier":
            raise ConfigError(f"a user's network classifies; head={shown(self.head)} is not allowed")

    @property
    def arch(self) -> str:
        return "user"

    def model_factory(self) -> str | None:
        return self.factory

    def knob_units(self) -> tuple[KnobUnit, ...]:
        knobs = ("k", "routing")  # experts are not converted; both may be set per block
        return tuple(
            KnobUnit(s.name, s.depth, s.cardinality, knobs, knobs, {"k": s.k, "routing": s.routing})
            for s in self.stages
        )

    def scaled(self, width: float, depth: tuple[int, ...] | None) -> UserNetConfig:
        """A user's network is not scaled: its proxy is the factory's model at the proxy's input size."""
        if width != 1 or depth is not None:
            raise ConfigError("a user's network keeps its width and depth; its proxy sets only the input size")
        return self

    def for_task(self, fit: TaskFit) -> UserNetConfig:
        """Checks the task only: new classes or channels are measured again by the builder's refit."""
        if fit.task != "classification":
            raise ConfigError(f"a user's network ({self.factory}) classifies; it cannot host {fit.task}")
        return self

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UserNetConfig:
        return user_config_from_dict(dict(data))

    @property
    def stages(self) -> tuple[UserStage, ...]:
        order: dict[str, list[UserBlock]] = {}
        for b in self.blocks:
            order.setdefault(b.stage, []).append(b)
        return tuple(
            UserStage(
                name,
                len(bs),
                min(b.cardinality for b in bs),
                tuple(b.k for b in bs),
                tuple(b.routing for b in bs),
                (1,) * len(bs),
            )
            for name, bs in order.items()
        )

    def with_knobs(self, **knobs: Any) -> UserNetConfig:
        """A copy with ``k`` and ``routing`` set: one value for every block, or ``{stage: value or
        (one per block)}``. Experts are not converted (a plain 1 is accepted)."""
        unknown = set(knobs) - {"k", "routing", "experts"}
        if unknown:
            raise ConfigError(f"a user's network takes the knobs k and routing, not {sorted(unknown)[0]}")
        names = [s.name for s in self.stages]
        settings: dict[str, dict[str, Any]] = {}
        for key, value in knobs.items():
            per_stage = value if isinstance(value, dict) else dict.fromkeys(names, value)
            if set(per_stage) - set(names):
                raise ConfigError(
                    f"{key} names unknown stage(s) {sorted(set(per_stage) - set(names))}; stages: {names}"
                )
            settings[key] = per_stage
        experts = settings.get("experts", {}).values()
        if any(set(v if isinstance(v, tuple | list) else (v,)) != {1} for v in experts):
            raise ConfigError("a user's network keeps its convolutions: experts must be 1")
        blocks, position = [], dict.fromkeys(names, 0)
        for b in self.blocks:
            i = position[b.stage]
            position[b.stage] += 1
            changed = {}
            for key in ("k", "routing"):
                if b.stage in settings.get(key, {}):
                    value = settings[key][b.stage]
                    changed[key] = value[i] if isinstance(value, tuple | list) else value
            blocks.append(replace(b, **changed))
        return replace(self, blocks=tuple(blocks))


def user_config_from_dict(data: dict[str, Any]) -> UserNetConfig:
    """The configuration ``asdict`` wrote (a checkpoint's config.json), every field checked again."""
    blocks = data.pop("blocks", None)
    if not isinstance(blocks, list | tuple) or len(blocks) > MAX_BLOCKS:
        raise ConfigError(f"model config: 'blocks' must be a list of at most {MAX_BLOCKS} blocks")
    parsed = []
    for i, b in enumerate(blocks):
        if not isinstance(b, dict):
            raise ConfigError(f"model config block {i}: expected an object")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in b.items()}
        try:
            parsed.append(UserBlock(**values))
        except TypeError as err:
            raise ConfigError(f"model config block {i}: {err}") from None
    try:
        return UserNetConfig(**data, blocks=tuple(parsed))
    except TypeError as err:
        raise ConfigError(f"model config: {err}") from None
