"""A search space: its knobs, how their values map to the target and proxy configurations, and sampling.

Spaces come from YAML files validated by :mod:`sparsearch.spaces.schema`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from sparsearch.config import ELASTIC, KNOBS, NetworkFamily, UserNetConfig, layout
from sparsearch.errors import ConfigError

__all__ = [
    "DATASETS",
    "EXPERT_COUNTS",
    "KNOBS",
    "Knob",
    "ParamKey",
    "Proxy",
    "ProxyRecipe",
    "Space",
    "knob_of",
    "knob_units",
]

DATASETS = ("easy-vqa", "sort-of-clevr", "digits", "cifar10", "cifar100")
EXPERT_COUNTS = (1, 2, 4, 8, 16, 32)  # seed 001's expert counts


class ParamKey(NamedTuple):
    """A searched parameter: a knob of a unit (``conv3.k``) or of one block of it (``conv3.0.k``).

    Its text is the Optuna parameter name. A unit's name may hold dots (a user's ``model.layer1``), so a
    name is read back through the space that made it (:meth:`Space.param_key`), never split apart; only
    the knob, the last part, is read off a name alone (:func:`knob_of`)."""

    unit: str
    knob: str
    block: int | None = None  # None: one value for the whole unit

    def __str__(self) -> str:
        return f"{self.unit}.{self.knob}" if self.block is None else f"{self.unit}.{self.block}.{self.knob}"


def knob_of(name: str) -> str:
    """The knob of a parameter name (knob names hold no dot): ``k`` of ``model.layer1.0.k``."""
    return name.rsplit(".", 1)[-1]


def knob_units(target: NetworkFamily):
    """Where the target's knobs are set (its family says: stages, or the whole network)."""
    return target.knob_units()


@dataclass(frozen=True)
class Knob:
    """One searched knob: ``values`` per stage (ints or routing names), sampled per stage or block."""

    name: str
    per: str  # "stage" or "block"
    stages: tuple[str, ...]  # stages it applies to; the others keep the knob off
    values: dict[str, tuple]  # stage name -> allowed values
    shared: bool = False  # one supernet holds every value (k and fan-in always do)


@dataclass(frozen=True)
class Proxy:
    dataset: str  # where proxy accuracy comes from
    input_size: int  # proxy input resolution
    width: float  # multiplier of every channel count (stem, outputs, path widths), >= 1 channel
    depth: tuple[int, ...] | None  # blocks per stage of the proxy (None: the target's)
    epochs: int  # training epochs used to estimate accuracy
    num_classes: int | None  # classifier outputs of the proxy (None: the target's)
    pretrained: bool = True  # a user's network: start from the factory's weights (else re-initialised)

    def recipe(self, data: str | None = None, epochs: int | None = None) -> ProxyRecipe:
        """The data and epochs a proxy trains with: those given, else the space's (the one place this
        default is worked out, for train, study, validate, eval and report)."""
        return ProxyRecipe(data or self.dataset, self.epochs if epochs is None else epochs)


class ProxyRecipe(NamedTuple):
    data: str  # a data spec: easy-vqa, digits, cifar10:DIR, module:function
    epochs: int


@dataclass(frozen=True)
class Space:
    """A validated search space; ``values`` below map parameter names (``conv3.k``) to choices."""

    name: str
    description: str
    source: str  # the file it came from
    target: NetworkFamily
    target_args: dict[str, Any]
    proxy: Proxy
    knobs: tuple[Knob, ...]
    proxy_network: UserNetConfig | None = None  # a user's network at the proxy's input size

    @property
    def factory(self) -> str | None:
        """The model factory of a user's network (None for a layout)."""
        return self.target.model_factory()

    @functools.cached_property
    def keys(self) -> dict[str, ParamKey]:
        """Every searched parameter's name with its typed key, in the space's order."""
        keys: dict[str, ParamKey] = {}
        for knob in self.knobs:
            for unit in knob_units(self.target):
                if unit.name not in knob.stages:
                    continue
                blocks = [None] if knob.per == "stage" else range(unit.depth)
                for block in blocks:
                    key = ParamKey(unit.name, knob.name, block)
                    keys[str(key)] = key
        return keys

    @property
    def shared_knobs(self) -> frozenset[str]:
        """The knobs one weight-sharing supernet holds every value of: k and fan-in, and the structural
        knobs the space marks ``shared``; each other structural choice needs a supernet of its own."""
        return frozenset(ELASTIC) | {k.name for k in self.knobs if k.shared}

    def param_key(self, name: str) -> ParamKey:
        """The typed key of parameter ``name``."""
        try:
            return self.keys[name]
        except KeyError:
            raise ConfigError(
                f"space {self.name}: unknown parameter {name!r}; parameters: {', '.join(self.keys)}"
            ) from None

    def parameters(self) -> dict[str, tuple]:
        """Every searched parameter with its allowed values, e.g. ``{"conv3.k": (1, ..., 32)}``."""
        knobs = {k.name: k for k in self.knobs}
        return {name: knobs[key.knob].values[key.unit] for name, key in self.keys.items()}

    def expand(self, values: dict[str, Any]) -> dict[str, Any]:
        """Shorthand keys spelled out: ``k`` sets every ``*.k`` parameter, ``conv3.k`` every block of
        conv3 when k is searched per block; exact parameter names pass through. Later keys win."""
        out: dict[str, Any] = {}
        for text, value in values.items():
            matches = [name for name, key in self.keys.items() if text in (name, key.knob, f"{key.unit}.{key.knob}")]
            if text in self.keys:
                matches = [text]
            if not matches:
                raise ConfigError(
                    f"space {self.name}: unknown parameter {text!r}; parameters: {', '.join(self.keys)}"
                    " (or a knob name alone for every stage)"
                )
            out.update(dict.fromkeys(matches, value))
        return out

    def knob_values(self, values: dict[str, Any]) -> dict[str, Any]:
        """Per-knob, per-stage settings for :func:`~sparsearch.models.with_knobs` (for a CondConv
        network, the network-wide ``experts`` and ``routing``)."""
        allowed = self.parameters()
        unknown = set(values) - set(allowed)
        if unknown:
            raise ConfigError(
                f"space {self.name}: unknown parameter(s) {sorted(unknown)}; parameters: {', '.join(allowed)}"
            )
        for key, value in values.items():
            if value not in allowed[key]:
                raise ConfigError(
                    f"space {self.name}: {key}={value!r} is not allowed; allowed: {_describe(allowed[key])}"
                )
        units = {u.name: u for u in self.target.knob_units()}
        knobs: dict[str, dict[str, Any]] = {}
        for knob in self.knobs:  # a knob searched per block: every block set, unset ones as they are
            if knob.per == "block":
                for unit in knob.stages:
                    knobs.setdefault(knob.name, {})[unit] = list(units[unit].current[knob.name])
        for name, value in values.items():
            key = self.keys[name]
            if key.block is None:
                knobs.setdefault(key.knob, {})[key.unit] = value
            else:
                knobs[key.knob][key.unit][key.block] = value
        return {
            knob: {unit: tuple(v) if isinstance(v, list) else v for unit, v in per_unit.items()}
            for knob, per_unit in knobs.items()
        }

    def target_config(self, values: dict[str, Any] | None = None) -> NetworkFamily:
        """The target network with ``values`` applied (none: every knob off)."""
        return self.target.with_knobs(**self.knob_values(values or {}))

    def proxy_config(self, values: dict[str, Any] | None = None) -> NetworkFamily:
        """The proxy network: the target scaled in width and depth, at the proxy's input size (a user's
        network: its factory's model at the proxy's input size)."""
        if self.proxy_network is not None:
            return self.proxy_network.with_knobs(**self.knob_values(values or {}))
        p = self.proxy
        args = self._layout_args() | {"input_size": p.input_size}
        if p.num_classes is not None and getattr(self.target, "head", "classifier") == "classifier":
            args["num_classes"] = p.num_classes
        base = layout(self.target_args["model"], **args).with_knobs(**self.knob_values(values or {}))
        return base.scaled(p.width, p.depth)

    def _layout_args(self) -> dict[str, Any]:
        return {k: v for k, v in self.target_args.items() if k != "model"}

    def sample(self, trial: Any, keys: Iterable[str] | None = None) -> dict[str, Any]:
        """Draw every parameter (or those named in ``keys``) from an Optuna trial; returns the values
        for :meth:`target_config`."""
        values: dict[str, Any] = {}
        params = self.parameters()
        for key in params if keys is None else keys:
            allowed = params[key]
            if all(isinstance(v, int) for v in allowed) and allowed == tuple(range(allowed[0], allowed[-1] + 1)):
                values[key] = trial.suggest_int(key, allowed[0], allowed[-1])
            else:
                values[key] = trial.suggest_categorical(key, list(allowed))
        return values


def _describe(allowed: tuple) -> str:
    if len(allowed) > 6 and all(isinstance(v, int) for v in allowed):
        return f"{allowed[0]}..{allowed[-1]}"
    return ", ".join(str(v) for v in allowed)
