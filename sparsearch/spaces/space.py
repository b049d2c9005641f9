"""A search space: its knobs, how their values map to the target and proxy configurations, and sampling.

Spaces come from YAML files validated by :mod:`sparsearch.spaces.schema`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from sparsearch.config import KNOBS, NetworkFamily, UserNetConfig, layout
from sparsearch.errors import ConfigError

__all__ = ["DATASETS", "EXPERT_COUNTS", "KNOBS", "Knob", "Proxy", "ProxyRecipe", "Space", "knob_units"]

DATASETS = ("easy-vqa", "digits", "cifar10", "cifar100")
EXPERT_COUNTS = (1, 2, 4, 8, 16, 32)  # seed 001's expert counts


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

    def parameters(self) -> dict[str, tuple]:
        """Every searched parameter with its allowed values, e.g. ``{"conv3.k": (1, ..., 32)}``."""
        params: dict[str, tuple] = {}
        for knob in self.knobs:
            for stage in knob_units(self.target):
                if stage.name not in knob.stages:
                    continue
                keys = (
                    [f"{stage.name}.{knob.name}"]
                    if knob.per == "stage"
                    else [f"{stage.name}.{i}.{knob.name}" for i in range(stage.depth)]
                )
                for key in keys:
                    params[key] = knob.values[stage.name]
        return params

    def expand(self, values: dict[str, Any]) -> dict[str, Any]:
        """Shorthand keys spelled out: ``k`` sets every ``*.k`` parameter, ``conv3.k`` every block of
        conv3 when k is searched per block; exact parameter names pass through. Later keys win."""
        allowed = self.parameters()
        out: dict[str, Any] = {}
        for key, value in values.items():
            if key in allowed:
                out[key] = value
                continue
            parts = key.split(".")
            if len(parts) == 1:
                matches = [p for p in allowed if p.split(".")[-1] == key]
            elif len(parts) == 2:
                matches = [p for p in allowed if p.startswith(parts[0] + ".") and p.split(".")[-1] == parts[1]]
            else:
                matches = []
            if not matches:
                raise ConfigError(
                    f"space {self.name}: unknown parameter {key!r}; parameters: {', '.join(allowed)}"
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
        knobs: dict[str, dict[str, Any]] = {}
        for knob in self.knobs:
            for unit in self.target.knob_units():
                if unit.name not in knob.stages:
                    continue
                if knob.per == "stage":
                    key = f"{unit.name}.{knob.name}"
                    if key in values:
                        knobs.setdefault(knob.name, {})[unit.name] = values[key]
                else:
                    current = unit.current[knob.name]
                    per_block = tuple(values.get(f"{unit.name}.{i}.{knob.name}", current[i]) for i in range(unit.depth))
                    knobs.setdefault(knob.name, {})[unit.name] = per_block
        return knobs

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
