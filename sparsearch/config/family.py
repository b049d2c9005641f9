"""The network-family contract: what every configuration declares, so nothing outside asks which it is.

A family is a frozen dataclass that subclasses :class:`NetworkFamily` and registers its name
(:func:`register_family`). It declares, without torch:

- its **knob units** (:meth:`~NetworkFamily.knob_units`): where a space sets knobs (a stage of blocks,
  or the whole network), which knobs each takes and their current values;
- how knobs **apply** (:meth:`~NetworkFamily.with_knobs`) and how the proxy **scales** it
  (:meth:`~NetworkFamily.scaled`);
- how it **fits a task** (:meth:`~NetworkFamily.for_task`: the data's channels and classes, a VQA
  backbone's feature grid) and its **limits** (what it refuses, in one line).

Its module builder registers beside the models (:func:`sparsearch.models.register_builder`) and its
analytic count beside the costs (:func:`sparsearch.cost.register_count`); both are looked up by the
configuration's type, so a new family is one file that does the three registrations (see
docs/architecture.md and the toy family of ``tests/test_family_contract.py``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, fields
from typing import Any, ClassVar, NamedTuple

from sparsearch.errors import ConfigError

__all__ = [
    "ELASTIC",
    "KNOBS",
    "KNOB_TABLE",
    "KNOB_TYPES",
    "Knob",
    "KnobUnit",
    "NetworkFamily",
    "TaskFit",
    "build_fields",
    "family_class",
    "family_names",
    "register_family",
]


class Knob(NamedTuple):
    """A knob of the model family (DESIGN.md): its name, the type of its values, and how it shares weights."""

    name: str
    type: type  # int or str (a routing name)
    elastic: bool  # True: changes which parts run, not the weights (one supernet holds every value)


# The one knob table: every knob a family may take, in the order the tool shows them.
KNOB_TABLE = (
    Knob("k", int, True),  # top-k paths run per example
    Knob("experts", int, False),  # CondConv experts per convolution
    Knob("routing", str, False),  # the gate's routing function
    Knob("fan_in", int, True),  # GateConnect fan-in K
)
KNOBS = tuple(k.name for k in KNOB_TABLE)
ELASTIC = tuple(k.name for k in KNOB_TABLE if k.elastic)
KNOB_TYPES = {k.name: k.type for k in KNOB_TABLE}


class KnobUnit(NamedTuple):
    """Where a space sets knobs: a stage of blocks, or a whole network (CondConv)."""

    name: str  # the unit's name in parameter keys ("conv3" in "conv3.k")
    depth: int  # blocks: a knob searched per block takes one value for each
    cardinality: int  # C: k and fan-in ranges stop here (0: the unit has no paths)
    knobs: tuple[str, ...]  # the knobs it takes, from KNOBS
    per_block: tuple[str, ...]  # the knobs it may take per block (the others are set per unit)
    current: dict[str, tuple]  # knob -> its value in each block now (the default of an unsearched block)
    routes: str = "paths"  # what its routing ranks: "paths" (any routing) or "experts" (no noisy_topk)


class TaskFit(NamedTuple):
    """What a task needs of a network: the data's channels and classes, and a VQA head's width."""

    task: str  # "classification" or "vqa"
    classes: int
    in_channels: int
    cond_dim: int | None = None  # VQA: the question vector width the gates are conditioned on
    vocab: int = 0  # VQA: question tokens (id 0 pads); 0 where the task has none


class NetworkFamily(ABC):
    """A configuration of a network family. Subclasses are frozen dataclasses.

    Contract: a configuration is one point (its knobs set); everything the tool needs of it beyond its
    fields is one of these methods. The analytic count and the module builder are registered per type.
    """

    family: ClassVar[str]  # the name in config.json's "family" and in messages
    description: ClassVar[str]  # the family in words ("a CondConv network")
    scales_depth: ClassVar[bool] = True  # a proxy may take fewer blocks per unit
    per_block_latency: ClassVar[bool] = False  # sparsearch latency-table models its blocks
    hosts_question: ClassVar[bool] = False  # a whole VQA model: it reads (image, tokens, lengths) itself

    input_size: int

    @abstractmethod
    def knob_units(self) -> tuple[KnobUnit, ...]:
        """Where knobs are set, in order."""

    @abstractmethod
    def with_knobs(self, **knobs: Any) -> NetworkFamily:
        """A copy with knobs set: ``knob=value`` for every unit, or ``knob={unit: value}`` where the value
        is one per unit or a tuple with one per block."""

    @abstractmethod
    def scaled(self, width: float, depth: tuple[int, ...] | None) -> NetworkFamily:
        """The proxy's copy: channels × ``width``, ``depth`` blocks per unit (None: as they are)."""

    @abstractmethod
    def for_task(self, fit: TaskFit) -> NetworkFamily:
        """The configuration fitted to a task's data; a task it cannot host is a ConfigError."""

    def model_factory(self) -> str | None:
        """The user's model factory behind the network (None: a layout of sparsearch)."""
        return None

    def shareable_knobs(self) -> tuple[str, ...]:
        """The knobs one weight-sharing supernet can hold every value of: the elastic ones always; a
        family whose network switches structural knobs in place (``set_knobs``) adds them."""
        return ELASTIC

    @property
    def multi_stream(self) -> bool:
        """True when a stage passes GateConnect branch outputs (``--connectivity`` applies)."""
        return False

    def with_connectivity(self, connectivity: str) -> NetworkFamily:
        """A copy with the GateConnect connectivity set (a family without GateConnect stages refuses)."""
        raise ConfigError(f"{self.description} has no GateConnect stage; --connectivity does not apply")

    def feature_channels(self) -> int:
        """Channels of the feature grid a VQA head reads (0: the family hosts no VQA head)."""
        return 0

    def to_dict(self) -> dict[str, Any]:
        """``{"family": name, ...fields}``, JSON-ready (tuples become lists when dumped)."""
        return {"family": self.family, **asdict(self)}  # type: ignore[call-overload]

    @classmethod
    @abstractmethod
    def from_dict(cls, data: dict[str, Any]) -> NetworkFamily:
        """The configuration :meth:`to_dict` wrote (without its "family"), every field checked again."""


def build_fields(cls: type, data: Any, where: str) -> Any:
    """``cls(**data)`` from a JSON object: lists become tuples, an unknown or missing field is one line."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected an object, got {type(data).__name__}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown field {unknown[0]!r}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    try:
        return cls(**values)
    except TypeError as err:
        raise ConfigError(f"{where}: {err}") from None


_FAMILIES: dict[str, type[NetworkFamily]] = {}


def register_family(cls: type[NetworkFamily]) -> type[NetworkFamily]:
    """Make ``cls`` readable from config.json by its ``family`` name (a class decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, NetworkFamily)):
        raise TypeError(f"register_family takes a NetworkFamily subclass, got {cls!r}")
    _FAMILIES[cls.family] = cls
    return cls


def family_names() -> list[str]:
    return sorted(_FAMILIES)


def family_class(name: Any) -> type[NetworkFamily]:
    """The family registered as ``name``, or a one-line error listing the known ones."""
    try:
        return _FAMILIES[name]
    except (KeyError, TypeError):
        raise ConfigError(f"model config: family={name!r}; allowed: {', '.join(family_names())}") from None
