"""Model registry: ``create_model(name, **config)`` builds a registered layout."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from torch import nn

from sparsearch.errors import ConfigError
from sparsearch.models import layouts
from sparsearch.models.condconv_nets import CondNet, CondNetConfig
from sparsearch.models.config import NetConfig, with_knobs
from sparsearch.models.resnext import SparseResNeXt

__all__ = ["build_model", "create_model", "layout", "model_names", "register_layout"]

_LAYOUTS: dict[str, Callable[..., NetConfig | CondNetConfig]] = {}
_KNOBS = ("k", "experts", "routing", "fan_in")


def register_layout(name: str, factory: Callable[..., NetConfig | CondNetConfig]) -> None:
    """Register a function returning a :class:`NetConfig` under ``name``."""
    if name in _LAYOUTS:
        raise ValueError(f"layout {name!r} is already registered")
    _LAYOUTS[name] = factory


def model_names() -> list[str]:
    return sorted(_LAYOUTS)


def layout(name: str, **config: object) -> NetConfig | CondNetConfig:
    """The configuration of layout ``name``. Knob arguments (k, experts, routing, fan_in) are applied
    to the layout's configuration: per stage with :func:`~sparsearch.models.config.with_knobs` for the
    ResNeXt family, network-wide for the CondConv networks; the rest go to the layout's factory."""
    try:
        factory = _LAYOUTS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; known: {', '.join(model_names())}") from None
    knobs = {key: config.pop(key) for key in _KNOBS if key in config}
    try:
        net = factory(**config)
    except TypeError as err:  # an argument the layout does not take
        raise ConfigError(f"model {name!r}: {err}") from None
    if not knobs:
        return net
    if isinstance(net, NetConfig):
        return with_knobs(net, **knobs)
    unknown = sorted(set(knobs) - {"experts", "routing"})
    if unknown:
        raise ConfigError(f"model {name!r} has no knob {unknown[0]!r}; its knobs: experts, routing")
    return replace(net, **knobs)


def create_model(name: str, **config: object) -> nn.Module:
    """Build layout ``name``: e.g. ``create_model("resnext101_32x4d", input_size=448, k=16,
    routing="softmax")`` or ``create_model("cc_mobilenet_v1", width=0.5, experts=8)``."""
    return build_model(layout(name, **config))


def build_model(config: NetConfig | CondNetConfig) -> nn.Module:
    """The module of a configuration, whichever family it belongs to."""
    return CondNet(config) if isinstance(config, CondNetConfig) else SparseResNeXt(config)


def _condnet(arch: str) -> Callable[..., CondNetConfig]:
    def factory(**config: object) -> CondNetConfig:
        return CondNetConfig(arch, **config)  # type: ignore[arg-type]

    factory.__doc__ = f"Seed 001's CondConv {arch} (experts=1: the base network)."
    return factory


_CONDNETS = {"cc_mobilenet_v1": "mobilenet_v1", "cc_mobilenet_v2": "mobilenet_v2", "cc_resnet50": "resnet50"}


register_layout("resnext101_32x4d", layouts.resnext101_32x4d)
register_layout("clevr_cnn", layouts.clevr_cnn)
register_layout("gateconnect_cifar", layouts.gateconnect_cifar)
register_layout("gateconnect_mini_imagenet", layouts.gateconnect_mini_imagenet)
for _name, _arch in _CONDNETS.items():
    register_layout(_name, _condnet(_arch))
